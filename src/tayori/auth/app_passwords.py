"""App passwords: one random password per mail program, for members with two-step login.

A mail program cannot ask for a TOTP code, so a member who turns two-step login on gives each
program its own long random password instead. It is shown once, kept only as an argon2 hash,
and can be revoked alone when a phone is lost. The format (four groups of four lowercase
letters and digits, without look-alikes) is easy to type on a phone and has ~82 bits.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import datetime

from tayori.auth.passwords import hash_password, verify_password
from tayori.storage.interfaces import MemberStore
from tayori.storage.member_records import AppPassword

__all__ = [
    "create_app_password",
    "find_app_password",
    "generate",
    "looks_like_app_password",
    "normalise",
]

_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no i, l, o, 0, 1
_GROUPS = 4
_GROUP_LEN = 4


def generate() -> str:
    """A new app password, e.g. `k7mq-x2fa-9hbr-tz4e`."""
    groups = ("".join(secrets.choice(_ALPHABET) for _ in range(_GROUP_LEN)) for _ in range(_GROUPS))
    return "-".join(groups)


def normalise(typed: str) -> str:
    """What is hashed and compared: without spaces, dashes and case, so `K7MQ X2FA…` as a
    member copies it from the page still works."""
    return "".join(ch for ch in typed.lower() if ch not in " -\t")


def looks_like_app_password(typed: str) -> bool:
    """Whether the text could be an app password at all; anything else is not hashed
    against every app password of the account (argon2 costs ~50 ms each)."""
    text = normalise(typed)
    return len(text) == _GROUPS * _GROUP_LEN and all(ch in _ALPHABET for ch in text)


def create_app_password(store: MemberStore, account_id: int, name: str) -> tuple[AppPassword, str]:
    """Make, hash and keep a new app password; returns the record and the password, which the
    caller shows once and forgets."""
    password = generate()
    record = store.add_app_password(account_id, name, hash_password(normalise(password)))
    return record, password


def find_app_password(
    store: MemberStore,
    account_id: int,
    typed: str,
    now: datetime,
    verify: Callable[[str | None, str], bool] = verify_password,
) -> AppPassword | None:
    """The app password the text is, marking it used; None when it is none of them.
    `verify`: a hash check that may remember recent successes (`RecentlyVerified.verify`)."""
    if not looks_like_app_password(typed):
        return None
    text = normalise(typed)
    # Each wrong candidate costs a full argon2 check: the one used last is the likeliest.
    records = sorted(
        store.list_app_passwords(account_id),
        key=lambda r: r.last_used.timestamp() if r.last_used is not None else float("-inf"),
        reverse=True,
    )
    for record in records:
        if verify(record.password_hash, text):
            store.touch_app_password(record.id, now)
            return record
    return None
