"""Mail addresses as the service compares them.

Hosted addresses are matched case-insensitively (as every large provider does), so the
canonical form lowercases both parts; the original spelling is kept for display.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Domain labels: letters, digits, hyphen; internationalised names arrive as A-labels or UTF-8.
_LABEL = re.compile(r"^(?!-)[a-z0-9\-\u0080-\U0010ffff]{1,63}(?<!-)$")
_LOCAL_ATOM = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~\-.\u0080-\U0010ffff]+$")


class AddressError(ValueError):
    """The text is not a mail address; the message says which part is wrong."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"

    @property
    def canonical(self) -> str:
        return f"{self.local.lower()}@{self.domain}"


def normalise_domain(domain: str) -> str:
    """Lowercase, strip a final dot, and check label syntax (raises AddressError)."""
    name = domain.strip().rstrip(".").lower()
    if not name or len(name) > 253:
        raise AddressError(f"{domain!r} is not a domain name")
    if "." not in name:
        raise AddressError(f"{domain!r} is not a fully qualified domain name")
    for label in name.split("."):
        if not _LABEL.match(label):
            raise AddressError(f"{domain!r} is not a domain name (bad label {label!r})")
    return name


def parse_address(text: str) -> Address:
    """Parse `local@domain` (angle brackets allowed). Raises AddressError naming the problem."""
    value = text.strip()
    if value.startswith("<") and value.endswith(">"):
        value = value[1:-1]
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise AddressError(f"{text!r} is not a mail address (expected local@domain)")
    if len(local) > 64:
        raise AddressError(f"{text!r}: the part before @ is longer than 64 characters")
    quoted = len(local) >= 2 and local.startswith('"') and local.endswith('"')
    if not quoted and (
        not _LOCAL_ATOM.match(local)
        or local.startswith(".")
        or local.endswith(".")
        or ".." in local
    ):
        raise AddressError(f"{text!r}: the part before @ has characters not allowed there")
    return Address(local, normalise_domain(domain))


def canonical(text: str) -> str:
    """Canonical lookup key for an address string."""
    return parse_address(text).canonical
