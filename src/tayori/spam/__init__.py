"""The spam block (迷惑メールブロック): a statistical token classifier with global and
per-account counts, CJK-aware tokenising, and learning that never counts a message twice.

The pipeline calls `SpamEngine.score(raw, account_id)`; webmail, IMAP and `tayori spam
train` call `SpamEngine.learn`. May import `tayori.mime`, `tayori.storage` and `tayori.core`.

The names below are loaded on first use (PEP 562), so that `tayori --help`, which registers
`tayori.spam.cli`, does not pay for the MIME layer and SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tayori.spam.classifier import ClassifierSettings, TokenCounts
    from tayori.spam.engine import DEFAULT_THRESHOLDS, Sensitivity, SpamEngine, SpamResult
    from tayori.spam.store import MemoryTokenStore, SqlTokenStore, TokenStore, Training
    from tayori.spam.tokens import tokenize

__all__ = [
    "DEFAULT_THRESHOLDS",
    "ClassifierSettings",
    "MemoryTokenStore",
    "Sensitivity",
    "SpamEngine",
    "SpamResult",
    "SqlTokenStore",
    "TokenCounts",
    "TokenStore",
    "Training",
    "tokenize",
]

_HOMES = {
    "ClassifierSettings": "classifier",
    "TokenCounts": "classifier",
    "DEFAULT_THRESHOLDS": "engine",
    "Sensitivity": "engine",
    "SpamEngine": "engine",
    "SpamResult": "engine",
    "MemoryTokenStore": "store",
    "SqlTokenStore": "store",
    "TokenStore": "store",
    "Training": "store",
    "tokenize": "tokens",
}


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{home}"), name)
