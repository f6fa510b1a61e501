"""Every message of ../shared/corpus/tricky survives SMTP in and POP3 out byte for byte
(modulo our trace headers and CRLF normalisation), with no server error."""

from __future__ import annotations

import poplib
import smtplib
from pathlib import Path

import pytest

from tayori.mailauth.results import remove_our_headers
from tests.e2e.conftest import Instance
from tests.e2e.mail import as_sent, strip_trace

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def corpus_messages(corpus: Path) -> list[Path]:
    manifest = corpus / "tricky" / "MANIFEST.tsv"
    rows = [line.split("\t") for line in manifest.read_text(encoding="utf-8").splitlines()[1:]]
    paths = [corpus / "tricky" / row[0] for row in rows if len(row) > 6 and row[6] == "message"]
    return [path for path in paths if path.is_file()]


def test_corpus_roundtrip(
    instance: Instance, corpus_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # poplib refuses lines over 2048 bytes; RFC 1939 sets no such limit and corpus
    # messages have lines of megabytes.
    monkeypatch.setattr(poplib, "_MAXLINE", 64 * 1024 * 1024)
    paths = corpus_messages(corpus_dir)
    assert len(paths) > 1000
    sent: list[tuple[Path, bytes]] = []
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=120) as client:
        for path in paths:
            raw = as_sent(path.read_bytes())
            client.sendmail("corpus@remote.test", ["alice@example.test"], raw)
            sent.append((path, raw))
    client = poplib.POP3("127.0.0.1", instance.ports["pop3"], timeout=120)
    client.user("alice@example.test")
    client.pass_(instance.passwords["alice@example.test"])
    count, _ = client.stat()
    assert count == len(sent)
    mismatched = []
    for number, (path, raw) in enumerate(sent, start=1):
        _, lines, _ = client.retr(number)
        stored = b"\r\n".join(lines) + b"\r\n"
        # Byte for byte, except the check-result headers the MX removes as forgeries
        # (X-Spam-*, Authentication-Results claiming our name: issue 3).
        if strip_trace(stored) != remove_our_headers(raw, "mx.example.test"):
            mismatched.append(str(path))
    client.quit()
    assert not mismatched, f"{len(mismatched)} messages changed: {mismatched[:10]}"
    assert "Traceback" not in instance.log()
