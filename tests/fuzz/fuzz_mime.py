"""atheris harness: every input is parsed and read the way the webmail reads a message.

Run by hand for as long as you like (seed it with corpus messages):
    .venv/bin/python tests/fuzz/fuzz_mime.py SEED_DIR -max_total_time=600 -rss_limit_mb=2048
libFuzzer stops at the first exception, at an input taking over -timeout seconds, or at
memory over -rss_limit_mb, and writes the input it was given as crash-*/timeout-*/oom-*.
"""

from __future__ import annotations

import sys

import atheris

with atheris.instrument_imports(include=["tayori.mime"]):
    from tayori.mime import decode_header_text, parse_message, parse_tnef


def one_input(data: bytes) -> None:
    message = parse_message(data)
    read: list[object] = [message.subject, message.from_, message.to, message.text]
    read.append(message.html_sanitized())
    for attachment in message.attachments:
        read += [attachment.digest(), attachment.tnef()]
    for inner in message.attached_messages():
        read.append(inner.text)
    read += [message.defects, decode_header_text(data[:2000]), parse_tnef(data).names]


def main() -> None:
    atheris.Setup(sys.argv, one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
