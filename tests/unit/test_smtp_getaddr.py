"""The fast path for MAIL/RCPT addresses gives exactly what aiosmtpd's full parser gives."""

from __future__ import annotations

from aiosmtpd.smtp import SMTP
from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.servers.smtp_session import _SIMPLE_PATH, TayoriSmtp

ATEXT = "abcxyzABCXYZ0189!#$%&'*+/=?^_`{|}~-"
piece = st.text(alphabet=ATEXT + ".", min_size=0, max_size=12)
label = st.text(alphabet="abcXYZ019-.", min_size=0, max_size=12)
rest = st.text(alphabet='ab=SIZE0129 \t()<>"', max_size=20)


def _parsers(limit: int) -> tuple[SMTP, TayoriSmtp]:
    # Only `local_part_limit` is read by _getaddr: no session or transport is needed.
    base = SMTP.__new__(SMTP)
    ours = TayoriSmtp.__new__(TayoriSmtp)
    base.local_part_limit = ours.local_part_limit = limit
    return base, ours


@settings(max_examples=600, deadline=None)
@given(local=piece, domain=label, tail=rest, space=st.sampled_from(["", " ", "  "]))
def test_same_answer_as_aiosmtpd(local: str, domain: str, tail: str, space: str) -> None:
    arg = f"<{local}@{domain}>{space}{tail}"
    for limit in (0, 8):
        base, ours = _parsers(limit)
        assert TayoriSmtp._getaddr(ours, arg) == SMTP._getaddr(base, arg), arg


def test_everyday_paths_take_the_fast_path() -> None:
    for arg in ("<alice@example.test>", "<a.b+c@mx.example.jp> SIZE=5271 BODY=8BITMIME"):
        assert _SIMPLE_PATH.match(arg) is not None
    base, ours = _parsers(0)
    assert TayoriSmtp._getaddr(ours, "<a@b.c> SIZE=1") == ("a@b.c", "SIZE=1")
    assert TayoriSmtp._getaddr(ours, "<>") == SMTP._getaddr(base, "<>")
