"""`MemberStore` on SQL: a member's preferences, TOTP second factor, app passwords and
recent correspondents, on the metadata store's engine.

Values are checked here (lengths, the language list, address syntax) so that both the web
pages and the CLI get the same refusals, and the database never holds what a page could not
show back. Hashing and TOTP arithmetic are not done here: the store keeps what `tayori.auth`
computed.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, text, update

from tayori.core.address import AddressError, parse_address
from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import utcnow
from tayori.storage.engine import read_connection, write_transaction
from tayori.storage.member_records import (
    APP_PASSWORD_NAME_LEN,
    DISPLAY_NAME_LEN,
    LANGUAGES,
    SIGNATURE_LEN,
    TIME_ZONE_LEN,
    TOTP_SECRET_LEN,
    AppPassword,
    Correspondent,
    MemberLimits,
    MemberPreferences,
    TotpState,
)
from tayori.storage.schema import (
    accounts,
    app_passwords,
    member_correspondents,
    member_image_senders,
    member_settings,
)
from tayori.storage.sql_store import Clock, new_id

_s = member_settings.c
_a = app_passwords.c
_c = member_correspondents.c

_DEFAULTS: dict[str, Any] = {
    "display_name": "",
    "signature": "",
    "language": "",
    "time_zone": "",
    "totp_secret": None,
    "totp_enabled": False,
    "totp_last_step": 0,
}


class SqlMemberStore:
    """`MemberStore` on the metadata store's engine (same database, same transactions)."""

    def __init__(
        self, engine: Engine, *, clock: Clock = utcnow, limits: MemberLimits | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.limits = limits or MemberLimits()

    def _write(self) -> AbstractContextManager[Connection]:
        return write_transaction(self._engine)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self._engine)

    # --- preferences ------------------------------------------------------------------------
    def get_preferences(self, account_id: int) -> MemberPreferences:
        with self._read() as conn:
            return _preferences(conn, account_id)

    def set_preferences(
        self,
        account_id: int,
        *,
        display_name: str | None = None,
        signature: str | None = None,
        language: str | None = None,
        time_zone: str | None = None,
    ) -> MemberPreferences:
        changes: dict[str, Any] = {}
        if display_name is not None:
            name = " ".join(display_name.split())
            if len(name) > DISPLAY_NAME_LEN:
                raise ValueError(f"the display name is longer than {DISPLAY_NAME_LEN} characters")
            changes["display_name"] = name
        if signature is not None:
            if len(signature) > SIGNATURE_LEN:
                raise ValueError(f"the signature is longer than {SIGNATURE_LEN} characters")
            changes["signature"] = signature.replace("\r\n", "\n")
        if language is not None:
            if language and language not in LANGUAGES:
                raise ValueError(f"language {language!r} is not one of {', '.join(LANGUAGES)}")
            changes["language"] = language
        if time_zone is not None:
            if len(time_zone) > TIME_ZONE_LEN:
                raise ValueError(f"time zone {time_zone[:80]!r} is too long")
            changes["time_zone"] = time_zone
        with self._write() as conn:
            _change(conn, account_id, changes)
            return _preferences(conn, account_id)

    def add_image_sender(self, account_id: int, address: str) -> MemberPreferences:
        sender = parse_address(address).canonical
        with self._write() as conn:
            _require_account(conn, account_id)
            _serialise(conn, f"images:{account_id}")
            listed = conn.execute(
                select(member_image_senders.c.address).where(
                    member_image_senders.c.account_id == account_id
                )
            ).scalars()
            known = set(listed)
            if sender not in known:
                if len(known) >= self.limits.image_senders:
                    raise ConflictError(
                        f"images are already always shown for {len(known)} senders, the most "
                        "allowed; remove some first"
                    )
                conn.execute(
                    insert(member_image_senders).values(
                        account_id=account_id, address=sender, created=self._clock()
                    )
                )
            return _preferences(conn, account_id)

    def remove_image_sender(self, account_id: int, address: str) -> MemberPreferences:
        try:
            sender = parse_address(address).canonical
        except AddressError:
            sender = address.strip().lower()
        with self._write() as conn:
            conn.execute(
                delete(member_image_senders).where(
                    member_image_senders.c.account_id == account_id,
                    member_image_senders.c.address == sender,
                )
            )
            return _preferences(conn, account_id)

    # --- TOTP ---------------------------------------------------------------------------
    def get_totp(self, account_id: int) -> TotpState | None:
        with self._read() as conn:
            row = _row(conn, account_id)
        if row is None or not row.totp_secret:
            return None
        return TotpState(str(row.totp_secret), bool(row.totp_enabled), int(row.totp_last_step))

    def begin_totp(self, account_id: int, secret: str) -> None:
        if not secret or len(secret) > TOTP_SECRET_LEN:
            raise ValueError("a TOTP secret must be 1 to 64 characters of base32")
        with self._write() as conn:
            row = _change(conn, account_id, {})
            if row.totp_enabled:
                raise ConflictError("two-step login is on already; turn it off first")
            conn.execute(
                update(member_settings)
                .where(_s.account_id == account_id)
                .values(totp_secret=secret, totp_last_step=0)
            )

    def enable_totp(self, account_id: int, step: int) -> bool:
        with self._write() as conn:
            row = _change(conn, account_id, {})
            if not row.totp_secret:
                raise NotFoundError("there is no two-step login being set up; start again")
            if row.totp_enabled:
                return False
            conn.execute(
                update(member_settings)
                .where(_s.account_id == account_id)
                .values(totp_enabled=True, totp_last_step=step)
            )
        return True

    def disable_totp(self, account_id: int) -> None:
        with self._write() as conn:
            _change(conn, account_id, {"totp_secret": None, "totp_enabled": False})

    def use_totp_step(self, account_id: int, step: int) -> bool:
        with self._write() as conn:
            used = conn.execute(
                update(member_settings)
                .where(
                    _s.account_id == account_id,
                    _s.totp_enabled.is_(True),
                    _s.totp_last_step < step,
                )
                .values(totp_last_step=step)
            ).rowcount
        return bool(used)

    # --- app passwords --------------------------------------------------------------------
    def add_app_password(self, account_id: int, name: str, password_hash: str) -> AppPassword:
        label = " ".join(name.split())
        if not label:
            raise ValueError("give the app password a name (e.g. the mail program's)")
        if len(label) > APP_PASSWORD_NAME_LEN:
            raise ValueError(f"the name is longer than {APP_PASSWORD_NAME_LEN} characters")
        created = self._clock()
        with self._write() as conn:
            _require_account(conn, account_id)
            _serialise(conn, f"app:{account_id}")
            names = set(conn.execute(select(_a.name).where(_a.account_id == account_id)).scalars())
            if label in names:
                raise ConflictError(f"there is already an app password named {label!r}")
            if len(names) >= self.limits.app_passwords:
                raise ConflictError(
                    f"there are already {len(names)} app passwords, the most allowed; "
                    "revoke one you no longer use first"
                )
            result = conn.execute(
                insert(app_passwords).values(
                    account_id=account_id,
                    name=label,
                    password_hash=password_hash,
                    created=created,
                    last_used=None,
                )
            )
            ident = new_id(result.inserted_primary_key)
        return AppPassword(ident, account_id, label, password_hash, created, None)

    def list_app_passwords(self, account_id: int) -> list[AppPassword]:
        with self._read() as conn:
            rows = conn.execute(
                select(app_passwords).where(_a.account_id == account_id).order_by(_a.id)
            ).all()
        return [_app_password(row) for row in rows]

    def remove_app_password(self, account_id: int, password_id: int) -> AppPassword:
        with self._write() as conn:
            row = conn.execute(
                select(app_passwords).where(_a.account_id == account_id, _a.id == password_id)
            ).first()
            if row is None:
                raise NotFoundError(f"there is no app password {password_id} here")
            conn.execute(delete(app_passwords).where(_a.id == password_id))
        return _app_password(row)

    def touch_app_password(self, password_id: int, when: datetime) -> None:
        with self._write() as conn:
            conn.execute(update(app_passwords).where(_a.id == password_id).values(last_used=when))

    # --- recent correspondents ------------------------------------------------------------
    def record_correspondents(
        self, account_id: int, people: Sequence[tuple[str, str]], when: datetime
    ) -> None:
        seen: dict[str, str] = {}
        for address, name in people:
            try:
                seen[parse_address(address).canonical] = " ".join(name.split())[:DISPLAY_NAME_LEN]
            except AddressError:
                continue
        if not seen:
            return
        with self._write() as conn:
            _serialise(conn, f"people:{account_id}")
            existing = {
                row.address: row
                for row in conn.execute(
                    select(_c.address, _c.name).where(
                        _c.account_id == account_id, _c.address.in_(list(seen))
                    )
                )
            }
            for address, name in seen.items():
                if address in existing:
                    values: dict[str, Any] = {"last_used": when, "uses": _c.uses + 1}
                    if name:
                        values["name"] = name
                    conn.execute(
                        update(member_correspondents)
                        .where(_c.account_id == account_id, _c.address == address)
                        .values(values)
                    )
                else:
                    conn.execute(
                        insert(member_correspondents).values(
                            account_id=account_id,
                            address=address,
                            name=name,
                            last_used=when,
                            uses=1,
                        )
                    )
            count = conn.execute(
                select(func.count())
                .select_from(member_correspondents)
                .where(_c.account_id == account_id)
            ).scalar_one()
            excess = int(count) - self.limits.correspondents
            if excess > 0:
                oldest = (
                    select(_c.address)
                    .where(_c.account_id == account_id)
                    .order_by(_c.last_used, _c.address)
                    .limit(excess)
                )
                stale = list(conn.execute(oldest).scalars())
                conn.execute(
                    delete(member_correspondents).where(
                        _c.account_id == account_id, _c.address.in_(stale)
                    )
                )

    def suggest_correspondents(
        self, account_id: int, prefix: str, limit: int = 10
    ) -> list[Correspondent]:
        typed = prefix.strip().lower()
        query = select(member_correspondents).where(_c.account_id == account_id)
        if typed:
            like = typed.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
            query = query.where(
                _c.address.like(like, escape="\\")
                | func.lower(_c.name).like(like, escape="\\")
                | func.lower(_c.name).like("% " + like, escape="\\")
            )
        query = query.order_by(_c.last_used.desc(), _c.address).limit(max(1, min(limit, 50)))
        with self._read() as conn:
            rows = conn.execute(query).all()
        return [Correspondent(row.address, row.name, row.last_used, int(row.uses)) for row in rows]


# --- helpers ----------------------------------------------------------------------------


def _serialise(conn: Connection, key: str) -> None:
    # SQLite writers are serialised by BEGIN IMMEDIATE already.
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": zlib.crc32(f"tayori.member.{key}".encode())},
        )


def _require_account(conn: Connection, account_id: int) -> None:
    found = conn.execute(select(accounts.c.id).where(accounts.c.id == account_id)).first()
    if found is None:
        raise NotFoundError(f"there is no account with id {account_id}")


def _row(conn: Connection, account_id: int) -> Row[Any] | None:
    return conn.execute(select(member_settings).where(_s.account_id == account_id)).first()


def _change(conn: Connection, account_id: int, changes: dict[str, Any]) -> Row[Any]:
    _require_account(conn, account_id)
    _serialise(conn, f"settings:{account_id}")  # two first writes must not both insert
    if _row(conn, account_id) is None:
        conn.execute(
            insert(member_settings).values({**_DEFAULTS, **changes, "account_id": account_id})
        )
    elif changes:
        conn.execute(update(member_settings).where(_s.account_id == account_id).values(changes))
    row = _row(conn, account_id)
    assert row is not None
    return row


def _preferences(conn: Connection, account_id: int) -> MemberPreferences:
    row = _row(conn, account_id)
    senders = tuple(
        conn.execute(
            select(member_image_senders.c.address)
            .where(member_image_senders.c.account_id == account_id)
            .order_by(member_image_senders.c.address)
        ).scalars()
    )
    if row is None:
        return MemberPreferences(image_senders=senders)
    return MemberPreferences(
        display_name=row.display_name,
        signature=row.signature,
        language=row.language,
        time_zone=row.time_zone,
        totp_enabled=bool(row.totp_enabled),
        image_senders=senders,
    )


def _app_password(row: Row[Any]) -> AppPassword:
    return AppPassword(
        id=row.id,
        account_id=row.account_id,
        name=row.name,
        password_hash=row.password_hash,
        created=row.created,
        last_used=row.last_used,
    )
