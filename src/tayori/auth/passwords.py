"""argon2id password hashes (RFC 9106 parameters via argon2-cffi's defaults)."""

from __future__ import annotations

import secrets
import string

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()

# A hash of a random password, verified against when the account does not exist, so that
# "no such user" and "wrong password" take the same time.
_DUMMY_HASH = _HASHER.hash("tayori-no-such-account")


def _utf8(password: str) -> bytes:
    """Any text, also with lone surrogates (what a protocol's surrogateescape decoding makes of
    bytes that are not UTF-8): argon2-cffi's own encoding would raise on those."""
    return password.encode("utf-8", "surrogatepass")


_GENERATED_ALPHABET = string.ascii_letters + string.digits
_GENERATED_LENGTH = 16
"""16 letters or digits: 95 bits. No `-` or `_` (as `token_urlsafe` has): a password that
begins with `-` is taken for an option by the mail programs and tools it is typed into."""


def generate_password() -> str:
    """A random password for a member to type (the demo members of `tayori init`)."""
    return "".join(secrets.choice(_GENERATED_ALPHABET) for _ in range(_GENERATED_LENGTH))


def hash_password(password: str) -> str:
    return _HASHER.hash(_utf8(password))


def verify_password(password_hash: str | None, password: str) -> bool:
    """True when the password matches; a missing hash still costs one verification."""
    try:
        return (
            _HASHER.verify(password_hash or _DUMMY_HASH, _utf8(password))
            and password_hash is not None
        )
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _HASHER.check_needs_rehash(password_hash)
