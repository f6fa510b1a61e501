"""Decisions about a message: small named steps that each return a verdict with a reason code."""
