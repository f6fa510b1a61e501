"""`tayori rules …`, `tayori forward …` and `tayori spam-settings`: the admin's view of what
members will later set on the web pages (reject lists, safe senders, forwarding, spam block).

Registered by `tayori.cli` (`register`); errors are raised as TayoriError / AddressError and
reported by its `main`, like every other command.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from tayori.core.address import normalise_domain, parse_address
from tayori.core.errors import NotFoundError
from tayori.rules.model import (
    ForwardSettings,
    NewRule,
    Rule,
    RuleAction,
    RuleField,
    RuleList,
    RuleOwner,
    Sensitivity,
    SpamSettings,
)

if TYPE_CHECKING:
    from tayori.storage.factory import Stores

Handler = Callable[[argparse.Namespace], int]
Command = Callable[[Any, str, Handler, str], argparse.ArgumentParser]
Group = Callable[[str, str], Any]

OWNER_HELP = "a member's address, a hosted domain (admin list for its members) or `global`"


def _out(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stdout)


@contextmanager
def _open_stores(args: argparse.Namespace) -> Iterator[Stores]:
    # Imported here, as in tayori.cli, so that `--help` does not load the database drivers.
    from tayori.config.loader import config_path, load_settings
    from tayori.storage.factory import open_stores

    settings = load_settings(config_path(args.config))
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        yield stores
    finally:
        stores.close()


def _owner(stores: Stores, text: str) -> tuple[RuleOwner, str]:
    """The owner named on the command line, and how to name it back."""
    if text.strip().lower() == "global":
        return RuleOwner.everyone(), "global"
    if "@" in text:
        return RuleOwner.account(_account_id(stores, text)), parse_address(text).canonical
    name = normalise_domain(text)
    for domain in stores.metadata.list_domains():
        if domain.name == name:
            return RuleOwner.domain(domain.id), name
    raise NotFoundError(f"domain {name} is not hosted here; see `tayori domain list`")


def _account_id(stores: Stores, text: str) -> int:
    address = parse_address(text).canonical
    account = stores.metadata.get_account(address)
    if account is None:
        raise NotFoundError(f"there is no account {address}; see `tayori user list`")
    return account.id


def _rule_line(rule: Rule) -> str:
    field = "" if rule.field is RuleField.ANY else f"  ({rule.field.value} only)"
    return f"{rule.id:>6}  {rule.list.value:<8} {rule.action.value:<12} {rule.pattern}{field}"


# --- rules --------------------------------------------------------------------------------


def _cmd_rules_list(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        owner, name = _owner(stores, args.owner)
        which = RuleList(args.list) if args.list else None
        rules = stores.rules.list_rules(owner, which)
    if not rules:
        _out(f"no rules for {name}; add one with `tayori rules add {name} PATTERN`")
        return 0
    _out(f"{'ID':>6}  {'LIST':<8} {'ACTION':<12} PATTERN")
    _out(*(_rule_line(rule) for rule in rules))
    return 0


def _cmd_rules_add(args: argparse.Namespace) -> int:
    rule_list = RuleList(args.list)
    action = RuleAction(args.action) if args.action else None
    with _open_stores(args) as stores:
        owner, name = _owner(stores, args.owner)
        rule = stores.rules.add_rule(
            owner, NewRule(rule_list, args.pattern, action, RuleField(args.field))
        )
    _out(f"added rule {rule.id} for {name}: {rule.list.value} {rule.action.value} {rule.pattern}")
    return 0


def _cmd_rules_remove(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        owner, name = _owner(stores, args.owner)
        rule = stores.rules.remove_rule(owner, args.rule_id)
    _out(f"removed rule {rule.id} of {name}: {rule.list.value} {rule.pattern}")
    return 0


# --- forwarding ---------------------------------------------------------------------------


def _forward_lines(address: str, settings: ForwardSettings) -> list[str]:
    if not settings.targets:
        return [f"{address} forwards nowhere"]
    return [
        f"{address} forwards to:",
        *(
            f"  {target}"
            + ("  (keeps bouncing: check or remove it)" if target in settings.failing else "")
            for target in settings.targets
        ),
        f"keep a copy here: {'yes' if settings.keep_copy else 'no'}",
        f"forward mail judged spam: {'no' if settings.skip_spam else 'yes'}",
    ]


def _cmd_forward_list(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        settings = stores.rules.get_forwarding(_account_id(stores, args.address))
    _out(*_forward_lines(parse_address(args.address).canonical, settings))
    return 0


def _cmd_forward_add(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        settings = stores.rules.add_forward_target(_account_id(stores, args.address), args.target)
    _out(*_forward_lines(parse_address(args.address).canonical, settings))
    return 0


def _cmd_forward_remove(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        account_id = _account_id(stores, args.address)
        settings = stores.rules.remove_forward_target(account_id, args.target)
    _out(*_forward_lines(parse_address(args.address).canonical, settings))
    return 0


def _cmd_forward_set(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        settings = stores.rules.set_forward_options(
            _account_id(stores, args.address),
            keep_copy=args.keep_copy,
            skip_spam=None if args.forward_spam is None else not args.forward_spam,
        )
    _out(*_forward_lines(parse_address(args.address).canonical, settings))
    return 0


# --- spam settings ------------------------------------------------------------------------


def _spam_line(address: str, settings: SpamSettings) -> str:
    state = "on" if settings.enabled else "off"
    return f"{address}: spam block {state}, sensitivity {settings.sensitivity.value}"


def _cmd_spam_settings(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        account_id = _account_id(stores, args.address)
        if args.enabled is None and args.sensitivity is None:
            settings = stores.rules.get_spam_settings(account_id)
        else:
            sensitivity = Sensitivity(args.sensitivity) if args.sensitivity else None
            settings = stores.rules.set_spam_settings(
                account_id, enabled=args.enabled, sensitivity=sensitivity
            )
    _out(_spam_line(parse_address(args.address).canonical, settings))
    return 0


# --- Junk retention ------------------------------------------------------------------------


def _time(text: str) -> datetime:
    """An ISO 8601 time; UTC when it names no zone."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not an ISO 8601 time such as 2026-01-31T09:00:00+09:00"
        ) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _cmd_junk_expire(args: argparse.Namespace) -> int:
    from tayori.config.loader import config_path, load_settings
    from tayori.delivery.retention import purge_junk

    days = args.days
    if days is None:
        days = load_settings(config_path(args.config)).spam.junk_retention_days
    now: datetime = args.now or datetime.now(UTC)
    with _open_stores(args) as stores:
        done = purge_junk(stores.metadata, stores.blobs, now, days)
    if days <= 0:
        _out("Junk is kept for ever ([spam] junk_retention_days = 0): nothing deleted")
        return 0
    _out(
        f"deleted {done.messages} Junk messages older than {days} days "
        f"({done.bytes} bytes, {len(done.accounts)} accounts)"
    )
    return 0


# --- the parser ---------------------------------------------------------------------------


def register(commands: Any, command: Command, group: Group) -> None:
    """Add the commands to `tayori`'s parser (`command` and `group` are its helpers)."""
    rules = group(
        "rules",
        "reject lists (受信拒否設定) and safe senders of members, domains and the service",
    )
    listing = command(rules, "list", _cmd_rules_list, "list the rules of an owner")
    listing.add_argument("owner", metavar="OWNER", help=OWNER_HELP)
    listing.add_argument("--list", choices=[each.value for each in RuleList], help="only one")
    add = command(
        rules,
        "add",
        _cmd_rules_add,
        "add a rule: PATTERN is user@example.com, example.com (that domain), "
        ".example.com (with subdomains) or a * wildcard such as *@*.example.com",
    )
    add.add_argument("owner", metavar="OWNER", help=OWNER_HELP)
    add.add_argument("pattern", metavar="PATTERN")
    add.add_argument(
        "--list",
        choices=[each.value for each in RuleList],
        default=RuleList.REJECT.value,
        help="reject (default), safe (safe senders: skip the spam block), "
        "forward (do not forward matching mail)",
    )
    add.add_argument(
        "--action",
        choices=[RuleAction.REJECT.value, RuleAction.JUNK.value],
        help="on the reject list: reject (default; the sender gets an error) or junk (kept "
        "in the Junk folder)",
    )
    add.add_argument(
        "--field",
        choices=[each.value for each in RuleField],
        default=RuleField.ANY.value,
        help="compare with the envelope sender, the From: address, or either (default)",
    )
    remove = command(rules, "remove", _cmd_rules_remove, "remove a rule by its id")
    remove.add_argument("owner", metavar="OWNER", help=OWNER_HELP)
    remove.add_argument("rule_id", metavar="ID", type=int, help="as `tayori rules list` shows")

    forward = group("forward", "forwarding (スーパーメール転送) of a member's mail")
    command(forward, "list", _cmd_forward_list, "where a member's mail is forwarded").add_argument(
        "address"
    )
    forward_add = command(forward, "add", _cmd_forward_add, "forward to one more address")
    forward_add.add_argument("address")
    forward_add.add_argument("target", metavar="TARGET")
    forward_remove = command(forward, "remove", _cmd_forward_remove, "stop forwarding there")
    forward_remove.add_argument("address")
    forward_remove.add_argument("target", metavar="TARGET")
    forward_set = command(forward, "set", _cmd_forward_set, "keep a copy; forward spam or not")
    forward_set.add_argument("address")
    forward_set.add_argument(
        "--keep-copy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also keep forwarded mail in the mailbox here (default: yes)",
    )
    forward_set.add_argument(
        "--forward-spam",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also forward mail judged spam (default: no, it stays in Junk here)",
    )

    junk = group("junk", "the members' Junk folders")
    expire = command(
        junk,
        "expire",
        _cmd_junk_expire,
        "delete Junk messages older than [spam] junk_retention_days (outcome junk.expired); "
        "`tayori serve` does this every hour",
    )
    expire.add_argument("--days", type=int, help="this retention instead of the configured one")
    expire.add_argument(
        "--now",
        metavar="TIME",
        type=_time,
        help="ISO 8601 time to count from instead of now (for checks)",
    )

    spam = command(
        commands,
        "spam-settings",
        _cmd_spam_settings,
        "show or change a member's spam block (迷惑メールブロック): on/off and sensitivity",
    )
    spam.add_argument("address")
    switch = spam.add_mutually_exclusive_group()
    switch.add_argument("--on", dest="enabled", action="store_const", const=True, default=None)
    switch.add_argument("--off", dest="enabled", action="store_const", const=False)
    spam.add_argument("--sensitivity", choices=[each.value for each in Sensitivity])
