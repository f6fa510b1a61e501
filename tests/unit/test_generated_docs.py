"""The committed docs/ match what the code renders, and the catalogue is complete."""

from __future__ import annotations

from pathlib import Path

import pytest

from tayori.config.loader import section_fields, sections
from tayori.core.reasons import CATALOGUE
from tayori.docgen import GENERATED, render_reason_codes, stale_docs

DOCS = Path(__file__).resolve().parents[2] / "docs"


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_committed_doc_is_current(name: str) -> None:
    path = DOCS / name
    assert path.is_file(), f"{path} is missing; run `tayori docs --write docs`"
    assert path.read_text(encoding="utf-8") == GENERATED[name](), (
        f"{path} is stale; run `tayori docs --write docs` and commit the result"
    )


def test_stale_docs_names_what_differs(tmp_path: Path) -> None:
    assert stale_docs(tmp_path) == [tmp_path / name for name in GENERATED]


@pytest.mark.parametrize("code", sorted(CATALOGUE))
def test_every_reason_code_speaks_japanese_and_english(code: str) -> None:
    reason = CATALOGUE[code]
    for text in (reason.summary, reason.action):
        assert text.ja.strip(), code
        assert text.en.strip(), code
        assert text.ja != text.en, code
    assert reason.detail.strip(), code


def test_issue_codes_are_defined() -> None:
    wanted = {"delivered", "rcpt.unknown", "relay.denied", "rcpt.over_quota"}
    assert wanted | {"size.exceeded", "store.failed"} <= set(CATALOGUE)


def test_reason_codes_doc_shows_every_code_with_its_reply() -> None:
    text = render_reason_codes()
    for reason in CATALOGUE.values():
        assert f"## `{reason.code}`" in text
        assert reason.summary.ja in text
        assert reason.action.en in text
        if reason.reply is not None:
            assert str(reason.reply) in text


def test_config_doc_shows_every_key() -> None:
    text = GENERATED["config.md"]()
    for name, cls in sections():
        assert f"## [{name}]" in text
        for item, _kind in section_fields(cls):
            assert f"`{name}.{item.name}`" in text
