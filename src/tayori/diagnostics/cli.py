"""`tayori doctor`, `tayori trace` and `tayori history`: the help desk's and admins' view.

Registered by `tayori.cli` (`register`), like the rules commands; errors are raised as
TayoriError and reported by its `main`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tayori.core.errors import NotFoundError, TayoriError
from tayori.diagnostics.findings import PROBLEM_TITLES, Finding, Problem, iso

if TYPE_CHECKING:
    from tayori.config.settings import Settings
    from tayori.storage.factory import Stores
    from tayori.storage.records import Account, StoredOutcome

T = TypeVar("T")
Handler = Callable[[argparse.Namespace], int]
Command = Callable[[Any, str, Handler, str], argparse.ArgumentParser]
Group = Callable[[str, str], Any]

_NOTHING = {
    "ja": "問題は見つかりませんでした。",
    "en": "No problem found.",
}
_HEADINGS = {
    "ja": ("{address} の診断結果(可能性の高い順):", "対処", "リンク", "根拠"),
    "en": ("Findings for {address}, most likely first:", "What to do", "Link", "Evidence"),
}


class DiagnosticsError(TayoriError):
    """A diagnostics command refused its input; the text says what to do instead."""


def _out(*lines: str) -> None:
    for line in lines:
        print(line, file=sys.stdout)


@contextmanager
def _open(args: argparse.Namespace) -> Iterator[tuple[Settings, Stores]]:
    # Imported here so `tayori --help` does not load the database drivers.
    from tayori.config.loader import config_path, load_settings
    from tayori.storage.factory import open_stores

    settings = load_settings(config_path(args.config))
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        yield settings, stores
    finally:
        stores.close()


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    """`asyncio.run`, also when the caller already runs an event loop (a test process with
    a browser driver, an embedding tool): then on a thread of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


def _since(text: str | None) -> Any:
    if not text:
        return None
    from tayori.cli import parse_since

    return parse_since(text)


def _member(stores: Stores, address: str) -> Account:
    from tayori.core.address import parse_address

    account = stores.metadata.get_account(parse_address(address).canonical)
    if account is None:
        raise NotFoundError(f"there is no account {address}; see `tayori user list`")
    return account


# --- doctor -------------------------------------------------------------------------------------


def render_findings(findings: list[Finding], address: str, lang: str) -> list[str]:
    if not findings:
        return [_NOTHING[lang]]
    title, action, link, evidence = _HEADINGS[lang]
    lines = [title.format(address=address)]
    for number, finding in enumerate(findings, 1):
        lines.append(f"{number}. [{finding.reason}] {finding.summary(lang)}")
        lines.append(f"   {action}: {finding.action(lang)}")
        if finding.link:
            lines.append(f"   {link}: {finding.link}")
        for item in finding.evidence:
            lines.append(f"   {evidence}: {item.render()}")
    return lines


def _cmd_doctor(args: argparse.Namespace) -> int:
    from tayori.diagnostics.doctor import Doctor, DoctorQuery
    from tayori.dns.resolver import DnsPythonResolver

    problems = frozenset([Problem(args.problem)] if args.problem else Problem)
    with _open(args) as (settings, stores):
        account = _member(stores, args.address)
        doctor = Doctor(
            stores.metadata,
            stores.blobs,
            stores.rules,
            DnsPythonResolver(settings.dns),
            settings.doctor,
            settings.submission.dnsbl,
        )
        query = DoctorQuery(
            problems=problems,
            sender=args.sender or "",
            subject=args.subject or "",
            since=_since(args.since),
            client_ip=args.ip or "",
        )
        findings = _run(doctor.examine(account, query))
    if args.json:
        _out(json.dumps([f.to_json(args.lang) for f in findings], ensure_ascii=False, indent=2))
    else:
        _out(*render_findings(findings, account.address, args.lang))
    return 0


# --- trace ----------------------------------------------------------------------------------------


def trace_json(stored: StoredOutcome) -> dict[str, Any]:
    from tayori.cli import outcome_json

    return outcome_json(stored.id, stored.outcome) | {"account_id": stored.outcome.account_id}


def _cmd_trace(args: argparse.Namespace) -> int:
    if args.from_ is not None or args.to is not None:
        return _what_would_happen(args)
    from tayori.diagnostics.trace import TraceQuery, search

    if not any((args.message_id, args.sender, args.recipient, args.ip, args.since)):
        raise DiagnosticsError(
            "say what to trace: --message-id, --sender, --recipient, --ip or --since "
            "(or --from and --to for what would happen to a message)"
        )
    query = TraceQuery(
        message_id=args.message_id or "",
        sender=args.sender or "",
        recipient=args.recipient or "",
        ip=args.ip or "",
        since=_since(args.since),
        until=_since(args.until),
        limit=args.limit,
    )
    with _open(args) as (_, stores):
        found = search(stores.metadata, query)
    if args.json:
        for stored in found:
            _out(json.dumps(trace_json(stored), ensure_ascii=False))
        return 0
    if not found:
        _out("no outcomes match")
        return 0
    for stored in found:
        o = stored.outcome
        _out(
            f"{iso(o.time)} {o.direction} {o.outcome} {o.reason} "
            f"{o.sender or '<>'} -> {o.recipient} (account {o.account_id or '-'})",
            f"    message-id: {o.message_id or '-'}  subject: {o.subject or '-'}  size: {o.size}",
            f"    client: {o.remote_host or '-'} [{o.remote_ip or '-'}]",
        )
        if o.reply:
            _out(f"    reply: {o.reply}")
        if o.detail:
            _out(f"    detail: {o.detail}")
    return 0


def _what_would_happen(args: argparse.Namespace) -> int:
    from tayori.app import inbound_pipeline
    from tayori.diagnostics.trace import what_would_happen
    from tayori.dns.resolver import DnsPythonResolver

    if args.from_ is None or args.to is None:
        raise DiagnosticsError("give both --from SENDER (use '' for <>) and --to RECIPIENT")
    message = Path(args.file).read_bytes() if args.file else None
    with _open(args) as (settings, stores):
        pipeline, member_rules = inbound_pipeline(settings, stores, DnsPythonResolver(settings.dns))
        report = _run(
            what_would_happen(
                pipeline,
                member_rules,
                stores.metadata,
                stores.rules,
                settings.limits,
                sender=args.from_,
                recipient=args.to,
                ip=args.ip or "127.0.0.1",
                helo=args.helo or "",
                message=message,
            )
        )
    if args.json:
        _out(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
        return 0
    _out("nothing is stored or delivered; each step as the MX would run it:")
    for step in report.steps:
        line = f"  {step.stage:<8} {step.name:<40} {step.action}"
        if step.reason:
            line += f" {step.reason}"
        if step.score:
            line += f" (score {step.score:+.2f})"
        _out(line)
        if step.reply:
            _out(f"           reply: {step.reply}")
        if step.detail:
            _out(f"           detail: {step.detail}")
    _out("result:")
    for result in report.results:
        who = result["account"] or result["recipient"]
        extra = ""
        if "forward_to" in result:
            extra = f", forwarded to {result['forward_to']} (copy kept: {result['keep_copy']})"
        _out(f"  {who}: {result['result']} ({result['reason']}) {result['reply']}{extra}")
    return 0


# --- history --------------------------------------------------------------------------------------


def _cmd_history_show(args: argparse.Namespace) -> int:
    from tayori.diagnostics.history import HistoryFilter, member_history

    filters = HistoryFilter(
        direction=args.direction or "",
        party=args.party or "",
        subject=args.subject or "",
        since=_since(args.since),
        until=_since(args.until),
        outcome=args.outcome or "",
    )
    with _open(args) as (_, stores):
        account = _member(stores, args.address)
        rows = member_history(stores.metadata, account, filters, lang=args.lang, limit=args.limit)
    if args.json:
        for row in rows:
            _out(
                json.dumps(
                    {
                        "id": row.id,
                        "time": iso(row.time),
                        "direction": row.direction,
                        "sender": row.sender,
                        "recipient": row.recipient,
                        "subject": row.subject,
                        "outcome": row.outcome,
                        "reason": row.reason,
                        "summary": row.summary,
                        "action": row.action,
                        "link": row.link,
                    },
                    ensure_ascii=False,
                )
            )
        return 0
    if not rows:
        _out("no history" if args.lang == "en" else "履歴はありません。")
        return 0
    for row in rows:
        _out(
            f"{iso(row.time)} {row.direction} {row.sender or '<>'} -> {row.recipient} "
            f"[{row.reason}] {row.subject}",
            f"    {row.summary} {row.action}" + (f" ({row.link})" if row.link else ""),
        )
    return 0


def _cmd_history_purge(args: argparse.Namespace) -> int:
    from tayori.core.outcome import utcnow
    from tayori.diagnostics.history import purge_history

    with _open(args) as (settings, stores):
        days = settings.history.retention_days if args.older_than is None else args.older_than
        if days <= 0:
            _out("history.retention_days is 0: outcomes are kept for ever; nothing purged")
            return 0
        purged = purge_history(stores.metadata, utcnow(), days)
    _out(f"purged {purged} outcomes older than {days} days")
    return 0


# --- registration ---------------------------------------------------------------------------------


def register(commands: Any, command: Command, group: Group) -> None:
    doctor = command(
        commands,
        "doctor",
        _cmd_doctor,
        "why a member's mail does not arrive or get through: findings, most likely first",
    )
    doctor.add_argument("address", metavar="ADDRESS", help="the member's address")
    doctor.add_argument("--sender", metavar="S", help="mail from this address/domain is missing")
    doctor.add_argument("--subject", metavar="TEXT", help="mail with this subject is missing")
    doctor.add_argument("--since", metavar="T", help="period start: 2h, 3d, 2024-05-01 (30d)")
    doctor.add_argument("--lang", choices=("ja", "en"), default="ja", help="default ja")
    doctor.add_argument("--json", action="store_true", help="a JSON list of findings")
    doctor.add_argument(
        "--problem",
        choices=[str(p) for p in Problem],
        help="; ".join(f"{p}: {PROBLEM_TITLES[p].en}" for p in Problem) + " (default: all)",
    )
    doctor.add_argument(
        "--ip", metavar="IP", help="the member's current network (default: last seen at sending)"
    )

    trace = command(
        commands,
        "trace",
        _cmd_trace,
        "trace messages across accounts (private detail), or what would happen to one",
    )
    trace.add_argument("--message-id", metavar="ID")
    trace.add_argument("--sender", metavar="S", help="envelope sender, exactly")
    trace.add_argument("--recipient", metavar="R", help="recipient, exactly")
    trace.add_argument("--ip", metavar="IP", help="client address (with --from: the one to test)")
    trace.add_argument("--since", metavar="T", help="e.g. 2h, 3d, 2024-05-01 (UTC)")
    trace.add_argument("--until", metavar="T", help="end of the period (exclusive)")
    trace.add_argument("--limit", type=int, default=200, metavar="N", help="default 200")
    trace.add_argument("--json", action="store_true", help="JSON output")
    trace.add_argument(
        "--from", dest="from_", metavar="S", help="what would happen: envelope sender"
    )
    trace.add_argument("--to", metavar="R", help="what would happen: recipient")
    trace.add_argument("--helo", metavar="NAME", help="what would happen: HELO name")
    trace.add_argument("--file", metavar="MSG", help="what would happen: the message (.eml)")

    history = group("history", "members' delivery history: show it, purge old outcomes")
    show = command(history, "show", _cmd_history_show, "a member's history as they see it")
    show.add_argument("address", metavar="ADDRESS")
    show.add_argument("--direction", choices=("in", "out"))
    show.add_argument("--party", metavar="TEXT", help="part of the sender or recipient")
    show.add_argument("--subject", metavar="TEXT")
    show.add_argument("--since", metavar="T")
    show.add_argument("--until", metavar="T")
    show.add_argument("--outcome", metavar="X", help="an outcome (rejected) or reason code")
    show.add_argument("--lang", choices=("ja", "en"), default="ja")
    show.add_argument("--limit", type=int, default=100, metavar="N")
    show.add_argument("--json", action="store_true", help="one JSON object per line")
    purge = command(
        history, "purge", _cmd_history_purge, "delete outcomes older than the retention"
    )
    purge.add_argument(
        "--older-than",
        type=int,
        metavar="DAYS",
        help="default: history.retention_days from the config",
    )
