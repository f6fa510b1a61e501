"""The MIME tree: boundaries, broken structure, limits, defects, attachments, bodies."""

from __future__ import annotations

import base64
import re
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.mime import DefectCode, parse_message
from tayori.mime.parse import MAX_DEPTH, MAX_PARTS, dash_line_starts, parse_tree


def codes(raw: bytes) -> set[DefectCode]:
    return {d.code for d in parse_message(raw).defects}


def test_outer_boundary_closes_an_unclosed_inner_part_and_prefixes_do_not_match() -> None:
    raw = (
        b"Content-Type: multipart/mixed; boundary=ab\r\n\r\n--ab\r\n"
        b"Content-Type: multipart/alternative; boundary=abc\r\n\r\n--abc\r\n\r\ninner\r\n"
        b"--ab\r\n\r\nouter\r\n--ab--\r\n"
    )
    tree = parse_tree(raw)
    inner, outer = tree.root.children
    assert inner.children[0].raw_body == b"inner" and outer.raw_body == b"outer"
    assert DefectCode.MISSING_CLOSE_BOUNDARY in {d.code for d in tree.defects}


def test_a_multipart_whose_boundary_never_occurs_is_shown_as_text() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=x\r\n\r\nplain text\r\n"
    message = parse_message(raw)
    assert message.text == "plain text"
    assert DefectCode.BOUNDARY_NEVER_USED in codes(raw)


def test_missing_separator_garbage_lines_and_mbox_from_are_recorded() -> None:
    raw = b"From x@y Tue Apr  2 10:00:00 2024\r\nno colon\r\nSubject: s\r\nbody line\r\n"
    message = parse_message(raw)
    assert message.subject == "s"
    assert {
        DefectCode.MBOX_FROM_LINE,
        DefectCode.GARBAGE_HEADER_LINE,
        DefectCode.MISSING_HEADER_SEPARATOR,
    } <= codes(raw)


def test_bare_cr_line_ends_and_nul_bytes() -> None:
    raw = b"Subject: cr\rContent-Type: text/plain\r\rline1\rline\x002"
    message = parse_message(raw)
    assert message.subject == "cr" and message.text == "line1\nline\x002"
    assert message.raw == raw
    assert {DefectCode.BARE_CR_LINE_ENDINGS, DefectCode.NUL_BYTES} <= codes(raw)


def test_deep_nesting_is_flattened_not_lost_and_never_recurses() -> None:
    depth = 3 * MAX_DEPTH
    head = b"".join(
        b"--b%d\r\nContent-Type: multipart/mixed; boundary=b%d\r\n\r\n" % (i, i + 1)
        for i in range(depth)
    )
    tail = b"".join(b"\r\n--b%d--" % i for i in reversed(range(depth + 1)))
    raw = (
        b"Content-Type: multipart/mixed; boundary=b0\r\n\r\n"
        + head
        + b"--b%d\r\nContent-Type: text/plain\r\n\r\ninnermost" % depth
        + tail
        + b"\r\n"
    )
    message = parse_message(raw)
    assert message.first_text == "innermost"
    assert max(p.depth for p in message.root.walk()) <= MAX_DEPTH + 1
    assert DefectCode.NESTING_TOO_DEEP in codes(raw)


def test_encoded_attached_message_is_parsed_from_its_payload() -> None:
    inner = b"Subject: inner\r\n\r\ninside\r\n"
    raw = (
        b"Content-Type: multipart/mixed; boundary=z\r\n\r\n--z\r\n\r\nouter\r\n--z\r\n"
        b"Content-Type: message/rfc822\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + base64.b64encode(inner)
        + b"\r\n--z--\r\n"
    )
    message = parse_message(raw)
    attached = message.attached_messages()
    assert [m.subject for m in attached] == ["inner"]
    assert attached[0].first_text == "inside\n"
    assert DefectCode.ENCODED_MESSAGE_PART in codes(raw)


def test_attachments_uuencode_tnef_and_security_marks() -> None:
    uu = b"begin 644 hi.txt\r\n#:&D*\r\n`\r\nend\r\n"
    raw = (
        b"Content-Type: multipart/signed; boundary=s; protocol=x\r\n\r\n--s\r\n"
        b"Content-Type: text/plain\r\n\r\nsee\r\n" + uu + b"--s\r\n"
        b"Content-Type: application/pkcs7-signature; name=smime.p7s\r\n\r\nsig\r\n--s--\r\n"
    )
    message = parse_message(raw)
    names = [(a.filename, a.content()) for a in message.attachments]
    assert ("hi.txt", b"hi\n") in names and ("smime.p7s", b"sig") in names
    assert "begin 644" not in message.text
    assert ("", "signed") in message.security


def test_damaged_base64_and_unknown_encodings_keep_what_they_can() -> None:
    raw = (
        b"Content-Type: text/plain\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        b"SGVs!!bG8=\r\n====\r\nIHdvcmxk\r\n"
    )
    message = parse_message(raw)
    assert message.text == "Hello world"
    assert DefectCode.DAMAGED_TRANSFER_ENCODING in {d.code for d in message.defects}
    unknown = parse_message(b"Content-Transfer-Encoding: x-rot13\r\n\r\nuryyb")
    assert unknown.text == "uryyb"


def test_format_flowed_and_html_only_bodies() -> None:
    flowed = parse_message(b"Content-Type: text/plain; format=flowed\r\n\r\none \r\ntwo\r\n")
    assert flowed.text == "one two"
    html = parse_message(b"Content-Type: text/html\r\n\r\n<p>Hi<br>there</p><script>x</script>")
    assert html.text == "Hi\nthere"
    assert html.html_sanitized() == "<p>Hi<br>there</p>"


def test_the_mime_charset_label_wins_over_a_conflicting_html_meta() -> None:
    body = '<meta charset="shift_jis"><p>本文①</p>'.encode("cp932")
    raw = b"Content-Type: text/html; charset=Shift_JIS\r\n\r\n" + body
    assert "本文①" in (parse_message(raw).html_sanitized() or "")


def test_empty_input_and_headers_only() -> None:
    assert parse_message(b"").text == ""
    assert parse_message(b"Subject: only").subject == "only"


def test_hostile_part_counts_and_nesting_stay_bounded_in_time_and_parts() -> None:
    raw = b"Content-Type: multipart/mixed; boundary=b\r\n\r\n" + b"--b\r\n\r\nx\r\n" * 50_000
    started = time.perf_counter()
    message = parse_message(raw)
    parts = sum(1 for _ in message.root.walk())
    assert parts <= MAX_PARTS + 1
    assert DefectCode.TOO_MANY_PARTS in codes(raw)
    nested = b"".join(
        b"Content-Type: multipart/mixed; boundary=%d\r\n\r\n--%d\r\n" % (i, i)
        for i in range(20_000)
    )
    assert parse_message(nested).text == ""
    assert time.perf_counter() - started < 20


_DASH_LINE = re.compile(rb"^--", re.MULTILINE)


@settings(max_examples=500)
@given(
    st.lists(st.sampled_from([b"-", b"--", b"\n", b"\r\n", b"x", b"\n--", b"---"]), max_size=20),
    st.integers(min_value=0, max_value=40),
)
def test_dash_line_starts_finds_what_the_multiline_pattern_finds(
    pieces: list[bytes], start: int
) -> None:
    buf = b"".join(pieces)
    start = min(start, len(buf))
    expected = [match.start() for match in _DASH_LINE.finditer(buf, start)]
    assert dash_line_starts(buf, start) == expected
