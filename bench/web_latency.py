#!/usr/bin/env python3
"""Webmail server-side latency on a 100,000-message mailbox (issue 6's benchmark).

Builds one member with N messages in the INBOX on SQLite (file blobs), every message a real
MIME message (ISO-2022-JP, Shift_JIS or UTF-8, some with attachments) indexed exactly as
delivery indexes it. The set-up takes a fast bulk path: blob files are written without the
per-message fsync and appends go 1,000 per transaction; what is measured is untouched by
that. Then it times, directly against the store functions the web app calls:

  list    first page of the INBOX, newest first (`query_messages`, 50 rows + total)
  folders the folder list with total/unread/bytes counts (`mailbox_statuses`)
  search  a Japanese two-character word over the INBOX, first page + total: a common
          one (about 5 % of messages), a rare one (about 0.1 %) and a very common one
          (about 75 %); and the common one in bodies across all folders
  open    one message by id with the ownership check, its blob read and parsed: headers,
          text, sanitised HTML, attachment list (`get_message` + `tayori.mime`)

and, with `--http`, the webmail's JSON API and HTML pages for the same over a loopback
socket (uvicorn in this process, logged in with a session cookie).
Targets (p95, SQLite): list < 50 ms, search < 200 ms, open < 50 ms.

    .venv/bin/python bench/web_latency.py [--messages 100000] [--runs 200] [--keep DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from _common import log, percentile

from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.delivery.indexing import message_index
from tayori.mime import parse_message
from tayori.mime.compose import encode_header_text
from tayori.storage.blobs import FileBlobStore
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import (
    MessageQuery,
    MessageSummary,
    NewMessage,
    SortKey,
    SpecialUse,
)

COMMON_WORD = "会議"
RARE_WORD = "稟議"
VERY_COMMON_WORD = "確認"
"""In two of the fixed sentences: about 75 % of the messages contain it."""
_SUBJECTS = [
    "週次の進捗報告",
    "見積書の送付について",
    "Re: 来週の予定",
    "お問い合わせありがとうございます",
    "Invoice for November",
    "Meeting notes",
    "【重要】パスワード変更のお願い",
    "出張の手配",
    "Re: 資料の確認",
    "新製品のご案内",
]
_SENTENCES = [
    "いつもお世話になっております。",
    "ご確認のほどよろしくお願いいたします。",
    "添付の資料をご覧ください。",
    "来週の打ち合わせの日程を調整させてください。",
    "先日はありがとうございました。",
    "詳細は別途ご連絡いたします。",
    "本件について社内で検討しております。",
    "お手数ですがご返信をお願いします。",
    "Please find the attached document.",
    "Let me know if you have any questions.",
    "The delivery is scheduled for next Tuesday.",
    "価格は税抜きで表示しています。",
    "在庫の状況を確認しました。",
    "担当者が不在のため、折り返しご連絡します。",
]
_NAMES = [
    "山田 太郎",
    "佐藤 花子",
    "鈴木 一郎",
    "Taro Yamada",
    "John Smith",
    "高橋 美咲",
    "田中 健",
]


def make_message(rng: random.Random, n: int) -> bytes:
    subject = rng.choice(_SUBJECTS)
    sentences = [rng.choice(_SENTENCES) for _ in range(rng.randint(4, 14))]
    roll = rng.random()
    if roll < 0.05:
        sentences.insert(rng.randrange(len(sentences) + 1), f"明日の{COMMON_WORD}について")
    elif roll < 0.051:
        sentences.insert(rng.randrange(len(sentences) + 1), f"{RARE_WORD}書を回覧します。")
    charset = rng.choice(["iso-2022-jp", "shift_jis", "utf-8", "utf-8"])
    body = "\r\n".join(sentences) + "\r\n"
    name = rng.choice(_NAMES)
    head_charset = "utf-8" if charset == "shift_jis" else charset
    head = (
        f"From: {encode_header_text(name, head_charset)} <user{n % 500}@example.jp>\r\n"
        f"To: member@example.test\r\nSubject: {encode_header_text(subject, head_charset)}\r\n"
        f"Message-ID: <bench-{n}@example.jp>\r\nMIME-Version: 1.0\r\n"
    ).encode()
    text = (
        f"Content-Type: text/plain; charset={charset}\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + body.encode(charset, "replace")
    if rng.random() < 0.2:
        return (
            head
            + b'Content-Type: multipart/mixed; boundary="bb"\r\n\r\n--bb\r\n'
            + text
            + b"\r\n--bb\r\nContent-Type: application/pdf\r\n"
            + b"Content-Disposition: attachment; filename*=UTF-8''%E8%A6%8B%E7%A9%8D.pdf\r\n"
            + b"Content-Transfer-Encoding: base64\r\n\r\n"
            + b"JVBERi0xLjQK" * 40
            + b"\r\n--bb--\r\n"
        )
    return head + text


def write_blob(root: Path, raw: bytes) -> str:
    """The file blob store's layout, without its per-file fsync (set-up only)."""
    ref = os.urandom(16).hex()
    directory = root / ref[:2] / ref[2:4]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / ref).write_bytes(raw)
    return ref


def build(stores: Stores, data_dir: Path, count: int, seed: int) -> int:
    stores.metadata.add_domain("example.test")
    account = stores.metadata.add_account("member@example.test", "x", 0)
    rng = random.Random(seed)
    start = datetime(2024, 1, 1, tzinfo=UTC)
    outcome = Outcome(
        direction=Direction.INBOUND,
        sender="s@example.jp",
        recipient=account.address,
        outcome=OutcomeKind.DELIVERED,
        reason="delivered",
        account_id=account.id,
    )
    batch: list[NewMessage] = []
    began = time.perf_counter()
    for n in range(count):
        raw = make_message(rng, n)
        if isinstance(stores.blobs, FileBlobStore):
            ref = write_blob(data_dir / "messages", raw)
        else:
            ref = stores.blobs.put([raw])
        batch.append(
            NewMessage(
                account_id=account.id,
                mailbox=SpecialUse.INBOX,
                blob_ref=ref,
                size=len(raw),
                internal_date=start + timedelta(minutes=n),
                summary=MessageSummary(subject="bench"),
                on_delivered=outcome,
                on_over_quota=outcome,
                flags=frozenset({"\\Seen"}) if rng.random() < 0.8 else frozenset(),
                enforce_quota=False,
                index=message_index(raw),
            )
        )
        if len(batch) == 1000:
            stores.metadata.append_messages(batch)
            batch = []
            if (n + 1) % 10_000 == 0:
                log(f"built {n + 1} messages in {time.perf_counter() - began:.0f} s")
    if batch:
        stores.metadata.append_messages(batch)
    return account.id


def timed(runs: int, call: Callable[[int], Any]) -> dict[str, float]:
    samples = []
    for i in range(runs):
        began = time.perf_counter()
        call(i)
        samples.append((time.perf_counter() - began) * 1000)
    return {
        "p50_ms": round(percentile(samples, 0.5) or 0, 2),
        "p95_ms": round(percentile(samples, 0.95) or 0, 2),
        "max_ms": round(max(samples), 2),
    }


def measure(stores: Stores, account_id: int, runs: int, seed: int) -> dict[str, Any]:
    meta = stores.metadata
    inbox = meta.get_mailbox(account_id, SpecialUse.INBOX).id
    first = meta.query_messages(account_id, inbox, limit=50)
    all_ids = [m.id for m in meta.list_messages(inbox)]
    rng = random.Random(seed)
    common = meta.query_messages(account_id, inbox, MessageQuery(text=COMMON_WORD))
    rare = meta.query_messages(account_id, inbox, MessageQuery(text=RARE_WORD))
    very = meta.query_messages(account_id, inbox, MessageQuery(text=VERY_COMMON_WORD))

    def open_message(_: int) -> None:
        message = meta.get_message(account_id, rng.choice(all_ids))
        assert message is not None
        with stores.blobs.open(message.blob_ref) as blob:
            parsed = parse_message(blob.read())
        _ = (parsed.subject, parsed.from_, parsed.to, parsed.date, parsed.text)
        _ = (parsed.html_sanitized(), [a.filename for a in parsed.attachments])

    results: dict[str, Any] = {
        "messages": first.total,
        "common_word_hits": common.total,
        "rare_word_hits": rare.total,
        "very_common_word_hits": very.total,
        "list_first_page": timed(runs, lambda _: meta.query_messages(account_id, inbox)),
        "list_unread_first_page": timed(
            runs,
            lambda _: meta.query_messages(account_id, inbox, MessageQuery(unread_only=True)),
        ),
        "list_by_subject": timed(
            runs, lambda _: meta.query_messages(account_id, inbox, sort=SortKey.SUBJECT)
        ),
        "folders": timed(runs, lambda _: meta.mailbox_statuses(account_id)),
        "search_common_word": timed(
            runs, lambda _: meta.query_messages(account_id, inbox, MessageQuery(text=COMMON_WORD))
        ),
        "search_rare_word": timed(
            runs, lambda _: meta.query_messages(account_id, inbox, MessageQuery(text=RARE_WORD))
        ),
        "search_very_common_word": timed(
            runs,
            lambda _: meta.query_messages(account_id, inbox, MessageQuery(text=VERY_COMMON_WORD)),
        ),
        "search_body_all_folders": timed(
            runs, lambda _: meta.query_messages(account_id, None, MessageQuery(body=COMMON_WORD))
        ),
        "open": timed(runs, open_message),
    }
    return results


class _LiveWeb:
    """The webmail on a loopback socket (uvicorn, as `tayori serve` runs it), in a thread."""

    def __init__(self, stores: Stores, data_dir: Path, storage: str) -> None:
        from tayori.auth.authenticator import Authenticator
        from tayori.auth.throttle import LoginThrottle
        from tayori.config.loader import settings_from_mapping
        from tayori.web import WebContext, create_app
        from tayori.web.server import WebServer

        settings = settings_from_mapping(
            {
                "server": {"hostname": "mx.example.test", "data_dir": str(data_dir)},
                "storage": {"url": storage},
                "auth": {"failure_delay": 0.0},
            }
        )
        authenticator = Authenticator(stores.metadata, LoginThrottle(settings.auth), settings.auth)
        context = WebContext(settings=settings, stores=stores, authenticator=authenticator)
        self.server = WebServer(context)
        self.server.app = create_app(context)
        self.loop = asyncio.new_event_loop()
        self.stop = asyncio.Event()
        started = threading.Event()

        async def run() -> None:
            await self.server.start("127.0.0.1", 0)
            started.set()
            await self.stop.wait()
            await self.server.stop()

        self.thread = threading.Thread(
            target=self.loop.run_until_complete, args=(run(),), daemon=True
        )
        self.thread.start()
        if not started.wait(30):
            raise RuntimeError("the web server did not start")
        self.url = f"http://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(30)
        self.loop.close()


def measure_http(
    stores: Stores, data_dir: Path, storage: str, account_id: int, runs: int
) -> dict[str, Any]:
    """Wall time of whole HTTP requests (loopback, one keep-alive connection), logged in
    with a session cookie as a browser is; JSON API and the HTML pages."""
    import re

    import httpx2 as httpx

    from tayori.auth.passwords import hash_password

    password = "bench password"
    account = stores.metadata.get_account_by_id(account_id)
    assert account is not None
    stores.metadata.set_password(account.address, hash_password(password))
    inbox = stores.metadata.get_mailbox(account_id, SpecialUse.INBOX).id
    ids = [m.id for m in stores.metadata.query_messages(account_id, inbox, limit=500).messages]
    live = _LiveWeb(stores, data_dir, storage)
    try:
        with httpx.Client(base_url=live.url, timeout=30) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None, "no csrf_token on the login page"
            client.post(
                "/login",
                data={
                    "username": account.address,
                    "password": password,
                    "csrf_token": token.group(1),
                },
            )

            def get(path: str) -> Callable[[int], Any]:
                def call(i: int) -> None:
                    response = client.get(path.format(id=ids[i % len(ids)]))
                    response.raise_for_status()

                return call

            api = f"/api/v1/folders/{inbox}/messages"
            return {
                "api_list_first_page": timed(runs, get(api)),
                "api_search_common_word": timed(runs, get(f"{api}?text={COMMON_WORD}")),
                "api_open": timed(runs, get("/api/v1/messages/{id}")),
                "page_list_first_page": timed(runs, get(f"/folder/{inbox}")),
                "page_search_common_word": timed(runs, get(f"/search?text={COMMON_WORD}")),
                "page_open": timed(runs, get("/message/{id}")),
            }
    finally:
        live.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--keep", metavar="DIR", help="build in DIR (reused when it exists)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument(
        "--storage",
        default="",
        metavar="URL",
        help="storage URL (default: SQLite in the data directory); a PostgreSQL URL keeps "
        "the messages in the database, built once and reused",
    )
    parser.add_argument(
        "--http", action="store_true", help="also time the webmail's pages and API over HTTP"
    )
    args = parser.parse_args()
    if args.keep:
        data_dir = Path(args.keep)
        data_dir.mkdir(parents=True, exist_ok=True)
        cleanup = None
    else:
        cleanup = tempfile.TemporaryDirectory(prefix="tayori-web-bench-")
        data_dir = Path(cleanup.name)
    try:
        migrate(args.storage, data_dir)
        stores = open_stores(args.storage, data_dir)
        try:
            account = stores.metadata.get_account("member@example.test")
            if account is None:
                began = time.perf_counter()
                account_id = build(stores, data_dir, args.messages, args.seed)
                log(f"set-up: {args.messages} messages in {time.perf_counter() - began:.0f} s")
            else:
                account_id = account.id
            if args.storage.startswith("postgresql"):
                # What autovacuum does some time after a bulk load; without it the planner
                # takes the new tables for empty and walks the whole mailbox per search.
                import sqlalchemy

                from tayori.storage.engine import create_store_engine

                engine = create_store_engine(args.storage)
                with engine.connect() as conn:
                    conn.execute(sqlalchemy.text("ANALYZE"))
                    conn.commit()
                engine.dispose()
            results = measure(stores, account_id, args.runs, args.seed)
            if args.http:
                results["http"] = measure_http(
                    stores, data_dir, args.storage, account_id, args.runs
                )
        finally:
            stores.close()
        db = data_dir / "tayori.db"
        if db.exists():
            results["database_mib"] = round(db.stat().st_size / 2**20, 1)
    finally:
        if cleanup is not None:
            cleanup.cleanup()
    if args.json:
        print(json.dumps(results, ensure_ascii=False, indent=2))
    else:
        for key, value in results.items():
            print(f"{key:26} {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
