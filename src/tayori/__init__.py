"""Tayori (便り): a member mail service that records why every message did or did not arrive."""

__version__ = "0.1.0"
