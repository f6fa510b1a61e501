"""Search terms: how message text becomes index tokens and a member's query becomes a match.

Japanese has no spaces between words, so word tokenisers find nothing in "明日の会議について".
Every run of CJK characters (kanji, kana, hangul) is indexed as its overlapping bigrams
("明日 日の の会 会議 議に …") plus its last character alone; a query of two or more CJK
characters becomes the phrase of its bigrams, which matches exactly where the query is a
substring of the text. One CJK character matches as a prefix of a token. Other words (Latin,
digits, Cyrillic …) are indexed whole and matched by prefix ("meet" finds "meeting").

Text is NFKC-normalised (full-width ＡＢＣ and half-width ｶﾅ become ABC and カナ) and
case-folded, on both sides. Each token carries a one-letter field prefix (f from, t to/cc,
s subject, b body), so one index answers "subject contains" as well as "anywhere".

The tokens are plain space-separated text: the database's own full-text index does the
rest (SQLite FTS5 with the `ascii` tokenizer, PostgreSQL `to_tsvector('simple', …)`), both
of which keep such tokens as they are. This module knows the query syntax of both.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = [
    "FIELDS",
    "TERMS_VERSION",
    "Field",
    "document_terms",
    "fts5_query",
    "sort_from",
    "sort_subject",
    "tsquery",
]

TERMS_VERSION = 1
"""Bump when the tokens change; `tayori mailbox reindex` then redoes every message."""

Field = str
FIELDS: dict[str, Field] = {"from": "f", "to": "t", "subject": "s", "body": "b"}

_MAX_WORD = 64
_MAX_QUERY_WORDS = 16
_SORT_LEN = 512

# Han (incl. extension A and compatibility), Hiragana, Katakana (incl. phonetic extensions and
# the prolonged sound mark), Hangul syllables and jamo, CJK symbols that are letters (々〆).
_CJK = (
    "\u3005\u3006\u3007\u303b"
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff"
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
    "\u1100-\u11ff\u3130-\u318f\uac00-\ud7af"
    "\U00020000-\U0003134f"
)
_TOKEN = re.compile(rf"(?P<cjk>[{_CJK}]+)|(?P<word>[^\W_{_CJK}]+)")
_ASCII_WORD = re.compile(r"[a-z0-9]+")
"""What `_TOKEN` finds in normalised ASCII text (no CJK, no upper case)."""
_REPLY_PREFIX = re.compile(
    r"^(?:\s*(?:re|fw|fwd|aw|wg|sv|vs|tr|rv|返信|転送)\s*(?:\[\d+\])?\s*[:：]\s*)+"
)


def normalise(text: str) -> str:
    return unicodedata.normalize("NFKC", text).casefold()


@dataclass(frozen=True, slots=True)
class _Run:
    cjk: bool
    text: str


def _runs(text: str) -> Iterator[_Run]:
    for match in _TOKEN.finditer(normalise(text)):
        if match.group("cjk"):
            yield _Run(True, match.group("cjk"))
        else:
            yield _Run(False, match.group("word")[:_MAX_WORD])


def _run_tokens(run: _Run) -> list[str]:
    if not run.cjk:
        return [run.text]
    chars = run.text
    return [chars[i : i + 2] for i in range(len(chars) - 1)] + [chars[-1]]


def document_terms(*, from_: str, to: str, subject: str, body: str) -> str:
    """The index text of one message (see the module docstring).

    The same terms, in the same order, as `_runs` + `_run_tokens` give for a query, written
    out without their intermediate objects: this runs for every message received, over
    the whole body text (a test checks both ways agree)."""
    out: list[str] = []
    append = out.append
    for field_text, prefix in ((from_, "f"), (to, "t"), (subject, "s"), (body, "b")):
        text = normalise(field_text)
        if text.isascii():
            # The same words as `_TOKEN` finds in ASCII (letters and digits, lower case
            # after `normalise`), found ~5 times faster: a 5 KB body 116 -> 23 us.
            out.extend(prefix + word[:_MAX_WORD] for word in _ASCII_WORD.findall(text))
            continue
        for match in _TOKEN.finditer(text):
            if match.lastgroup == "word":
                append(prefix + match.group("word")[:_MAX_WORD])
            else:
                chars = match.group("cjk")
                out.extend([prefix + chars[i : i + 2] for i in range(len(chars) - 1)])
                append(prefix + chars[-1])
    return " ".join(out)


@dataclass(frozen=True, slots=True)
class _Phrase:
    """Tokens (without field prefix) that must follow each other; `prefix`: the last one
    matches as a prefix."""

    tokens: tuple[str, ...]
    prefix: bool


def _query_phrases(query: str) -> list[_Phrase]:
    """Whitespace-separated query words, each a phrase of its tokens: "taro@example.com"
    must appear as written, not as three words anywhere."""
    phrases: list[_Phrase] = []
    for word in query.split()[:_MAX_QUERY_WORDS]:
        runs = list(_runs(word))
        tokens: list[str] = []
        for position, run in enumerate(runs):
            if run.cjk and len(run.text) >= 2:
                chars = run.text
                tokens.extend(chars[i : i + 2] for i in range(len(chars) - 1))
                if position < len(runs) - 1:
                    # The document has the run's last character as a token of its own here
                    # ("テスト.txt" is "テス スト ト txt"): the phrase must step over it.
                    tokens.append(chars[-1])
            else:
                tokens.append(run.text)
        if tokens:
            last = runs[-1]
            # A Latin word, or a single CJK character, at the end: what the member typed
            # so far, matched as a prefix.
            prefix = not last.cjk or len(last.text) == 1
            phrases.append(_Phrase(tuple(tokens), prefix))
    return phrases


def _fts5_phrase(phrase: _Phrase, field: Field) -> str:
    quoted = " ".join(field + token for token in phrase.tokens).replace('"', '""')
    return f'"{quoted}"' + (" *" if phrase.prefix else "")


def fts5_query(query: str, fields: tuple[Field, ...]) -> str | None:
    """An FTS5 MATCH expression: every word of `query` in one of `fields`; None when the
    query has no searchable characters (the caller then matches nothing)."""
    phrases = _query_phrases(query)
    if not phrases:
        return None
    parts = []
    for phrase in phrases:
        alternatives = [_fts5_phrase(phrase, field) for field in fields]
        parts.append(
            alternatives[0] if len(alternatives) == 1 else f"({' OR '.join(alternatives)})"
        )
    return " AND ".join(parts)


def _ts_phrase(phrase: _Phrase, field: Field) -> str:
    # Tokens hold only letters and digits (see _TOKEN), never a quote or backslash.
    items = [f"'{field}{token}'" for token in phrase.tokens]
    if phrase.prefix:
        items[-1] += ":*"
    return " <-> ".join(items)


def tsquery(query: str, fields: tuple[Field, ...]) -> str | None:
    """The same match as `fts5_query`, as text for PostgreSQL's to_tsquery('simple', …)."""
    phrases = _query_phrases(query)
    if not phrases:
        return None
    parts = []
    for phrase in phrases:
        alternatives = [f"({_ts_phrase(phrase, field)})" for field in fields]
        parts.append(f"({' | '.join(alternatives)})")
    return " & ".join(parts)


def sort_subject(subject: str) -> str:
    """Subject as lists sort it: without "Re:", "Fwd:", "転送:" prefixes, case-folded."""
    return _REPLY_PREFIX.sub("", normalise(subject)).strip()[:_SORT_LEN]


def sort_from(sender: str) -> str:
    """Sender (display name, else address) as lists sort it: normalised, case-folded."""
    return normalise(sender).strip()[:_SORT_LEN]
