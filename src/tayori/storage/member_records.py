"""Records of a member's own preferences: what the webmail and settings pages show and set.

Plain values like `records.py`. The TOTP secret and app-password hashes are deliberately not
part of `MemberPreferences`: pages render preferences, and a secret that is never in the
record handed to a template cannot leak through one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

LANGUAGES = ("ja", "en")
"""Languages a member may choose; "" in `MemberPreferences.language` means "as the browser
asks" (Accept-Language)."""

DISPLAY_NAME_LEN = 200
SIGNATURE_LEN = 4000
TIME_ZONE_LEN = 64
APP_PASSWORD_NAME_LEN = 100
TOTP_SECRET_LEN = 64


@dataclass(frozen=True, slots=True)
class MemberLimits:
    """How much one member may keep. Bounded so a page stays readable and one member's
    rows cannot grow without end."""

    app_passwords: int = 20
    image_senders: int = 500
    correspondents: int = 500
    """Recent correspondents kept for autocomplete; the least recently used go first."""


@dataclass(frozen=True, slots=True)
class MemberPreferences:
    """A member's preferences; defaults for a member who never changed anything."""

    display_name: str = ""
    signature: str = ""
    language: str = ""
    """"ja", "en", or "" for the browser's choice."""
    time_zone: str = ""
    """An IANA name ("Asia/Tokyo"), or "" for the service default."""
    totp_enabled: bool = False
    image_senders: tuple[str, ...] = ()
    """Senders whose remote images are always shown (canonical addresses, sorted)."""


@dataclass(frozen=True, slots=True)
class TotpState:
    """What the login check needs about a member's TOTP second factor."""

    secret: str
    """Base32 secret; pending (not yet confirmed) while `enabled` is False."""
    enabled: bool
    last_step: int
    """The last 30-second step a code was accepted for: a code is never accepted twice."""


@dataclass(frozen=True, slots=True)
class AppPassword:
    """A password for one mail program; only its argon2 hash is kept."""

    id: int
    account_id: int
    name: str
    password_hash: str
    created: datetime
    last_used: datetime | None


@dataclass(frozen=True, slots=True)
class Correspondent:
    """Someone the member wrote to, for address autocomplete."""

    address: str
    name: str
    last_used: datetime
    uses: int
