"""`tayori spam train` and `tayori spam score`, registered into `tayori.cli`'s parser.

Everything heavy (MIME layer, SQLAlchemy, rich) is imported inside the handlers: every
`tayori` command builds the whole parser, and must not pay for the spam filter.

Kept here rather than in `tayori.cli` so the spam filter's command-line surface changes with
the filter. They read the config like every command (hence the import of `tayori.config`,
the one thing here above the spam layer) and talk to the same database as the servers.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tayori.core.errors import NotFoundError, TayoriError

if TYPE_CHECKING:
    from tayori.spam.engine import SpamEngine

__all__ = ["BATCH", "SENSITIVITIES", "cmd_score", "cmd_train", "register"]

SENSITIVITIES = ("low", "standard", "high")

BATCH = 200
"""Messages learnt per transaction: big enough to amortise the upserts, small enough that
an interrupted run keeps most of its work and other writers are not held up for long."""


@contextmanager
def _engine(args: argparse.Namespace) -> Iterator[tuple[SpamEngine, int | None]]:
    """The engine on the configured database, and the id of `--account` (None: global)."""
    from tayori.config.loader import config_path, load_settings
    from tayori.spam.engine import SpamEngine
    from tayori.spam.store import SqlTokenStore
    from tayori.storage.engine import create_store_engine, dispose_engine
    from tayori.storage.factory import open_stores, storage_url

    settings = load_settings(config_path(args.config))
    url, data_dir = settings.storage.url, settings.server.data_dir
    stores = open_stores(url, data_dir)  # refuses a database not at the latest schema
    engine = create_store_engine(storage_url(url, data_dir))
    try:
        account_id = None
        if getattr(args, "account", None):
            address = _canonical(args.account)
            account = stores.metadata.get_account(address)
            if account is None:
                raise NotFoundError(f"no account {address}; see `tayori user list`")
            account_id = account.id
        yield SpamEngine(SqlTokenStore(engine)), account_id
    finally:
        dispose_engine(engine)
        stores.close()


def register(commands: Any, command: Callable[..., argparse.ArgumentParser], group: Any) -> None:
    """Add `tayori spam …` to the parser, with `tayori.cli`'s own helpers for subcommands."""
    del commands  # the `spam` group is made by `group`
    spam = group("spam", "the spam filter: teach it, and ask it about a message")
    train = command(
        spam, "train", cmd_train, "learn spam and good mail from directories or mbox files"
    )
    train.add_argument(
        "--spam", action="append", default=[], metavar="DIR|MBOX", help="spam to learn"
    )
    train.add_argument(
        "--ham", action="append", default=[], metavar="DIR|MBOX", help="good mail to learn"
    )
    train.add_argument(
        "--account", metavar="ADDRESS", help="teach this member's filter only (default: all)"
    )
    score = command(spam, "score", cmd_score, "print a message's spam score and the reasons")
    score.add_argument("file", metavar="FILE", help="a raw message (.eml), as received")
    score.add_argument("--account", metavar="ADDRESS", help="score as for this member")
    score.add_argument(
        "--sensitivity",
        choices=SENSITIVITIES,  # the values of Sensitivity (a test checks)
        default="standard",
        help="the member setting to judge with (default: standard)",
    )


def _sources(args: argparse.Namespace) -> list[tuple[Path, bool]]:
    sources = [(Path(p), True) for p in args.spam] + [(Path(p), False) for p in args.ham]
    if not sources:
        raise TayoriError("nothing to learn: give --spam DIR|MBOX and/or --ham DIR|MBOX")
    for path, _ in sources:
        if not path.exists():
            raise TayoriError(f"{path} does not exist; give a directory of messages or an mbox")
    return sources


STALE_WARNING_SHARE = 0.2
"""Above this share of learnt messages made by another tokenizer version, say "retrain"."""


def _warn_if_stale(engine: SpamEngine, account_id: int | None) -> None:
    """After an upgrade that changed the tokenizer, old counts score worse; an admin who
    trains or scores should hear it then, not from members' complaints."""
    share = engine.stale_training(account_id)
    if share > STALE_WARNING_SHARE:
        print(
            f"warning: {share:.0%} of the learnt messages were learnt by an older tokenizer; "
            "retrain with `tayori spam train` on your corpus for full accuracy",
            file=sys.stderr,
        )


def cmd_train(args: argparse.Namespace) -> int:
    """Learn every message of the given directories and mbox files, with a progress bar."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from tayori.spam.evaluate import load_messages

    messages: list[tuple[bytes, bool]] = []
    for path, is_spam in _sources(args):
        messages.extend((raw, is_spam) for raw in load_messages(path))
    changed = 0
    with _engine(args) as (engine, account_id):
        progress = Progress(
            TextColumn("learning"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
        )
        with progress:
            task = progress.add_task("learning", total=len(messages))
            for start in range(0, len(messages), BATCH):
                batch = messages[start : start + BATCH]
                changed += engine.learn_many(batch, account_id)
                progress.advance(task, len(batch))
        _warn_if_stale(engine, account_id)
    spam = sum(is_spam for _, is_spam in messages)
    scope = f"for {_canonical(args.account)}" if args.account else "for everyone"
    print(
        f"learnt {changed} of {len(messages)} messages ({spam} spam, {len(messages) - spam} "
        f"ham) {scope}; {len(messages) - changed} were already learnt as that",
        file=sys.stdout,
    )
    return 0


def cmd_score(args: argparse.Namespace) -> int:
    """Print a message's score, the verdict at the chosen sensitivity, and why."""
    from tayori.spam.engine import Sensitivity

    path = Path(args.file)
    if path.is_dir():
        raise TayoriError(f"{args.file} is a directory; give the path of one message file")
    raw = path.read_bytes()
    sensitivity = Sensitivity(args.sensitivity)
    with _engine(args) as (engine, account_id):
        result = engine.score(raw, account_id, sensitivity=sensitivity)
        threshold = engine.threshold(sensitivity)
        _warn_if_stale(engine, account_id)
    verdict = "spam (Junk)" if result.is_spam else "not spam (INBOX)"
    lines = [
        f"score      {result.score:.4f}",
        f"verdict    {verdict} at sensitivity {sensitivity.value} (threshold {threshold})",
    ]
    lines += _reasons(result.top_reasons)
    print("\n".join(lines), file=sys.stdout)
    return 0


def _canonical(address: str) -> str:
    from tayori.core.address import parse_address

    return parse_address(address).canonical


def _reasons(reasons: Sequence[str]) -> list[str]:
    if not reasons:
        return ["reasons    none (nothing in the message points to spam)"]
    return ["reasons    " + reasons[0], *("           " + reason for reason in reasons[1:])]
