"""TOTP second factor (RFC 6238, HMAC-SHA1, 6 digits, 30-second steps), written out here
because it is twenty lines and every authenticator app speaks exactly this profile.

A code is checked against the current step and one step either side (clock drift of a phone),
and the caller records the accepted step (`MemberStore.use_totp_step`) so that a code seen
over someone's shoulder cannot be used a second time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct
import time
from urllib.parse import quote, urlencode

__all__ = [
    "DIGITS",
    "PERIOD",
    "code_at",
    "matching_step",
    "new_secret",
    "provisioning_uri",
    "step_at",
]

PERIOD = 30
DIGITS = 6
DRIFT_STEPS = 1
_SECRET_BYTES = 20  # 160 bits, the HMAC-SHA1 block the RFC recommends


def new_secret() -> str:
    """A random base32 secret (32 characters, no padding) for a new enrolment."""
    return base64.b32encode(secrets.token_bytes(_SECRET_BYTES)).decode("ascii").rstrip("=")


def _key(secret: str) -> bytes:
    cleaned = secret.replace(" ", "").upper()
    return base64.b32decode(cleaned + "=" * (-len(cleaned) % 8))


def step_at(when: float) -> int:
    return int(when // PERIOD)


def code_at(secret: str, step: int) -> str:
    """The code for one time step (RFC 4226 HOTP with the step as counter)."""
    digest = hmac.new(_key(secret), struct.pack(">Q", step), hashlib.sha1).digest()
    offset = digest[-1] & 0x0F
    value = struct.unpack(">I", digest[offset : offset + 4])[0] & 0x7FFFFFFF
    return str(value % 10**DIGITS).zfill(DIGITS)


def matching_step(secret: str, code: str, when: float | None = None) -> int | None:
    """The time step the code belongs to (now, or one step before or after), or None.

    Spaces are ignored (apps show `123 456`); anything but six digits never matches.
    """
    typed = "".join(code.split())
    if len(typed) != DIGITS or not typed.isdigit():
        return None
    now = step_at(time.time() if when is None else when)
    found = None
    for step in range(now - DRIFT_STEPS, now + DRIFT_STEPS + 1):
        # Compare every candidate (no early exit), in constant time per comparison.
        if hmac.compare_digest(code_at(secret, step), typed):
            found = step
    return found


def provisioning_uri(secret: str, account: str, issuer: str) -> str:
    """The `otpauth://totp/…` URI authenticator apps import (Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    query = urlencode(
        {
            "secret": secret,
            "issuer": issuer,
            "algorithm": "SHA1",
            "digits": DIGITS,
            "period": PERIOD,
        }
    )
    return f"otpauth://totp/{label}?{query}"
