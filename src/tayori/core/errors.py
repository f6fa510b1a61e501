"""Errors that carry a message fit to show an admin or member as it is."""

from __future__ import annotations


class TayoriError(Exception):
    """Base for errors whose text is written for people, not for tracebacks."""


class ConfigError(TayoriError):
    """A setting is wrong; the text names the key, the value and why."""


class NotFoundError(TayoriError):
    """The named domain, account, alias or message does not exist."""


class ConflictError(TayoriError):
    """The thing to create exists already, or removing it would break another."""


class QuotaExceededError(TayoriError):
    """Storing this would take the account over its quota; nothing was stored."""


class StoreUnavailableError(TayoriError):
    """The store cannot take a write now (disk full, database down): a temporary failure."""
