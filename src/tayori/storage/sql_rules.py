"""`RulesStore` on SQL: reject lists, safe senders, spam settings and forwarding targets.

Patterns are parsed before they are stored, so that what is stored is canonical and valid
and a bad one is refused with a message the member can act on. Each owner's lists are
bounded (`RuleLimits`); the count and the insert are one transaction, serialised per owner
(BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL) so two admins adding at once
cannot pass the limit together.

Layering note: this imports the pure value modules `tayori.rules.model` and
`tayori.rules.patterns` (which import only `core`), so the store and the decision code share
one definition of a rule and one pattern syntax.
"""

from __future__ import annotations

import zlib
from collections.abc import Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol

from sqlalchemy import Connection, Engine, Row, delete, func, insert, select, text, update

from tayori.core.address import AddressError, parse_address
from tayori.core.errors import ConflictError, NotFoundError
from tayori.core.outcome import utcnow
from tayori.rules.model import (
    FORWARD_FAILURES_FLAGGED,
    LIST_ACTIONS,
    AccountFilters,
    ForwardSettings,
    NewRule,
    Rule,
    RuleAction,
    RuleField,
    RuleLimits,
    RuleList,
    RuleOwner,
    Scope,
    Sensitivity,
    SpamSettings,
)
from tayori.rules.patterns import PatternError, parse_pattern
from tayori.storage.counters import FILTERS, counter_value, raise_counter
from tayori.storage.engine import read_connection, write_transaction
from tayori.storage.schema import (
    FILTER_PATTERN_LEN,
    accounts,
    domains,
    filter_rules,
    filter_settings,
    forward_targets,
)
from tayori.storage.sql_store import Clock, new_id

_LIST_NAMES = {
    RuleList.REJECT: "reject list",
    RuleList.SAFE: "safe senders",
    RuleList.FORWARD: "forwarding reject list",
}

_f = filter_rules.c


class RulesStore(Protocol):
    """Filtering settings of members (account), hosted domains and the whole service."""

    def add_rule(self, owner: RuleOwner, rule: NewRule) -> Rule:
        """Raises PatternError (invalid pattern, action not allowed on the list),
        ConflictError (already listed, or the list is full), NotFoundError (no such owner)."""
        ...

    def list_rules(self, owner: RuleOwner, rule_list: RuleList | None = None) -> list[Rule]:
        """The owner's rules, oldest first."""
        ...

    def remove_rule(self, owner: RuleOwner, rule_id: int) -> Rule:
        """Raises NotFoundError when the owner has no rule of that id."""
        ...

    def filters_for(self, account_id: int) -> AccountFilters:
        """Everything delivery needs for one account in one read: its rules, its domain's
        and the global rules, spam settings and forwarding. Defaults for an unknown id."""
        ...

    def forwarding_accounts(self, account_ids: Collection[int]) -> frozenset[int]:
        """Which of these accounts forward at all, in ONE query: mail our members send each
        other and delivery reports read full filters only for those (forwarding, issue 3)."""
        ...

    def get_spam_settings(self, account_id: int) -> SpamSettings: ...

    def set_spam_settings(
        self,
        account_id: int,
        *,
        enabled: bool | None = None,
        sensitivity: Sensitivity | None = None,
    ) -> SpamSettings:
        """Change what is given, keep the rest. Raises NotFoundError for no such account."""
        ...

    def get_forwarding(self, account_id: int) -> ForwardSettings: ...

    def add_forward_target(self, account_id: int, address: str) -> ForwardSettings:
        """Raises AddressError, ConflictError (listed already, the account's own address, or
        the limit reached), NotFoundError."""
        ...

    def remove_forward_target(self, account_id: int, address: str) -> ForwardSettings:
        """Raises NotFoundError when the address is not a target."""
        ...

    def set_forward_options(
        self,
        account_id: int,
        *,
        keep_copy: bool | None = None,
        skip_spam: bool | None = None,
    ) -> ForwardSettings: ...

    def record_forward_result(self, account_id: int, address: str, *, bounced: bool) -> int:
        """Count a permanent bounce of a forwarded copy (`bounced`), or reset the count on a
        delivery; returns the count. 0 for a target no longer configured."""
        ...


FILTERS_CACHED = 100_000
"""Accounts whose filters one process keeps; beyond it the cache starts again (never wrong)."""


class SqlRulesStore:
    """`RulesStore` on the metadata store's engine (same database, same transactions)."""

    def __init__(
        self, engine: Engine, *, clock: Clock = utcnow, limits: RuleLimits | None = None
    ) -> None:
        self._engine = engine
        self._clock = clock
        self.limits = limits or RuleLimits()
        self._filters: dict[int, tuple[int, AccountFilters]] = {}
        """account id -> (change counter when read, filters). Entries carry their counter, so
        a worker thread storing a result read just before a change never serves it after."""

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        """Every write raises the "filters" change counter in its own transaction, so that
        `filters_for` caches stay exact in every process sharing the database."""
        with write_transaction(self._engine) as conn:
            yield conn
            raise_counter(conn, FILTERS)

    def _read(self) -> AbstractContextManager[Connection]:
        return read_connection(self._engine)

    # --- rules -------------------------------------------------------------------------
    def add_rule(self, owner: RuleOwner, rule: NewRule) -> Rule:
        action = _check_action(owner, rule)
        pattern = parse_pattern(rule.pattern).text
        if len(pattern) > FILTER_PATTERN_LEN:
            raise PatternError(f"{rule.pattern!r} is too long once normalised")
        name = _LIST_NAMES[rule.list]
        with self._write() as conn:
            _require_owner(conn, owner)
            _serialise(conn, owner.key)
            same = conn.execute(
                select(_f.action).where(
                    _f.owner == owner.key,
                    _f.list == rule.list.value,
                    _f.field == rule.field.value,
                    _f.pattern == pattern,
                )
            ).first()
            if same is not None:
                raise ConflictError(
                    f"{pattern} is already on the {name} (action {same.action}); "
                    "remove it first to change it"
                )
            limit = (
                self.limits.account_rules
                if owner.scope is Scope.ACCOUNT
                else self.limits.admin_rules
            )
            count = conn.execute(
                select(func.count())
                .select_from(filter_rules)
                .where(_f.owner == owner.key, _f.list == rule.list.value)
            ).scalar_one()
            if count >= limit:
                raise ConflictError(
                    f"the {name} already has {count} entries, the most allowed; "
                    "remove some (or use a domain or * pattern) first"
                )
            created = self._clock()
            result = conn.execute(
                insert(filter_rules).values(
                    owner=owner.key,
                    account_id=owner.id if owner.scope is Scope.ACCOUNT else None,
                    domain_id=owner.id if owner.scope is Scope.DOMAIN else None,
                    list=rule.list.value,
                    action=action.value,
                    field=rule.field.value,
                    pattern=pattern,
                    created=created,
                )
            )
            rule_id = new_id(result.inserted_primary_key)
        return Rule(rule_id, owner, rule.list, pattern, action, rule.field, created)

    def list_rules(self, owner: RuleOwner, rule_list: RuleList | None = None) -> list[Rule]:
        query = select(filter_rules).where(_f.owner == owner.key)
        if rule_list is not None:
            query = query.where(_f.list == rule_list.value)
        with self._read() as conn:
            rows = conn.execute(query.order_by(_f.id)).all()
        return [_rule(row) for row in rows]

    def remove_rule(self, owner: RuleOwner, rule_id: int) -> Rule:
        with self._write() as conn:
            row = conn.execute(
                select(filter_rules).where(_f.owner == owner.key, _f.id == rule_id)
            ).first()
            if row is None:
                raise NotFoundError(f"there is no rule {rule_id} here; see `tayori rules list`")
            conn.execute(delete(filter_rules).where(_f.id == rule_id))
        return _rule(row)

    def filters_for(self, account_id: int) -> AccountFilters:
        """Cached per account while the "filters" change counter stays the same: one small
        read instead of four for every recipient of every message."""
        with self._read() as conn:
            counter = counter_value(conn, FILTERS)
            cached = self._filters.get(account_id)
            if counter is not None and cached is not None and cached[0] == counter:
                return cached[1]
            found = self._read_filters(conn, account_id)
        if counter is not None:
            if len(self._filters) >= FILTERS_CACHED:
                self._filters.clear()
            self._filters[account_id] = (counter, found)
        return found

    def _read_filters(self, conn: Connection, account_id: int) -> AccountFilters:
        domain_id = conn.execute(
            select(accounts.c.domain_id).where(accounts.c.id == account_id)
        ).scalar_one_or_none()
        owners = [RuleOwner.account(account_id).key, RuleOwner.everyone().key]
        if domain_id is not None:
            owners.append(RuleOwner.domain(domain_id).key)
        rows = conn.execute(select(filter_rules).where(_f.owner.in_(owners)).order_by(_f.id)).all()
        settings = _settings_row(conn, account_id)
        targets = _targets(conn, account_id)
        return AccountFilters(
            rules=tuple(_rule(row) for row in rows),
            spam=_spam(settings),
            forwarding=_forwarding(settings, targets),
        )

    def forwarding_accounts(self, account_ids: Collection[int]) -> frozenset[int]:
        ids = sorted(set(account_ids))
        if not ids:
            return frozenset()
        with self._read() as conn:
            found = conn.scalars(
                select(forward_targets.c.account_id)
                .where(forward_targets.c.account_id.in_(ids))
                .distinct()
            )
            return frozenset(int(account_id) for account_id in found)

    # --- spam settings -----------------------------------------------------------------
    def get_spam_settings(self, account_id: int) -> SpamSettings:
        with self._read() as conn:
            return _spam(_settings_row(conn, account_id))

    def set_spam_settings(
        self,
        account_id: int,
        *,
        enabled: bool | None = None,
        sensitivity: Sensitivity | None = None,
    ) -> SpamSettings:
        changes: dict[str, Any] = {}
        if enabled is not None:
            changes["spam_enabled"] = enabled
        if sensitivity is not None:
            changes["spam_sensitivity"] = Sensitivity(sensitivity).value
        with self._write() as conn:
            return _spam(_change_settings(conn, account_id, changes))

    # --- forwarding --------------------------------------------------------------------
    def get_forwarding(self, account_id: int) -> ForwardSettings:
        with self._read() as conn:
            return _forwarding(_settings_row(conn, account_id), _targets(conn, account_id))

    def add_forward_target(self, account_id: int, address: str) -> ForwardSettings:
        target = parse_address(address).canonical
        with self._write() as conn:
            own = _require_account(conn, account_id)
            if target == own:
                raise ConflictError(f"{own} cannot forward to itself")
            _serialise(conn, RuleOwner.account(account_id).key)
            targets = _targets(conn, account_id)
            if target in (each for each, _ in targets):
                raise ConflictError(f"{own} already forwards to {target}")
            if len(targets) >= self.limits.forward_targets:
                raise ConflictError(
                    f"{own} already forwards to {len(targets)} addresses, the most allowed; "
                    "remove one first"
                )
            conn.execute(
                insert(forward_targets).values(
                    account_id=account_id,
                    address=target,
                    created=self._clock(),
                    permanent_failures=0,
                )
            )
            return _forwarding(_settings_row(conn, account_id), _targets(conn, account_id))

    def remove_forward_target(self, account_id: int, address: str) -> ForwardSettings:
        try:
            target = parse_address(address).canonical
        except AddressError:
            target = address.strip().lower()
        with self._write() as conn:
            own = _require_account(conn, account_id)
            removed = conn.execute(
                delete(forward_targets).where(
                    forward_targets.c.account_id == account_id,
                    forward_targets.c.address == target,
                )
            ).rowcount
            if not removed:
                raise NotFoundError(f"{own} does not forward to {target}")
            return _forwarding(_settings_row(conn, account_id), _targets(conn, account_id))

    def set_forward_options(
        self,
        account_id: int,
        *,
        keep_copy: bool | None = None,
        skip_spam: bool | None = None,
    ) -> ForwardSettings:
        changes: dict[str, Any] = {}
        if keep_copy is not None:
            changes["forward_keep_copy"] = keep_copy
        if skip_spam is not None:
            changes["forward_skip_spam"] = skip_spam
        with self._write() as conn:
            settings = _change_settings(conn, account_id, changes)
            return _forwarding(settings, _targets(conn, account_id))

    def record_forward_result(self, account_id: int, address: str, *, bounced: bool) -> int:
        column = forward_targets.c.permanent_failures
        where = (
            forward_targets.c.account_id == account_id,
            forward_targets.c.address == address.strip().lower(),
        )
        with self._write() as conn:
            conn.execute(
                update(forward_targets)
                .where(*where)
                .values(permanent_failures=column + 1 if bounced else 0)
            )
            count = conn.execute(select(column).where(*where)).scalar_one_or_none()
        return 0 if count is None else int(count)


# --- helpers ----------------------------------------------------------------------------


def _check_action(owner: RuleOwner, rule: NewRule) -> RuleAction:
    allowed = LIST_ACTIONS[rule.list]
    action = allowed[0] if rule.action is None else rule.action
    if action not in allowed:
        choices = ", ".join(each.value for each in allowed)
        raise PatternError(
            f"action {action.value} is not possible on the {_LIST_NAMES[rule.list]} "
            f"(possible: {choices})"
        )
    if owner.scope is not Scope.ACCOUNT and rule.list is not RuleList.REJECT:
        raise PatternError(
            f"domains and the global list have reject lists only, not "
            f"{_LIST_NAMES[rule.list]}; add those to a member's account"
        )
    return action


def _serialise(conn: Connection, key: str) -> None:
    # SQLite writers are serialised by BEGIN IMMEDIATE already.
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:key)"),
            {"key": zlib.crc32(f"tayori.rules.{key}".encode())},
        )


def _require_owner(conn: Connection, owner: RuleOwner) -> None:
    if owner.scope is Scope.ACCOUNT:
        assert owner.id is not None
        _require_account(conn, owner.id)
    elif owner.scope is Scope.DOMAIN:
        found = conn.execute(select(domains.c.id).where(domains.c.id == owner.id)).first()
        if found is None:
            raise NotFoundError(f"there is no domain with id {owner.id}")


def _require_account(conn: Connection, account_id: int) -> str:
    address = conn.execute(
        select(accounts.c.address).where(accounts.c.id == account_id)
    ).scalar_one_or_none()
    if address is None:
        raise NotFoundError(f"there is no account with id {account_id}")
    return str(address)


def _rule(row: Row[Any]) -> Rule:
    if row.account_id is not None:
        owner = RuleOwner.account(row.account_id)
    elif row.domain_id is not None:
        owner = RuleOwner.domain(row.domain_id)
    else:
        owner = RuleOwner.everyone()
    return Rule(
        id=row.id,
        owner=owner,
        list=RuleList(row.list),
        pattern=row.pattern,
        action=RuleAction(row.action),
        field=RuleField(row.field),
        created=row.created,
    )


def _settings_row(conn: Connection, account_id: int) -> Row[Any] | None:
    return conn.execute(
        select(filter_settings).where(filter_settings.c.account_id == account_id)
    ).first()


def _change_settings(conn: Connection, account_id: int, changes: dict[str, Any]) -> Row[Any]:
    _require_account(conn, account_id)
    _serialise(conn, f"settings:{account_id}")  # two first writes must not both insert
    row = _settings_row(conn, account_id)
    if row is None:
        defaults_spam, defaults_forward = SpamSettings(), ForwardSettings()
        values = {
            "account_id": account_id,
            "spam_enabled": defaults_spam.enabled,
            "spam_sensitivity": defaults_spam.sensitivity.value,
            "forward_keep_copy": defaults_forward.keep_copy,
            "forward_skip_spam": defaults_forward.skip_spam,
        }
        conn.execute(insert(filter_settings).values({**values, **changes}))
    elif changes:
        conn.execute(
            update(filter_settings)
            .where(filter_settings.c.account_id == account_id)
            .values(changes)
        )
    changed = _settings_row(conn, account_id)
    assert changed is not None
    return changed


def _targets(conn: Connection, account_id: int) -> list[tuple[str, int]]:
    """(address, permanent failures in a row), in the order they were added."""
    rows = conn.execute(
        select(forward_targets.c.address, forward_targets.c.permanent_failures)
        .where(forward_targets.c.account_id == account_id)
        .order_by(forward_targets.c.id)
    ).all()
    return [(row.address, int(row.permanent_failures)) for row in rows]


def _spam(row: Row[Any] | None) -> SpamSettings:
    if row is None:
        return SpamSettings()
    return SpamSettings(bool(row.spam_enabled), Sensitivity(row.spam_sensitivity))


def _forwarding(row: Row[Any] | None, targets: Sequence[tuple[str, int]]) -> ForwardSettings:
    addresses = tuple(address for address, _ in targets)
    failing = tuple(address for address, count in targets if count >= FORWARD_FAILURES_FLAGGED)
    if row is None:
        return ForwardSettings(targets=addresses, failing=failing)
    return ForwardSettings(
        targets=addresses,
        keep_copy=bool(row.forward_keep_copy),
        skip_spam=bool(row.forward_skip_spam),
        failing=failing,
    )
