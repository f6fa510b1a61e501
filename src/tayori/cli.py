"""The `tayori` command: set up an instance, serve it, and administer domains and members.

Every command either does all of its work or none of it, and every failure is one line on
stderr starting with `error: ` and an exit status other than 0, because admins run these
from scripts as often as by hand. The store's error texts are written for people (they say
what to do next), so they are printed as they are.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import shutil
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tayori import __version__
from tayori.config.loader import CONFIG_ENV, check_host, config_path, load_settings
from tayori.config.reference import render_config_file
from tayori.config.settings import Settings
from tayori.core.address import AddressError, normalise_domain, parse_address
from tayori.core.errors import ConfigError, ConflictError, NotFoundError, TayoriError
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.core.sizes import format_size, parse_size

if TYPE_CHECKING:
    from tayori.storage.factory import Stores
    from tayori.storage.records import Account, QueuedRecipient, QueueEntry

__all__ = ["main"]

CONFIG_NAME = "tayori.toml"
DEMO_MEMBERS = ("alice", "bob")
DEMO_DOMAIN = "example.test"

# Exit statuses: 1 for a refused or failed operation, 2 for bad usage or a bad config
# (argparse's own convention), so scripts can tell "fix the command" from "it failed".
EXIT_FAILED = 1
EXIT_USAGE = 2


class CommandError(TayoriError):
    """A command refused its input; the text says what to do instead."""


Handler = Callable[[argparse.Namespace], int]


def _out(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stdout)


def _err(text: str) -> None:
    print(f"error: {text}", file=sys.stderr)


# --- shared helpers ---------------------------------------------------------------------------


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path(args.config))


@contextmanager
def _open_stores(args: argparse.Namespace) -> Iterator[Stores]:
    # Imported here so `tayori --help`, `docs` and `config check` do not load the drivers.
    from tayori.storage.factory import open_stores

    settings = _settings(args)
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        yield stores
    finally:
        stores.close()


def _address(text: str) -> str:
    return parse_address(text).canonical


def _domain(text: str) -> str:
    return normalise_domain(text)


def _quota(text: str) -> int:
    """A quota: a size, or 0 / `unlimited` for none."""
    if text.strip().lower() == "unlimited":
        return 0
    try:
        return parse_size(text)
    except ValueError as error:
        raise CommandError(f"quota: {error}, or 0 / unlimited for no limit") from None


def _is_tty() -> bool:
    return sys.stdin is not None and sys.stdin.isatty()


def _read_password(args: argparse.Namespace) -> str:
    """One line from stdin with --password-stdin, else asked twice on the terminal."""
    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif _is_tty():
        password = getpass.getpass("Password: ")
        if password and getpass.getpass("Password again: ") != password:
            raise CommandError("the two passwords differ; nothing was changed")
    else:
        raise CommandError(
            "no terminal to ask for the password on; pipe it in with --password-stdin"
        )
    if not password:
        raise CommandError("an empty password is not allowed; nothing was changed")
    return password


def _hash(password: str) -> str:
    from tayori.auth.passwords import hash_password  # argon2: only for commands that hash

    return hash_password(password)


def _redact(url: str) -> str:
    """A storage URL fit to print: the password, if any, replaced."""
    return re.sub(r"(://[^/@:]*:)[^/@]*@", r"\1***@", url)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    return [
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in [header, *rows]
    ]


def _display(path: Path) -> str:
    """A path as the admin would type it: relative to here when below here."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# --- init -------------------------------------------------------------------------------------


def _snapshot(directory: Path) -> set[Path] | None:
    return set(directory.iterdir()) if directory.is_dir() else None


def _undo(directory: Path, before: set[Path] | None, created: Sequence[Path]) -> None:
    """Remove what a failed init created, so that running it again starts clean."""
    if before is None:
        shutil.rmtree(directory, ignore_errors=True)
        return
    for path in [*created, *(set(directory.iterdir()) - before)]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)


def _cmd_init(args: argparse.Namespace) -> int:
    if args.config:
        raise CommandError(
            f"init writes {CONFIG_NAME} into the data dir; choose where with --data-dir"
        )
    data_dir = Path(args.data_dir).expanduser().absolute()
    config_file = data_dir / CONFIG_NAME
    if config_file.exists():
        raise ConflictError(
            f"{config_file} exists already; init never overwrites a config "
            "(use another --data-dir, or move the file away first)"
        )
    if data_dir.exists() and not data_dir.is_dir():
        raise CommandError(f"{data_dir} exists and is not a directory")
    domain = _domain(args.domain) if args.domain else (DEMO_DOMAIN if args.demo else None)
    try:
        hostname = check_host(args.hostname) if args.hostname else ""
    except ValueError as error:
        raise CommandError(f"--hostname: {error}") from None

    before = _snapshot(data_dir)
    created: list[Path] = []
    try:
        passwords = _init_instance(data_dir, hostname, domain, args.demo, created)
        values: dict[str, dict[str, Any]] = {"server": {"hostname": hostname}} if hostname else {}
        if args.demo:
            # A demo on loopback is not an Internet MX, and may have no working DNS: the
            # sender, SPF, DKIM and reverse-DNS checks would only delay or refuse test mail.
            values["inbound"] = {"checks": False}
        # Exclusive create: never overwrite a config another init wrote meanwhile. Private,
        # because a config may hold a database password.
        descriptor = os.open(config_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as out:
            out.write(render_config_file(values))
    except BaseException:
        _undo(data_dir, before, created)
        raise
    _print_init_report(data_dir, config_file, domain, passwords, created)
    return 0


def _init_instance(
    data_dir: Path, hostname: str, domain: str | None, demo: bool, created: list[Path]
) -> dict[str, str]:
    """Database, certificate, domain and demo members; returns the demo passwords."""
    from tayori.auth.passwords import generate_password
    from tayori.servers.tls import write_self_signed
    from tayori.storage.factory import migrate, open_stores

    # Members' mail lives here: readable by the service's user only.
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    cert, key = data_dir / "tls" / "cert.pem", data_dir / "tls" / "key.pem"
    if not (cert.exists() and key.exists()):
        created += [cert, key]
        write_self_signed(hostname or socket.getfqdn(), cert, key)
    migrate("", data_dir)
    passwords: dict[str, str] = {}
    stores = open_stores("", data_dir)
    try:
        if domain is not None and domain not in {d.name for d in stores.metadata.list_domains()}:
            stores.metadata.add_domain(domain)
        if demo:
            for name in DEMO_MEMBERS:
                address = f"{name}@{domain}"
                password = generate_password()
                stores.metadata.add_account(address, _hash(password), 0)
                passwords[address] = password
    finally:
        stores.close()
    return passwords


def _print_init_report(
    data_dir: Path,
    config_file: Path,
    domain: str | None,
    passwords: dict[str, str],
    created: list[Path],
) -> None:
    config = _display(config_file)
    _out(
        f"Created a Tayori instance in {_display(data_dir)}",
        f"  config    {config}",
        f"  database  {_display(data_dir / 'tayori.db')} (SQLite)",
        f"  TLS       {_display(data_dir / 'tls' / 'cert.pem')}"
        + (" (self-signed: for development only)" if created else " (kept)"),
    )
    if domain is not None:
        _out(f"  domain    {domain}")
    if passwords:
        width = max(len(address) for address in passwords)
        _out(
            "",
            "Demo members. Their passwords are shown this once only; note them now:",
            *(f"  {address.ljust(width)}  {password}" for address, password in passwords.items()),
        )
    command = f"tayori --config {config}"
    add_domain = [] if domain else [f"  {command} domain add YOUR.DOMAIN"]
    _out(
        "",
        "Next steps:",
        *add_domain,
        f"  {command} user add NAME@{domain or 'YOUR.DOMAIN'}",
        f"  {command} config check",
        f"  tayori serve --config {config}",
        *_webmail_hint(),
    )


def _webmail_hint() -> list[str]:
    """Where members read mail once `serve` runs: the `[listen] http` address init wrote."""
    from tayori.config.settings import ListenSettings

    http = ListenSettings().http
    if http is None:
        return []
    return [f"  then open http://{http}/ in a browser: the webmail (members sign in there)"]


# --- serve, migrate, config, docs -------------------------------------------------------------


def _cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings(args)
    from tayori.app import serve

    return serve(settings)


def _cmd_migrate(args: argparse.Namespace) -> int:
    from tayori.storage.factory import migrate

    settings = _settings(args)
    migrate(settings.storage.url, settings.server.data_dir)
    _out(f"database is at the latest schema: {_redact(settings.storage.url)}")
    return 0


def _cmd_config_check(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    try:
        load_settings(path)
    except ConfigError as error:
        print(error, file=sys.stderr)
        return EXIT_FAILED
    _out(f"ok: {path}")
    return 0


def _cmd_docs(args: argparse.Namespace) -> int:
    from tayori.docgen import stale_docs, write_docs

    if args.write is not None:
        for path in write_docs(Path(args.write)):
            _out(f"wrote {path}")
        return 0
    stale = stale_docs(Path(args.check))
    for path in stale:
        print(
            f"stale: {path} (regenerate with `tayori docs --write {args.check}`)", file=sys.stderr
        )
    if not stale:
        _out(f"ok: generated docs in {args.check} are up to date")
    return EXIT_FAILED if stale else 0


# --- domains ----------------------------------------------------------------------------------


def _cmd_domain_add(args: argparse.Namespace) -> int:
    name = _domain(args.domain)
    with _open_stores(args) as stores:
        stores.metadata.add_domain(name)
    _out(f"added domain {name}")
    return 0


def _cmd_domain_list(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        domains = stores.metadata.list_domains()
    if not domains:
        _out("no domains yet; add one with `tayori domain add DOMAIN`")
    _out(*(domain.name for domain in domains))
    return 0


def _cmd_domain_remove(args: argparse.Namespace) -> int:
    name = _domain(args.domain)
    with _open_stores(args) as stores:
        stores.metadata.remove_domain(name)
    _out(f"removed domain {name}")
    return 0


# --- users ------------------------------------------------------------------------------------


def _cmd_user_add(args: argparse.Namespace) -> int:
    address = _address(args.address)
    quota = _quota(args.quota)
    domain = address.rpartition("@")[2]
    with _open_stores(args) as stores:
        metadata = stores.metadata
        # Checked before asking for a password, so nobody types one for nothing; the store
        # checks again inside its transaction.
        if domain not in {d.name for d in metadata.list_domains()}:
            raise NotFoundError(
                f"domain {domain} is not hosted here; add it with `tayori domain add {domain}`"
            )
        if metadata.get_account(address) is not None:
            raise ConflictError(
                f"{address} exists already; to change its password use "
                f"`tayori user passwd {address}`"
            )
        password_hash = _hash(_read_password(args))
        account = metadata.add_account(address, password_hash, quota)
    limit = format_size(quota) if quota else "no quota"
    _out(f"added {account.address} ({limit})")
    return 0


def _existing(stores: Stores, address: str) -> Account:
    account = stores.metadata.get_account(address)
    if account is None:
        raise NotFoundError(f"no account {address}; see `tayori user list`")
    return account


def _cmd_user_passwd(args: argparse.Namespace) -> int:
    address = _address(args.address)
    with _open_stores(args) as stores:
        _existing(stores, address)
        stores.metadata.set_password(address, _hash(_read_password(args)))
    _out(f"changed the password of {address}")
    return 0


def _cmd_user_two_step_off(args: argparse.Namespace) -> int:
    """For a member who lost the phone with their authenticator app (issue 6): the webmail
    asks for a code they cannot give, so only an admin can let them in again."""
    address = _address(args.address)
    with _open_stores(args) as stores:
        account = _existing(stores, address)
        was_on = stores.member.get_preferences(account.id).totp_enabled
        stores.member.disable_totp(account.id)
    if was_on:
        _out(f"turned two-step login off for {address}; they can set it up again in Settings")
    else:
        _out(f"two-step login was not on for {address}; nothing changed")
    return 0


def _cmd_user_quota(args: argparse.Namespace) -> int:
    address = _address(args.address)
    quota = _quota(args.size)
    with _open_stores(args) as stores:
        _existing(stores, address)
        stores.metadata.set_quota(address, quota)
    _out(f"quota of {address}: {format_size(quota) if quota else 'unlimited'}")
    return 0


def _cmd_user_list(args: argparse.Namespace) -> int:
    from tayori.diagnostics.flags import is_flagged, sending_limit_hits

    domain = _domain(args.domain) if args.domain else None
    flag_after = _settings(args).submission.flag_after
    now = datetime.now(UTC)
    with _open_stores(args) as stores:
        accounts = stores.metadata.list_accounts(domain)
        hits = {a.id: sending_limit_hits(stores.metadata, a.id, now) for a in accounts}
    if not accounts:
        _out("no accounts" + (f" in {domain}" if domain else ""))
        return 0
    rows = []
    for account in accounts:
        quota = account.quota_bytes
        flagged = is_flagged(hits[account.id], flag_after)
        rows.append(
            [
                account.address,
                format_size(account.used_bytes),
                format_size(quota) if quota else "unlimited",
                f"{account.used_bytes * 100 / quota:.1f}%" if quota else "-",
                str(account.status),
                f"sending limits hit {hits[account.id]}x in 24h" if flagged else "",
            ]
        )
    _out(*_table(["ADDRESS", "USED", "QUOTA", "USE%", "STATUS", "FLAG"], rows))
    return 0


def _cmd_user_remove(args: argparse.Namespace) -> int:
    address = _address(args.address)
    with _open_stores(args) as stores:
        account = _existing(stores, address)
        if not args.yes:
            if not _is_tty():
                raise CommandError(
                    f"not removing {address} without confirmation; add --yes to remove it "
                    "and all its mail"
                )
            answer = input(
                f"Remove {address} and all its mail ({format_size(account.used_bytes)})? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                _out("nothing was removed")
                return EXIT_FAILED
        refs = stores.metadata.remove_account(address)
        # After the commit: a crash here leaves unreferenced files, never missing ones.
        stores.blobs.delete(refs)
    _out(f"removed {address} and {len(refs)} message(s)")
    return 0


# --- aliases ----------------------------------------------------------------------------------


def _cmd_alias_add(args: argparse.Namespace) -> int:
    alias = _address(args.alias)
    targets = [_address(target) for target in args.targets]
    with _open_stores(args) as stores:
        result = stores.metadata.add_alias(alias, targets)
    _out(f"{result.address} -> {', '.join(result.targets)}")
    return 0


def _cmd_alias_list(args: argparse.Namespace) -> int:
    domain = _domain(args.domain) if args.domain else None
    with _open_stores(args) as stores:
        aliases = stores.metadata.list_aliases(domain)
    if not aliases:
        _out("no aliases" + (f" in {domain}" if domain else ""))
    _out(*(f"{alias.address} -> {', '.join(alias.targets)}" for alias in aliases))
    return 0


def _cmd_alias_remove(args: argparse.Namespace) -> int:
    alias = _address(args.alias)
    targets = [_address(target) for target in args.targets]
    with _open_stores(args) as stores:
        stores.metadata.remove_alias(alias, targets)
    _out(f"removed {', '.join(targets) + ' from ' if targets else ''}alias {alias}")
    return 0


# --- outcomes ---------------------------------------------------------------------------------

_RELATIVE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNIT = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """`2h`, `3d`, `1w` back from now, or an ISO date/time (UTC unless it has an offset)."""
    now = now or datetime.now(UTC)
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), _UNIT[relative.group(2).lower()]
        return now - timedelta(**{unit: amount})
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise CommandError(
            f"--since {text!r} is not a time; write e.g. 30m, 2h, 3d, 1w, 2024-05-01 or "
            "2024-05-01T09:30 (UTC) or 2024-05-01T18:30+09:00"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def outcome_json(outcome_id: int, outcome: Outcome) -> dict[str, Any]:
    """One outcome as the help desk's scripts read it (`tayori outcomes --json`)."""
    return {
        "id": outcome_id,
        "time": _iso(outcome.time),
        "direction": str(outcome.direction),
        "sender": outcome.sender,
        "recipient": outcome.recipient,
        "message_id": outcome.message_id,
        "subject": outcome.subject,
        "outcome": str(outcome.outcome),
        "reason": outcome.reason,
        "reply": outcome.reply,
        "size": outcome.size,
        "remote_ip": outcome.remote_ip,
        "remote_host": outcome.remote_host,
        "detail": outcome.detail,
    }


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _cmd_outcomes(args: argparse.Namespace) -> int:
    since = parse_since(args.since) if args.since else None
    if args.limit < 1:
        raise CommandError("--limit must be at least 1")
    with _open_stores(args) as stores:
        account_id = None
        if args.account:
            account_id = _existing(stores, _address(args.account)).id
        found = stores.metadata.list_outcomes(account_id=account_id, since=since, limit=args.limit)
    if args.json:
        for stored in found:
            _out(json.dumps(outcome_json(stored.id, stored.outcome), ensure_ascii=False))
        return 0
    if not found:
        _out("no outcomes" + (" in that time" if since else ""))
        return 0
    rows = [
        [
            _iso(o.time).replace("T", " ").removesuffix("Z")[:19],
            str(o.direction),
            str(o.outcome),
            o.reason,
            _clip(o.sender or "<>", 32),
            _clip(o.recipient, 32),
            _clip(o.subject, 40),
        ]
        for o in (stored.outcome for stored in found)
    ]
    header = ["TIME (UTC)", "DIR", "OUTCOME", "REASON", "SENDER", "RECIPIENT", "SUBJECT"]
    _out(*_table(header, rows))
    return 0


# --- outbound queue ---------------------------------------------------------------------------


def _span(seconds: float) -> str:
    """A duration as an admin reads it at a glance: 45s, 12m, 3h05m, 2d04h."""
    whole = max(int(seconds), 0)
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02}h"


def _utc(moment: datetime) -> str:
    return _iso(moment).replace("T", " ").removesuffix("Z")[:19] + " UTC"


def _when(moment: datetime, now: datetime) -> str:
    """An absolute UTC time with how far away it is, e.g. `2025-05-01 10:00:00 UTC (in 25m)`."""
    delta = (moment - now).total_seconds()
    relative = f"in {_span(delta)}" if delta > 0 else f"{_span(-delta)} ago"
    return f"{_utc(moment)} ({relative})"


def _next_try(recipient: QueuedRecipient, now: datetime) -> str:
    if recipient.state != "queued":
        return "-"
    if recipient.bounce_requested:
        return "bounce requested"
    if recipient.next_attempt <= now:
        return "now"
    return _iso(recipient.next_attempt).replace("T", " ").removesuffix("Z")[:16]


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _queued(stores: Stores, queue_id: str) -> QueueEntry:
    entry = stores.queue.get_queue_entry(queue_id)
    if entry is None:
        raise NotFoundError(
            f"there is no queued message {queue_id} (delivered, bounced or deleted meanwhile?); "
            "see `tayori queue list`"
        )
    return entry


def _cmd_queue_list(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        entries = stores.queue.list_queue(deferred_only=args.deferred)
    if not entries:
        _out("no deferred messages" if args.deferred else "the queue is empty")
        return 0
    now = datetime.now(UTC)
    rows: list[list[str]] = []
    for entry in entries:
        first = [
            entry.queue_id,
            _span((now - entry.created).total_seconds()),
            format_size(entry.size),
            _clip(entry.sender or "<>", 32),
        ]
        for index, r in enumerate(entry.recipients):
            rows.append(
                [
                    *(first if index == 0 else [""] * len(first)),
                    _clip(r.recipient, 32),
                    str(r.state),
                    str(r.attempts),
                    _next_try(r, now),
                    _clip(_one_line(r.last_reply), 60),
                ]
            )
    header = ["QUEUE ID", "AGE", "SIZE", "SENDER", "RECIPIENT", "STATE", "TRIES"]
    _out(*_table([*header, "NEXT TRY (UTC)", "LAST REPLY"], rows))
    waiting = sum(r.state == "queued" for entry in entries for r in entry.recipients)
    _out("", f"{len(entries)} message(s), {waiting} recipient(s) waiting")
    return 0


def _cmd_queue_show(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        entry = _queued(stores, args.queue_id)
        account = (
            stores.metadata.get_account_by_id(entry.account_id)
            if entry.account_id is not None
            else None
        )
    now = datetime.now(UTC)
    member = ""
    if entry.account_id is not None:
        member = f" (member {account.address})" if account else " (member account removed)"
    _out(
        f"Queue ID:      {entry.queue_id}",
        f"Sender:        {entry.sender or '<> (a delivery report: never bounced)'}{member}",
        f"Message-ID:    {entry.message_id or '-'}",
        f"Subject:       {_one_line(entry.subject) or '-'}",
        f"Size:          {format_size(entry.size)}",
        f"Queued:        {_when(entry.created, now)}",
        f"Expires:       {_when(entry.expires, now)}",
        f"Delay notice:  {'sent' if entry.delay_warned else 'not sent'}",
        f"Stored as:     {entry.blob_ref}",
        "Recipients:",
    )
    for r in entry.recipients:
        if r.state != "queued":
            state = str(r.state)
        elif r.bounce_requested:
            state = "queued; bounce requested: the queue worker bounces it at its next run"
        else:
            state = f"queued; next attempt {_when(r.next_attempt, now)}"
        last = _when(r.last_attempt, now) if r.last_attempt else "never"
        reply = r.last_reply.splitlines() or ["-"]
        _out(
            f"  {r.recipient}",
            f"    state:         {state}",
            f"    attempts:      {r.attempts} (last: {last})",
            f"    remote MTA:    {r.remote_mta or '-'}",
            f"    last reply:    {reply[0]}",
            *(f"                   {line}" for line in reply[1:]),
        )
    return 0


def _cmd_queue_retry(args: argparse.Namespace) -> int:
    queue_id = None if args.all else args.queue_id
    with _open_stores(args) as stores:
        count = stores.queue.retry_now(queue_id, datetime.now(UTC))
    what = "in the queue" if queue_id is None else f"of {queue_id}"
    if not count:
        _out(f"nothing is waiting {what}")
        return 0
    _out(f"{count} recipient(s) {what} will be tried at the queue worker's next run")
    return 0


def _cmd_queue_delete(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        entry = _queued(stores, args.queue_id)
        waiting = sum(r.state == "queued" for r in entry.recipients)
        sender = entry.sender or "<>"
        if not args.yes:
            if not _is_tty():
                raise CommandError(
                    f"not deleting {entry.queue_id} without confirmation; add --yes to delete "
                    "it without telling the sender"
                )
            answer = input(
                f"Delete {entry.queue_id} from {sender} to {waiting} waiting recipient(s), "
                "without telling the sender? [y/N] "
            )
            if answer.strip().lower() not in ("y", "yes"):
                _out("nothing was deleted")
                return EXIT_FAILED
        # Each recipient still waiting ends in an outcome, like every other message.
        outcomes = [
            Outcome(
                direction=Direction.OUTBOUND,
                sender=entry.sender,
                recipient=r.recipient,
                outcome=OutcomeKind.DISCARDED,
                reason="queue.deleted",
                detail=f"tayori queue delete {entry.queue_id}; last reply: {r.last_reply}",
                account_id=entry.account_id,
                message_id=entry.message_id,
                subject=entry.subject,
                size=entry.size,
            )
            for r in entry.recipients
            if r.state == "queued"
        ]
        refs = stores.queue.delete_queued(entry.queue_id, outcomes=outcomes)
        # After the commit: a crash here leaves unreferenced bytes, never a queued message
        # without them.
        stores.blobs.delete(refs)
    _out(f"deleted {entry.queue_id}; {sender} gets no report about it")
    return 0


def _cmd_queue_bounce(args: argparse.Namespace) -> int:
    with _open_stores(args) as stores:
        entry = _queued(stores, args.queue_id)
        count = stores.queue.request_bounce(entry.queue_id, datetime.now(UTC))
    report = (
        f"a delivery report goes to {entry.sender}"
        if entry.sender
        else "no report: the sender is empty (the message is a report itself)"
    )
    _out(
        f"{count} recipient(s) of {entry.queue_id} will be bounced by the running queue "
        f"worker at its next run; {report}"
    )
    return 0


# --- the message store ------------------------------------------------------------------------


def _cmd_store_sweep(args: argparse.Namespace) -> int:
    from tayori.storage.sweep import sweep_store  # the database layer: only when used

    settings = _settings(args)
    with _open_stores(args) as stores:
        report = sweep_store(
            settings.storage.url, stores.blobs, datetime.now(UTC), dry_run=args.dry_run
        )
    _out(*report.lines())
    return 0


# --- DKIM keys --------------------------------------------------------------------------------

DKIM_KEY_BITS = 2048
_TXT_CHUNK = 255  # the most one character-string of a TXT record holds (RFC 1035 3.3)


def _dkim_record(domain: str, selector: str, private_key_pem: str) -> list[str]:
    """The TXT record to publish, as a web DNS form wants it (name, value) and as a zone file
    line, whose strings may hold 255 characters each."""
    import base64

    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        PublicFormat,
        load_pem_private_key,
    )

    key = load_pem_private_key(private_key_pem.encode(), password=None)
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    value = f"v=DKIM1; k=rsa; p={base64.b64encode(public).decode()}"
    name = f"{selector}._domainkey.{domain}"
    quoted = [f'"{value[i : i + _TXT_CHUNK]}"' for i in range(0, len(value), _TXT_CHUNK)]
    zone = [f"{name}. IN TXT ( {quoted[0]}", *(f"    {string}" for string in quoted[1:])]
    zone[-1] += " )"
    return [
        f"  name   {name}",
        "  type   TXT",
        f"  value  {value}",
        "",
        "Zone file form:",
        "",
        *zone,
    ]


def _cmd_dkim_generate(args: argparse.Namespace) -> int:
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import (
        Encoding,
        NoEncryption,
        PrivateFormat,
    )

    from tayori.storage.sql_queue import check_selector

    domain = _domain(args.domain)
    selector = check_selector(args.selector or f"tayori{datetime.now(UTC):%Y%m}")
    with _open_stores(args) as stores:
        # Checked first, so no key is made (a second or so) for nothing; the store checks
        # again inside its transaction.
        if domain not in {d.name for d in stores.metadata.list_domains()}:
            raise NotFoundError(
                f"domain {domain} is not hosted here; add it with `tayori domain add {domain}`"
            )
        key = rsa.generate_private_key(public_exponent=65537, key_size=DKIM_KEY_BITS)
        # PKCS#1 ("RSA PRIVATE KEY"): the form every DKIM library reads.
        pem = key.private_bytes(
            Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption()
        ).decode()
        stored = stores.queue.add_dkim_key(domain, selector, pem)
    _out(
        f"Created DKIM key {stored.selector} for {domain} (RSA {DKIM_KEY_BITS}). Mail from "
        f"{domain} is signed with it from now on (each node within a minute): publish this "
        "DNS record now, as receivers cannot check the signatures until they find it.",
        "",
        *_dkim_record(domain, stored.selector, stored.private_key_pem),
    )
    return 0


def _cmd_dkim_show(args: argparse.Namespace) -> int:
    domain = _domain(args.domain)
    with _open_stores(args) as stores:
        key = stores.queue.get_dkim_key(domain)
    if key is None:
        raise NotFoundError(
            f"{domain} has no DKIM key; create one with `tayori dkim generate {domain}`"
        )
    _out(
        f"DKIM key {key.selector} for {domain}, created {_utc(key.created)}. Its DNS record:",
        "",
        *_dkim_record(domain, key.selector, key.private_key_pem),
    )
    return 0


# --- messages ---------------------------------------------------------------------------------


def _cmd_message_inspect(args: argparse.Namespace) -> int:
    # Imported here so the other commands do not load the MIME layer. Needs no config or
    # database: it reads the file it is given.
    from tayori.mime import inspect_report, parse_message, render_text

    path = Path(args.file)
    if path.is_dir():
        raise CommandError(f"{args.file} is a directory; give the path of one message file")
    report = inspect_report(parse_message(path.read_bytes()))
    if args.json:
        _out(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _out(render_text(report))
    return 0


# --- the parser -------------------------------------------------------------------------------


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tayori",
        description="Tayori mail service: set up, serve and administer.",
        epilog=f"The config file is --config FILE, else ${CONFIG_ENV}, else ./{CONFIG_NAME}.",
    )
    parser.add_argument("--version", action="version", version=f"tayori {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: see below)")
    # The same option after the subcommand; SUPPRESS keeps it from undoing one given before.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS, help="config file")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(group: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
        sub: argparse.ArgumentParser = group.add_parser(
            name, parents=[common], help=help_text, description=help_text
        )
        sub.set_defaults(handler=handler)
        return sub

    def group(name: str, help_text: str) -> Any:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        return sub.add_subparsers(dest=f"{name}_command", metavar="COMMAND", required=True)

    init = commands.add_parser("init", help="create an instance: config, database, TLS certificate")
    init.set_defaults(handler=_cmd_init)
    init.add_argument("--data-dir", default=".", metavar="DIR", help="default: this directory")
    init.add_argument("--domain", metavar="DOMAIN", help="first mail domain to host")
    init.add_argument("--hostname", metavar="NAME", help="server name (default: this machine's)")
    init.add_argument(
        "--demo",
        action="store_true",
        help=f"also create members {' and '.join(DEMO_MEMBERS)} (domain {DEMO_DOMAIN} "
        "unless --domain) with random passwords, printed once",
    )

    command(commands, "serve", _cmd_serve, "run every enabled listener until SIGTERM/SIGINT")
    command(commands, "migrate", _cmd_migrate, "bring the database schema up to date")
    config = group("config", "check the configuration")
    command(config, "check", _cmd_config_check, "validate the config file, listing every problem")

    docs = commands.add_parser("docs", help="write or check the generated docs")
    docs.set_defaults(handler=_cmd_docs)
    which = docs.add_mutually_exclusive_group(required=True)
    which.add_argument("--write", metavar="DIR", help="write config.md and reason-codes.md")
    which.add_argument("--check", metavar="DIR", help="exit 1 if they are missing or stale")

    domain = group("domain", "hosted mail domains")
    command(domain, "add", _cmd_domain_add, "host a domain").add_argument("domain")
    command(domain, "list", _cmd_domain_list, "list hosted domains")
    command(
        domain, "remove", _cmd_domain_remove, "stop hosting a domain (when unused)"
    ).add_argument("domain")

    user = group("user", "member accounts")
    add = command(user, "add", _cmd_user_add, "create an account with its mailboxes")
    add.add_argument("address")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--quota", default="0", metavar="SIZE", help="e.g. 1GB; 0 = unlimited")
    passwd = command(user, "passwd", _cmd_user_passwd, "set an account's password")
    passwd.add_argument("address")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    command(
        user,
        "two-step-off",
        _cmd_user_two_step_off,
        "turn a member's two-step login (TOTP) off, e.g. after a lost phone",
    ).add_argument("address")
    quota = command(user, "quota", _cmd_user_quota, "set an account's quota")
    quota.add_argument("address")
    quota.add_argument("size", help="e.g. 500MB, 2GB; 0 or unlimited for no limit")
    listing = command(user, "list", _cmd_user_list, "list accounts with usage and quota")
    listing.add_argument("--domain", metavar="DOMAIN")
    remove = command(user, "remove", _cmd_user_remove, "delete an account and all its mail")
    remove.add_argument("address")
    remove.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    alias = group("alias", "addresses that deliver to one or more accounts")
    alias_add = command(alias, "add", _cmd_alias_add, "create an alias or add targets to it")
    alias_add.add_argument("alias")
    alias_add.add_argument("targets", nargs="+", metavar="TARGET")
    command(alias, "list", _cmd_alias_list, "list aliases").add_argument(
        "--domain", metavar="DOMAIN"
    )
    alias_remove = command(
        alias, "remove", _cmd_alias_remove, "remove targets, or the whole alias without any"
    )
    alias_remove.add_argument("alias")
    alias_remove.add_argument("targets", nargs="*", metavar="TARGET")

    outcomes = command(
        commands, "outcomes", _cmd_outcomes, "what happened to messages, newest first"
    )
    outcomes.add_argument("--account", metavar="ADDRESS", help="only this member's outcomes")
    outcomes.add_argument("--since", metavar="T", help="e.g. 2h, 3d, 2024-05-01 (UTC)")
    outcomes.add_argument("--limit", type=int, default=100, metavar="N", help="default 100")
    outcomes.add_argument("--json", action="store_true", help="one JSON object per line")

    queue = group("queue", "the outbound queue: mail waiting for other providers' servers")
    command(queue, "list", _cmd_queue_list, "queued messages and their recipients").add_argument(
        "--deferred", action="store_true", help="only those that failed at least once"
    )
    command(queue, "show", _cmd_queue_show, "everything about one queued message").add_argument(
        "queue_id", metavar="ID"
    )
    retry = command(queue, "retry", _cmd_queue_retry, "try again at the next run, not later")
    which_queued = retry.add_mutually_exclusive_group(required=True)
    which_queued.add_argument("queue_id", nargs="?", metavar="ID")
    which_queued.add_argument("--all", action="store_true", help="every queued message")
    queue_delete = command(
        queue, "delete", _cmd_queue_delete, "drop a queued message without telling the sender"
    )
    queue_delete.add_argument("queue_id", metavar="ID")
    queue_delete.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    command(
        queue, "bounce", _cmd_queue_bounce, "give up on a message: bounced at the next run"
    ).add_argument("queue_id", metavar="ID")

    store = group("store", "the message store")
    command(
        store,
        "sweep",
        _cmd_store_sweep,
        "delete message bytes nothing refers to any more (left by a crash), older than 1 day, "
        "and temporary files older than 1 hour; safe while serving",
    ).add_argument("--dry-run", action="store_true", help="count them, delete nothing")

    dkim = group("dkim", "DKIM signing keys of hosted domains")
    generate = command(
        dkim, "generate", _cmd_dkim_generate, "make a new signing key and print its DNS record"
    )
    generate.add_argument("domain")
    generate.add_argument("--selector", metavar="S", help="default: tayori + YYYYMM")
    command(dkim, "show", _cmd_dkim_show, "print the DNS record of the active key").add_argument(
        "domain"
    )

    message = group("message", "look inside message files")
    inspect = command(
        message,
        "inspect",
        _cmd_message_inspect,
        "show what Tayori makes of a message file: headers, MIME tree, text, attachments, defects",
    )
    inspect.add_argument("file", metavar="FILE", help="a raw message (.eml), as received")
    inspect.add_argument("--json", action="store_true", help="one JSON object")

    from tayori.rules.cli import register as register_rules  # rules, forward, spam-settings

    register_rules(commands, command, group)

    from tayori.spam.cli import register as register_spam  # spam train, spam score

    register_spam(commands, command, group)

    from tayori.delivery.reindex import register as register_mailbox  # mailbox reindex

    register_mailbox(commands, command, group)

    from tayori.diagnostics.cli import register as register_diagnostics  # doctor, trace, history

    register_diagnostics(commands, command, group)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of `tayori`; returns the exit status instead of exiting (testable)."""
    parser = _build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:  # --help, --version and usage errors
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    handler: Handler = args.handler
    try:
        return handler(args)
    except ConfigError as error:
        _err(str(error))
        return EXIT_USAGE
    except (TayoriError, AddressError) as error:
        _err(str(error))
        return EXIT_FAILED
    except OSError as error:
        where = f": {error.filename}" if error.filename else ""
        _err(f"{error.strerror or error}{where}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(file=sys.stderr)
        _err("interrupted")
        return 130
