"""Search terms: CJK bigrams, field prefixes, query building for FTS5 and PostgreSQL."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.storage.search_terms import (
    _run_tokens,
    _runs,
    document_terms,
    fts5_query,
    sort_from,
    sort_subject,
    tsquery,
)


def terms(body: str) -> list[str]:
    return document_terms(from_="", to="", subject="", body=body).split()


def test_cjk_runs_become_bigrams_plus_last_character() -> None:
    assert terms("明日の会議") == ["b明日", "b日の", "bの会", "b会議", "b議"]
    assert terms("会") == ["b会"]


def test_latin_words_are_whole_and_case_folded_and_nfkc() -> None:
    # Full-width letters become ASCII; half-width kana become ordinary kana (a CJK run).
    assert terms("Meeting at 10:00, ＦＵＬＬ ｶﾅ") == [
        "bmeeting",
        "bat",
        "b10",
        "b00",
        "bfull",
        "bカナ",
        "bナ",
    ]


def test_fields_get_their_prefix() -> None:
    found = document_terms(from_="Taro", to="team", subject="件名", body="x").split()
    assert found == ["ftaro", "tteam", "s件名", "s名", "bx"]


def test_mixed_scripts_and_punctuation_split_runs() -> None:
    assert terms("見積書.pdfを送付") == ["b見積", "b積書", "b書", "bpdf", "bを送", "b送付", "b付"]


def test_words_are_bounded() -> None:
    assert terms("a" * 500) == ["b" + "a" * 64]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("会議", '"b会議"'),
        ("会議室", '"b会議 b議室"'),
        ("会", '"b会" *'),
        ("meet", '"bmeet" *'),
        ("taro@example.jp", '"btaro bexample bjp" *'),
        ("見積書.pdf", '"b見積 b積書 b書 bpdf" *'),
        ("会議 予算", '"b会議" AND "b予算"'),
    ],
)
def test_fts5_query_per_word_phrases(query: str, expected: str) -> None:
    assert fts5_query(query, ("b",)) == expected


def test_fts5_query_over_several_fields_is_an_or() -> None:
    assert fts5_query("会議", ("s", "b")) == '("s会議" OR "b会議")'


def test_nothing_searchable_gives_none() -> None:
    assert fts5_query("!!! ???", ("b",)) is None
    assert tsquery("   ", ("b",)) is None


def test_tsquery_matches_the_same_phrases() -> None:
    assert tsquery("会議室 meet", ("b",)) == "(('b会議' <-> 'b議室')) & (('bmeet':*))"
    assert tsquery("会", ("s", "b")) == "(('s会':*) | ('b会':*))"


def test_query_tokens_cannot_escape_the_syntax() -> None:
    hostile = "\" OR x:* ' | & ! ( ) NEAR"
    fts = fts5_query(hostile, ("b",))
    assert fts == '"bor" * AND "bx" * AND "bnear" *'
    ts = tsquery(hostile, ("b",))
    assert ts == "(('bor':*)) & (('bx':*)) & (('bnear':*))"


def test_sort_keys() -> None:
    assert sort_subject("Re: RE:Fwd: 転送：Hello") == "hello"
    assert sort_subject("Fw[2]: Ａｂｃ") == "abc"
    assert sort_subject("Regarding") == "regarding"
    assert sort_from("Taro YAMADA") == "taro yamada"
    assert len(sort_from("x" * 2000)) == 512


def _terms_the_query_way(**fields: str) -> str:
    """The index text built from the query side's pieces (`_runs`, `_run_tokens`)."""
    out: list[str] = []
    prefixes = {"from_": "f", "to": "t", "subject": "s", "body": "b"}
    for name, prefix in prefixes.items():
        for run in _runs(fields[name]):
            out.extend(prefix + token for token in _run_tokens(run))
    return " ".join(out)


@settings(max_examples=300)
@given(
    st.text(alphabet=st.sampled_from("aZ09_.@-会議のお知らせＡｱｲ① \u00a0İß한국"), max_size=60),
    st.text(max_size=40),
)
def test_document_terms_are_what_queries_look_for(body: str, subject: str) -> None:
    fields = {"from_": "taro@example.jp", "to": "会議室 <room@example.jp>", "subject": subject}
    assert document_terms(body=body, **fields) == _terms_the_query_way(body=body, **fields)


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=200))
def test_ascii_text_gives_the_terms_the_general_pattern_gives(text: str) -> None:
    """ASCII fields take a shortcut (a simpler pattern): the same terms as the query side's."""
    fields = {"from_": text, "to": text.upper(), "subject": text[::-1], "body": text * 3}
    assert document_terms(**fields) == _terms_the_query_way(**fields)


def test_document_terms_keep_long_words_cut_and_single_cjk_characters() -> None:
    terms = document_terms(from_="", to="", subject="本", body="x" * 200 + " 会議")
    assert terms.split() == ["s本", "b" + "x" * 64, "b会議", "b議"]
