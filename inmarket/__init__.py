"""In-market: which B2B accounts are in-market, from the engagement of their buying groups."""

__version__ = "0.1.0"
