"""Sender patterns of reject lists, safe senders and the forwarding reject list.

Members type these into a form, so the syntax is the one large Japanese providers use and
nothing more: a whole address, a domain, a domain with its subdomains, or a `*` wildcard.

| pattern               | matches                                                   |
|-----------------------|-----------------------------------------------------------|
| `user@example.com`    | that address only                                         |
| `example.com`         | every address at example.com (not its subdomains)         |
| `@example.com`        | the same                                                  |
| `.example.com`        | example.com and every subdomain (`a.example.com`, …)      |
| `*@*.example.com`     | `*` stands for any run of characters (also none)          |
| `news*@example.com`   |                                                           |
| `*.example.com`       | a wildcard without `@` is matched against the domain only |

Matching ignores case in both parts (the local part too: no provider we know of hands out
addresses differing only in case, and members do not expect `Spam@` to slip past `spam@`).
Internationalised domains match whichever way either side is spelt, A-label (`xn--…`) or
Unicode, because both are brought to the same Unicode form first.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from enum import StrEnum

from tayori.core.errors import TayoriError

MAX_PATTERN_LENGTH = 320
"""The longest address SMTP carries (64 + 1 + 255), which no sensible pattern exceeds."""

_LABEL = re.compile(r"^(?!-)[a-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)$")
_WILD_LABEL = re.compile(r"^[a-z0-9\-*\u0080-\U0010ffff]{1,63}$")
_LOCAL = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-.\u0080-\U0010ffff]+$")


class PatternError(TayoriError, ValueError):
    """The text is not a pattern; the message quotes it and says what would be accepted."""


class PatternKind(StrEnum):
    ADDRESS = "address"
    DOMAIN = "domain"
    DOMAIN_TREE = "domain_tree"
    """The domain and all its subdomains."""
    WILDCARD = "wildcard"


@dataclass(frozen=True, slots=True)
class Pattern:
    """A parsed pattern. `text` is the canonical spelling stored and shown back."""

    kind: PatternKind
    text: str
    _regex: re.Pattern[str] | None = None

    def matches(self, address: str) -> bool:
        """Whether the address (`local@domain`, any case, A-label or Unicode) matches.

        The null reverse path (empty sender, used by bounces) matches no pattern: a member
        who blocks a domain must still get bounces of their own mail.
        """
        split = split_address(address)
        if split is None:
            return False
        local, domain = split
        if self.kind is PatternKind.ADDRESS:
            return f"{local}@{domain}" == self.text
        if self.kind is PatternKind.DOMAIN:
            return domain == self.text.lstrip("@")
        if self.kind is PatternKind.DOMAIN_TREE:
            parent = self.text[1:]
            return domain == parent or domain.endswith(self.text)
        assert self._regex is not None
        subject = f"{local}@{domain}" if "@" in self.text else domain
        return self._regex.fullmatch(subject) is not None


def parse_pattern(text: str) -> Pattern:
    """Parse what a member or admin typed; raises PatternError saying what is wrong."""
    raw = text.strip()
    if not raw:
        raise PatternError("the pattern is empty; give an address, a domain or e.g. *@example.com")
    if len(raw) > MAX_PATTERN_LENGTH:
        raise PatternError(
            f"the pattern is {len(raw)} characters long; at most {MAX_PATTERN_LENGTH} are allowed"
        )
    if any(char.isspace() for char in raw) or "<" in raw or ">" in raw:
        raise PatternError(
            f"{raw!r} has spaces or angle brackets; give the bare address, e.g. user@example.com"
        )
    if raw.count("@") > 1:
        raise PatternError(f"{raw!r} has more than one @")
    if "*" in raw:
        return _wildcard(raw)
    if raw.startswith("@"):
        return Pattern(PatternKind.DOMAIN, "@" + _domain(raw[1:], raw))
    if raw.startswith("."):
        return Pattern(PatternKind.DOMAIN_TREE, "." + _domain(raw[1:], raw))
    if "@" not in raw:
        return Pattern(PatternKind.DOMAIN, "@" + _domain(raw, raw))
    local, _, domain = raw.partition("@")
    return Pattern(PatternKind.ADDRESS, f"{_local(local, raw)}@{_domain(domain, raw)}")


def split_address(address: str) -> tuple[str, str] | None:
    """(local, domain) in the form patterns compare, or None for no usable address."""
    value = address.strip()
    if value.endswith(">") and "<" in value:  # `<a@b>`, or `Name <a@b>` as in From:
        value = value[value.rindex("<") + 1 : -1]
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        return None
    return fold(local), fold_domain(domain)


def fold(text: str) -> str:
    """Case-insensitive form of text (Unicode-aware, so full-width and accented letters too)."""
    return unicodedata.normalize("NFC", unicodedata.normalize("NFKC", text).casefold())


def fold_domain(domain: str) -> str:
    """A domain in the one form patterns compare: Unicode labels, folded, no final dot."""
    labels = fold(domain).rstrip(".").split(".")
    return ".".join(_unicode_label(label) for label in labels)


def _unicode_label(label: str) -> str:
    if not label.startswith("xn--"):
        return label
    try:
        return fold(label[4:].encode("ascii").decode("punycode"))
    except (UnicodeError, ValueError):
        # Not valid punycode: keep it as it is, so it matches only itself.
        return label


def _domain(text: str, pattern: str) -> str:
    name = fold_domain(text)
    if not name or len(name) > 253:
        raise PatternError(f"{pattern!r}: the domain part is missing or too long")
    if "." not in name:
        raise PatternError(
            f"{pattern!r}: {text!r} is not a full domain name (expected e.g. example.com)"
        )
    for label in name.split("."):
        if not _LABEL.match(label):
            raise PatternError(f"{pattern!r}: {label!r} is not allowed in a domain name")
    return name


def _local(text: str, pattern: str) -> str:
    if not text:
        raise PatternError(f"{pattern!r}: the part before @ is missing")
    if len(text) > 64 or not _LOCAL.match(text):
        raise PatternError(f"{pattern!r}: the part before @ has characters not allowed there")
    if text.startswith(".") or text.endswith(".") or ".." in text:
        raise PatternError(f"{pattern!r}: the part before @ has a dot at an end or two in a row")
    return fold(text)


def _wildcard(raw: str) -> Pattern:
    if "@" in raw:
        local, _, domain = raw.partition("@")
        if not local or not domain:
            raise PatternError(f"{raw!r}: write * on the empty side (e.g. *@example.com or user@*)")
        if len(local) > 64 or not _LOCAL.match(local):
            raise PatternError(f"{raw!r}: the part before @ has characters not allowed there")
        folded_local = fold(local)
        folded_domain = _wild_domain(domain, raw)
        text = f"{folded_local}@{folded_domain}"
        if set(folded_local) == {"*"} and set(folded_domain) == {"*"}:
            raise PatternError(f"{raw!r} would match every sender; name at least a domain")
    else:
        text = _wild_domain(raw, raw)
        if set(text) <= {"*", "."}:
            raise PatternError(f"{raw!r} would match every sender; name at least a domain")
    body = ".*".join(re.escape(part) for part in re.split(r"\*+", text))
    return Pattern(PatternKind.WILDCARD, re.sub(r"\*+", "*", text), re.compile(body, re.DOTALL))


def _wild_domain(text: str, pattern: str) -> str:
    name = fold_domain(text)
    if name == "*":
        return name
    for label in name.split("."):
        if not _WILD_LABEL.match(label):
            raise PatternError(f"{pattern!r}: {label!r} is not allowed in a domain name")
    return name
