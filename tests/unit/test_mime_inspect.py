"""`tayori message inspect FILE [--json]`, the report behind it, and the envelope summary."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import tayori.mime
from tayori.cli import main
from tayori.mime import envelope_summary
from tayori.mime.addresses import Mailbox
from tayori.mime.compose import AttachmentSpec, Draft, compose

REPORT_KEYS = {
    "subject",
    "from",
    "to",
    "date",
    "message_id",
    "text",
    "html_sanitized",
    "attachments",
    "defects",
    "parts",
}


@pytest.fixture
def message_file(tmp_path: Path) -> Path:
    raw = compose(
        Draft(
            from_=Mailbox("髙橋 ①郎", "t@example.jp"),
            to=[Mailbox("", "y@example.jp")],
            subject="件名①",
            text="本文",
            html="<p>本文<script>x</script></p>",
            attachments=[AttachmentSpec("a\x1b[31m.txt", "text/plain", b"abc")],
            message_id="id1@example.jp",
        )
    )
    path = tmp_path / "m.eml"
    path.write_bytes(raw)
    return path


def test_json_report_has_exactly_the_documented_keys(
    message_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["message", "inspect", str(message_file), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report) == REPORT_KEYS
    assert report["subject"] == "件名①"
    assert report["from"] == [{"name": "髙橋 ①郎", "address": "t@example.jp"}]
    assert report["message_id"] == "id1@example.jp"
    assert "<script" not in report["html_sanitized"]
    assert report["attachments"] == [
        {
            "filename": "a\x1b[31m.txt",
            "content_type": "text/plain",
            "size": 3,
            "sha256": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        }
    ]
    assert {p["content_type"] for p in report["parts"]} >= {"multipart/mixed", "text/plain"}


def test_text_report_never_sends_escape_sequences_to_the_terminal(
    message_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["message", "inspect", str(message_file)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "Subject:    件名①" in out and "saved as" in out


def test_errors_are_one_line_and_need_no_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # no tayori.toml here
    assert main(["message", "inspect", str(tmp_path / "missing.eml")]) == 1
    assert capsys.readouterr().err.startswith("error: ")
    assert main(["message", "inspect", str(tmp_path)]) == 1
    assert "directory" in capsys.readouterr().err


def test_envelope_summary_reads_only_the_header_block() -> None:
    raw = (
        "From: 鈴木 花子 <h@example.jp>\r\nTo: a@example.jp, b@example.jp\r\n"
        "Subject: 生の\x00件名\r\n\r\n"
    ).encode("cp932") + b"\xff" * 1000
    summary = envelope_summary(raw)
    assert summary.from_ == "鈴木 花子 <h@example.jp>"
    assert summary.to == "a@example.jp, b@example.jp"
    assert summary.subject == "生の\ufffd件名"
    assert summary.message_id == "" and summary.as_dict()["subject"] == summary.subject


def test_public_api_is_pinned() -> None:
    assert sorted(tayori.mime.__all__) == [
        "Attachment",
        "Decoded",
        "Defect",
        "DefectCode",
        "EnvelopeSummary",
        "Mailbox",
        "Message",
        "Part",
        "SanitizeOptions",
        "TnefContent",
        "attachment_filename",
        "decode",
        "decode_header_text",
        "envelope_summary",
        "explain",
        "html_to_text",
        "inspect_report",
        "parse_addresses",
        "parse_message",
        "parse_tnef",
        "render_text",
        "safe_filename",
        "sanitize_html",
    ]


def test_mime_imports_nothing_of_ours_but_core() -> None:
    for path in Path(tayori.mime.__file__).parent.glob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith(("from tayori", "import tayori")):
                assert line.startswith(("from tayori.mime", "from tayori.core")), (path, line)
