"""The BentoML service, batch scoring and the review page."""
