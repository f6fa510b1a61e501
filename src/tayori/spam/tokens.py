"""What the classifier sees of a message: a set of short string tokens.

Latin-script text splits into words, but Japanese and Chinese are written without spaces,
so runs of CJK characters become overlapping character bigrams (the way full-text search
indexes them): 「無料」 and 「今すぐ」 are found whatever surrounds them. Bodies and headers
are decoded through the MIME layer first, so ISO-2022-JP, Shift_JIS and encoded words give
the same tokens as UTF-8.

Header words are prefixed with their field (`subject:free` is not `free`), because the same
word says different things in different places. URL hosts and a few structural facts
(HTML only, attachment types, defects) are tokens too, so that everything the classifier
learns from is one kind of thing and `top_reasons` can name it. Words of other header fields,
the mere names of header fields present, and HTML tag names are left out: they come in large
correlated groups (a mailing list adds nine List-*/X-Mailman headers at once, every tag of a
template) that outvote the rest, so spam sent through a mailing list looked like the list's
ham. Measured on the training half only (2-fold cross-validation): dropping field names took
recall at 0.1 % ham false positives from 86.9 % to 90.3 % and (1-AUC) from 0.154 % to 0.145 %.
Word pairs (adjacent bigrams) were tried and left out: better AUC, but more correlated clues
pushed a few hams to the top, and recall at 0.1 % false positives fell.

`TOKENIZER_VERSION` changes whenever the same message would give other tokens. Counts learnt
with another version are stale (their tokens are partly never made any more), so every
learnt message also counts a `VERSION_TOKEN`; the engine compares it with the totals and
says how much of the training is stale (`SpamEngine.stale_training`). After an upgrade that
changes the version, retrain (`tayori spam train` on the kept spam/ham) for full accuracy.

A message is a set: a word said ten times counts once (Graham, Robinson), which keeps long
repetitive spam from drowning the statistics.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from tayori.mime import Message, decode_header_text
from tayori.mime.recent import recently_parsed

__all__ = [
    "MAX_TOKEN_LEN",
    "TOKENIZER_VERSION",
    "VERSION_PREFIX",
    "VERSION_TOKEN",
    "message_tokens",
    "text_tokens",
    "tokenize",
]

TOKENIZER_VERSION = 2
"""1: header field names were tokens (`hdr:list-id`); 2: they are not."""

VERSION_PREFIX = "x:tokenizer:"
VERSION_TOKEN = f"{VERSION_PREFIX}{TOKENIZER_VERSION}"
"""Made for every message, so the store counts how many learnt messages each version made.
It is bookkeeping, never a clue: the engine leaves it out of the classification."""

MAX_TOKEN_LEN = 60
"""Tokens are cut to this length (the SQL column is sized for it)."""

_MAX_TEXT = 200_000
"""Characters of body text looked at: the start says enough, and huge bodies cost time."""

# Hiragana, katakana (incl. half-width), CJK ideographs (incl. extension A, compatibility),
# Hangul. Each run of these becomes bigrams.
_CJK = (
    "\u3040-\u309f\u30a0-\u30ff\u31f0-\u31ff\u3400-\u4dbf\u4e00-\u9fff"
    "\uf900-\ufaff\uff66-\uff9f\uac00-\ud7af"
)
_CJK_RUN = re.compile(f"[{_CJK}]+")
# Latin words: letters, digits and a few joiners; money and percentages stay whole.
_WORD = re.compile(r"[$€£¥]?[^\W_][\w'.\-!$%€£¥]*", re.UNICODE)
# The same rule for pure-ASCII text, where it matches exactly what `_WORD` matches (no
# ASCII character is a Unicode word character that ASCII does not count, nor a currency
# sign but $), at two thirds of its cost: the regex engine tests ASCII classes by table.
_ASCII_WORD = re.compile(r"\$?[A-Za-z0-9][\w'.\-!$%]*", re.ASCII)
_URL = re.compile(r"(?:https?://|www\.)([a-z0-9.\-]+)", re.IGNORECASE)
# Where a URL can start: a case-insensitive pattern gets none of the regex engine's literal
# scanning, so `_URL.finditer` stepped through every character (~110 us per 5 KB, ~2 ms for
# a newsletter's HTML). `str.find` for these is C-speed; `_URL` then only runs where they are.
_SCHEME_END = "://"
_WWW = tuple(
    f"{a}{b}{c}." for a in "wW" for b in "wW" for c in "wW"
)  # the only characters that match w case-insensitively, even in Unicode
# Anchored on "@" (only the domain is used): a local-part pattern before it made a long run
# of word characters without "@" quadratic (a 2 MiB line took minutes).
_EMAIL = re.compile(r"@([\w\-]{1,63}(?:\.[\w\-]{1,63})+)")
_IP = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.\d{1,3}\b")
_HOST = re.compile(r"\b([a-z0-9\-]+(?:\.[a-z0-9\-]+)+\.[a-z]{2,})\b", re.IGNORECASE)

# Fields whose decoded text is tokenised word by word, and the prefix their tokens get.
_TEXT_FIELDS = {
    "subject": "subject",
    "from": "from",
    "to": "to",
    "cc": "to",
    "reply-to": "reply",
    "x-mailer": "mailer",
    "user-agent": "mailer",
    "content-type": "ctype",
    "organization": "org",
}
_MAX_WORD = 30
_MIN_WORD = 2


def _words(text: str, prefix: str, out: set[str]) -> None:
    """Latin words (lowercased, stripped of trailing punctuation) and CJK bigrams of `text`.

    Written for speed (it is most of the tokenizer's time, on every message received):
    repeated words are dropped before the per-word work, ASCII text is not scanned for CJK,
    and text without CJK is not scanned twice. The tokens are exactly those of the plain
    loop (a test compares)."""
    # isascii() is a flag CPython keeps on the string: pure-ASCII text (most Latin mail)
    # skips the CJK scan, which alone cost ~50 us per 5 KB.
    ascii_only = text.isascii()
    runs = [] if ascii_only else _CJK_RUN.findall(text)
    if runs:
        for run in runs:
            if len(run) == 1:
                out.add(prefix + run)
            else:
                out.update(prefix + run[i : i + 2] for i in range(len(run) - 1))
        text = _CJK_RUN.sub(" ", text)
    for found in set((_ASCII_WORD if ascii_only else _WORD).findall(text)):
        word = found.rstrip(".-!'").lower()
        size = len(word)
        if _MIN_WORD <= size <= _MAX_WORD:
            out.add(prefix + word)
        elif size > _MAX_WORD:
            # Long strings (hashes, encodings) say only that they are there.
            out.add(f"{prefix}skip:{word[0]}{size // 10 * 10}")


def _hosts(host: str, prefix: str, out: set[str]) -> None:
    """A host name and up to three parent domains down to two labels: `a.b.example.com`
    also says `example.com`, which is what spam campaigns rotate the least."""
    labels = host.lower().strip(".").split(".")
    out.add(prefix + ".".join(labels))
    for start in range(max(1, len(labels) - 4), len(labels) - 1):
        out.add(prefix + ".".join(labels[start:]))


def url_hosts(text: str) -> Iterator[str]:
    """The host of every `http://`, `https://` and `www.` URL in `text`: the same, in the
    same order, as `_URL.finditer` over the whole text (a test compares), found fast.

    A match can only start 4 or 5 characters before a "://" (`http`, `https`) or at a
    "www."; those places are tried left to right, skipping any inside the previous match,
    which is what `finditer` does at every position."""
    starts: set[int] = set()
    found = text.find(_SCHEME_END)
    while found != -1:
        starts.update(start for start in (found - 5, found - 4) if start >= 0)
        found = text.find(_SCHEME_END, found + len(_SCHEME_END))
    # ASCII text lower-cased keeps every position, so one search finds all eight spellings.
    folded, spellings = (text.lower(), ("www.",)) if text.isascii() else (text, _WWW)
    for spelling in spellings:
        found = folded.find(spelling)
        while found != -1:
            starts.add(found)
            found = folded.find(spelling, found + 1)
    end = 0
    for start in sorted(starts):
        if start < end:
            continue
        match = _URL.match(text, start)
        if match is not None:
            end = match.end()
            yield match.group(1)


def text_tokens(text: str, prefix: str = "") -> set[str]:
    """Tokens of a piece of text: words, CJK bigrams, URL hosts and e-mail domains."""
    out: set[str] = set()
    text = text[:_MAX_TEXT]
    _words(text, prefix, out)
    for host in url_hosts(text):
        _hosts(host, prefix + "url:", out)
    for match in _EMAIL.finditer(text):
        _hosts(match.group(1), prefix + "email:", out)
    return out


def _header_tokens(message: Message, out: set[str]) -> None:
    headers = message.root.headers
    for name, raw in headers:
        lower = name.lower()
        prefix = _TEXT_FIELDS.get(lower)
        if prefix is not None:
            _words(decode_header_text(raw), prefix + ":", out)
        elif lower == "received":
            text = raw.decode("latin-1")
            for ip in _IP.finditer(text):
                out.add("rcvd:ip:" + ".".join(ip.groups()))
            for host in _HOST.finditer(text):
                _hosts(host.group(1), "rcvd:", out)
        elif lower == "message-id":
            _, _, domain = raw.decode("latin-1").strip().strip("<>").rpartition("@")
            if domain:
                _hosts(domain.rstrip(">").strip(), "mid:", out)
            else:
                out.add("mid:none")
    for mailbox in message.from_:
        _, _, domain = mailbox.address.rpartition("@")
        if domain:
            _hosts(domain, "from:domain:", out)
    subject = message.subject
    if subject and subject.upper() == subject and any(c.isalpha() for c in subject):
        out.add("x:subject-shouting")
    if not headers.get("message-id"):
        out.add("x:no-message-id")
    if not headers.get("date"):
        out.add("x:no-date")


def _structure_tokens(message: Message, out: set[str]) -> None:
    structure = message.structure
    has_plain = any(p.content_type == "text/plain" for p in structure.text)
    has_html = any(p.content_type == "text/html" for p in structure.html)
    if has_html and not has_plain:
        out.add("x:html-only")
    elif has_html:
        out.add("x:html-and-text")
    if not structure.text and not structure.html:
        out.add("x:no-text")
    out.add(f"x:type:{message.root.content_type[:40]}")
    for part in message.root.walk():
        if part.charset:
            out.add(f"x:charset:{part.charset.lower()[:30]}")
        if part.transfer_encoding:
            out.add(f"x:cte:{part.transfer_encoding.lower()[:20]}")
    for attachment in structure.attachments:
        out.add(f"x:attach:{attachment.content_type[:40]}")
    for defect in message.tree.defects:
        out.add(f"x:defect:{defect.code.value}")


def message_tokens(message: Message) -> set[str]:
    """Every token of a parsed message: headers, body text, URLs and structure."""
    out: set[str] = set()
    _header_tokens(message, out)
    _structure_tokens(message, out)
    out |= text_tokens(message.text)
    for part in message.structure.html:
        if part.content_type == "text/html":
            # Link targets are attributes, which the text of the HTML leaves out.
            html = part.payload()[:_MAX_TEXT].decode("latin-1")
            for host in url_hosts(html):
                _hosts(host, "url:", out)
    if "\x00" in "".join(out):
        # A NUL (from a hostile header parameter) cannot be stored by PostgreSQL nor passed
        # through SQLite's json_each, so no token has one (learning or scoring such a
        # message failed on PostgreSQL before).
        out = {token.replace("\x00", "") for token in out}
    return {token[:MAX_TOKEN_LEN] for token in out}


def tokenize(raw: bytes, extra: Iterable[str] = ()) -> set[str]:
    """Tokens of a raw message, plus `extra` ones the caller knows (e.g. `auth:spf=fail`
    from the pipeline), so that such facts are learnt from like everything else."""
    tokens = message_tokens(recently_parsed(raw))
    tokens.update(token[:MAX_TOKEN_LEN] for token in extra)
    tokens.add(VERSION_TOKEN)
    return tokens
