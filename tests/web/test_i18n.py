"""Both catalogues cover every text the pages use; language and time-zone choice."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from tayori.web.i18n import (
    Catalogues,
    choose_language,
    format_datetime,
    format_size,
    negotiate,
    zone,
)
from tayori.web.render import FOLDER_NAMES
from tayori.web.routes.doctor import EVIDENCE_LABELS, EVIDENCE_VALUES
from tests.web.msgids import used_msgids


def test_every_msgid_is_in_both_catalogues() -> None:
    catalogues = Catalogues.load()
    used = used_msgids()
    values = {msgid for by_value in EVIDENCE_VALUES.values() for msgid in by_value.values()}
    wanted = set(used) | set(FOLDER_NAMES.values()) | set(EVIDENCE_LABELS.values()) | values
    assert len(wanted) > 50
    for language in ("ja", "en"):
        missing = sorted(m for m in wanted if m not in catalogues.messages[language])
        assert missing == [], (language, {m: used.get(m) for m in missing})


def test_japanese_catalogue_is_translated() -> None:
    ja = Catalogues.load().messages["ja"]
    untranslated = [m for m, text in ja.items() if text == m and m not in ("Cc",)]
    assert untranslated == []
    assert ja["Junk"] == "迷惑メール"


def test_placeholders_survive_translation() -> None:
    catalogues = Catalogues.load()
    for msgid, text in catalogues.messages["ja"].items():
        assert sorted(_fields(msgid)) == sorted(_fields(text)), msgid


def _fields(text: str) -> list[str]:
    import string

    return [name for _, name, _, _ in string.Formatter().parse(text) if name]


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("ja,en;q=0.8", "ja"),
        ("en-US,en;q=0.9,ja;q=0.8", "en"),
        ("fr-FR, en;q=0.5", "en"),
        ("fr", "ja"),
        ("en;q=0.2, ja;q=0.9", "ja"),
        ("", "ja"),
        ("ja;q=0", "ja"),
    ],
)
def test_accept_language(header: str, expected: str) -> None:
    assert negotiate(header, "ja") == expected


def test_member_choice_wins() -> None:
    assert choose_language("en", "ja", "ja") == "en"
    assert choose_language("", "en", "ja") == "en"
    assert choose_language("xx", None, "en") == "en"


def test_dates_in_member_zone() -> None:
    when = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)
    tokyo = zone("", "Asia/Tokyo")
    assert format_datetime(when, tokyo, "ja", now=datetime(2026, 11, 1, tzinfo=UTC)) == (
        "2026/11/28 01:30"
    )
    london = zone("Europe/London", "Asia/Tokyo")
    assert format_datetime(when, london, "en", now=when) == "16:30"
    assert zone("Not/AZone", "Asia/Tokyo").key == "Asia/Tokyo"


def test_sizes() -> None:
    assert format_size(999, "en") == "999 B"
    assert format_size(1_500_000, "ja") == "1.5 MB"
