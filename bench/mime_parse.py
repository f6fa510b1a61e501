#!/usr/bin/env python3
"""MIME parsing speed: tayori.mime against the stdlib `email` package on the same files.

Reads every message of the tricky corpus (../shared/corpus/tricky/MANIFEST.tsv, kind
"message") into memory, then times, best of --repeat runs:

  parse  stdlib: email.message_from_bytes (compat32)  | ours: parse_message (the MIME tree)
  full   stdlib: policy=default, Subject/From/To, every leaf's get_payload(decode=True) and
         sha256, every text part's get_content()     | ours: subject, from, to, body text,
         sanitised HTML, every attachment's bytes and sha256, defects
  full32 stdlib: the same with compat32, email.header and bytes.decode (the fast way to use
         the stdlib; it decodes less than we do)     | ours: as for full

The issue's target: ours takes at most 1.5x the stdlib's time for the full work. Messages on
which the stdlib raises are counted (and timed up to the exception). Run with Tayori's venv:
    .venv/bin/python bench/mime_parse.py [--corpus DIR] [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import csv
import email
import email.header
import email.policy
import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tayori.mime import parse_message

DEFAULT_CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "tricky"


def load(corpus: Path) -> list[bytes]:
    with (corpus / "MANIFEST.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    paths = [corpus / r["relpath"] for r in rows if r["kind"] == "message"]
    return [path.read_bytes() for path in paths if path.is_file()]


def stdlib_parse(raw: bytes) -> None:
    email.message_from_bytes(raw)


def stdlib_full(raw: bytes) -> None:
    message = email.message_from_bytes(raw, policy=email.policy.default)
    for name in ("subject", "from", "to"):
        str(message.get(name, ""))
    for part in message.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        hashlib.sha256(data).hexdigest()
        if part.get_content_maintype() == "text":
            part.get_content()


def stdlib_full_compat32(raw: bytes) -> None:
    """The same work done the cheaper way (compat32 and email.header), as fast code does."""
    message = email.message_from_bytes(raw)
    for name in ("subject", "from", "to"):
        str(email.header.make_header(email.header.decode_header(str(message.get(name, "")))))
    for part in message.walk():
        if part.is_multipart():
            continue
        data = part.get_payload(decode=True) or b""
        hashlib.sha256(data).hexdigest()
        if part.get_content_maintype() == "text":
            data.decode(part.get_content_charset() or "us-ascii", "replace")


def ours_parse(raw: bytes) -> None:
    parse_message(raw)


def ours_full(raw: bytes) -> None:
    message = parse_message(raw)
    read: list[object] = [message.subject, message.from_, message.to, message.text]
    read.append(message.html_sanitized())
    read += [attachment.digest() for attachment in message.attachments]
    read.append(message.defects)


def run(function: Callable[[bytes], None], messages: list[bytes]) -> tuple[float, int]:
    errors = 0
    started = time.perf_counter()
    for raw in messages:
        try:
            function(raw)
        except Exception:  # the stdlib raises on some corpus messages; count them
            errors += 1
    return time.perf_counter() - started, errors


def best(
    function: Callable[[bytes], None], messages: list[bytes], repeat: int
) -> tuple[float, int]:
    results = [run(function, messages) for _ in range(repeat)]
    return min(r[0] for r in results), results[0][1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    if not (args.corpus / "MANIFEST.tsv").is_file():
        print(f"no corpus at {args.corpus}", file=sys.stderr)
        return 2
    messages = load(args.corpus)
    megabytes = sum(map(len, messages)) / 1e6
    result: dict[str, Any] = {"messages": len(messages), "megabytes": round(megabytes, 2)}
    modes = (
        ("parse", stdlib_parse, ours_parse),
        ("full", stdlib_full, ours_full),
        ("full32", stdlib_full_compat32, ours_full),
    )
    for mode, theirs, ours in modes:
        stdlib_seconds, stdlib_errors = best(theirs, messages, args.repeat)
        ours_seconds, ours_errors = best(ours, messages, args.repeat)
        result[mode] = {
            "stdlib": {
                "seconds": round(stdlib_seconds, 3),
                "errors": stdlib_errors,
                "msgs_per_s": round(len(messages) / stdlib_seconds),
                "mb_per_s": round(megabytes / stdlib_seconds, 1),
            },
            "tayori": {
                "seconds": round(ours_seconds, 3),
                "errors": ours_errors,
                "msgs_per_s": round(len(messages) / ours_seconds),
                "mb_per_s": round(megabytes / ours_seconds, 1),
            },
            "ratio": round(ours_seconds / stdlib_seconds, 2),
        }
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"{result['messages']} messages, {result['megabytes']} MB; best of {args.repeat}")
    for mode, _, _ in modes:
        row = result[mode]
        for who in ("stdlib", "tayori"):
            r = row[who]
            print(
                f"  {mode:5} {who:6} {r['seconds']:7.3f}s {r['msgs_per_s']:7} msg/s "
                f"{r['mb_per_s']:7.1f} MB/s  errors {r['errors']}"
            )
        print(f"  {mode:5} tayori/stdlib time: {row['ratio']}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
