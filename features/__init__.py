"""Tables in, point-in-time account features out."""
