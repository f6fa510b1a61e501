"""The tokeniser: Japanese through the charset layer, Latin words, header and URL tokens."""

from __future__ import annotations

import base64

from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.spam.tokens import (
    _CJK_RUN,
    _URL,
    _WORD,
    MAX_TOKEN_LEN,
    TOKENIZER_VERSION,
    VERSION_TOKEN,
    _words,
    text_tokens,
    tokenize,
    url_hosts,
)


def jis_word(text: str) -> str:
    return "=?ISO-2022-JP?B?" + base64.b64encode(text.encode("iso-2022-jp")).decode() + "?="


def test_japanese_runs_become_character_bigrams() -> None:
    assert text_tokens("今すぐ無料") == {"今す", "すぐ", "ぐ無", "無料"}
    assert "字" in text_tokens("字 です")  # a lone character stays a token


def test_latin_words_are_lowercased_and_trimmed() -> None:
    tokens = text_tokens("FREE money!!! Click here. $100 now")
    assert {"free", "money", "click", "here", "$100", "now"} <= tokens


def test_long_strings_only_say_that_they_are_there() -> None:
    assert text_tokens("a" * 45) == {"skip:a40"}


# Characters that make URL-looking text: every spelling of the scheme and of "www.",
# Unicode letters that match [a-z] or "s" case-insensitively (ſ, K, İ, ı), separators.
_URLISH = st.text(alphabet="hHtTpPsSſwW.:/-xK\u0130\u0131é 0", max_size=60)


@settings(max_examples=500, deadline=None)
@given(
    st.lists(
        st.one_of(
            _URLISH,
            st.sampled_from(["http://", "HTTPS://", "wWw.", "www.a.b", "https://x.y/", "hxxp://"]),
        ),
        max_size=8,
    )
)
def test_url_hosts_finds_what_the_full_scan_finds(pieces: list[str]) -> None:
    text = "".join(pieces)
    assert list(url_hosts(text)) == [match.group(1) for match in _URL.finditer(text)]


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.one_of(
            st.text(alphabet=st.characters(max_codepoint=127), max_size=30),
            st.sampled_from(["http://", "HTTPS://", "wWw.", "WWW.", "www.a.b", "wwww.x.y"]),
        ),
        max_size=8,
    )
)
def test_url_hosts_on_ascii_text_finds_what_the_full_scan_finds(pieces: list[str]) -> None:
    """Pure-ASCII text is searched lower-cased: every spelling of "www." is still found."""
    text = "".join(pieces)
    assert list(url_hosts(text)) == [match.group(1) for match in _URL.finditer(text)]


def test_url_hosts_overlapping_and_adjacent_candidates() -> None:
    for text in ("wwww.a.b", "https://www.a.b", "http://x.y://z.w", "WwW.x WWW.y", "httpſ://s.t"):
        assert list(url_hosts(text)) == [match.group(1) for match in _URL.finditer(text)], text
    assert list(url_hosts("see https://www.example.com/x and Www.test.example.")) == [
        "www.example.com",
        "test.example.",
    ]


def test_url_hosts_and_their_parent_domains() -> None:
    tokens = text_tokens("see http://www.Cheap.Pills.example.com/buy and mail me@shop.example")
    assert {"url:www.cheap.pills.example.com", "url:pills.example.com", "url:example.com"} <= (
        tokens
    )
    assert "email:shop.example" in tokens


def test_iso_2022_jp_message_gives_the_same_bigrams_as_utf8() -> None:
    raw = (
        f"From: {jis_word('販売部')} <sales@spam.example>\r\n"
        f"Subject: {jis_word('今すぐ無料')}\r\n"
        "Message-ID: <1@mx.spam.example>\r\n"
        "Date: Mon, 1 Jan 2024 00:00:00 +0900\r\n"
        "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
        "Content-Transfer-Encoding: 7bit\r\n\r\n"
    ).encode() + "副業で高収入\r\n".encode("iso-2022-jp")
    tokens = tokenize(raw)
    assert {"subject:無料", "subject:今す", "from:販売", "from:domain:spam.example"} <= tokens
    assert {"副業", "高収", "収入"} <= tokens
    assert "mid:spam.example" in tokens
    assert "x:charset:iso-2022-jp" in tokens


def test_structure_tokens() -> None:
    raw = (
        b"Subject: HELLO FRIEND\r\nContent-Type: text/html\r\n\r\n"
        b"<html><body><a href='http://x.example/'>win</a></body></html>"
    )
    tokens = tokenize(raw)
    assert {"x:html-only", "x:subject-shouting", "x:no-message-id", "x:no-date"} <= tokens
    assert {"win", "url:x.example"} <= tokens


def test_header_field_names_are_not_tokens() -> None:
    """A mailing list's nine List-*/X-Mailman fields must not vote as nine clues."""
    raw = b"List-Id: <l.example>\r\nList-Post: <mailto:l@l.example>\r\nSubject: hi\r\n\r\nx\r\n"
    tokens = tokenize(raw)
    assert not any(token.startswith("hdr:") for token in tokens)
    assert "subject:hi" in tokens


def test_every_message_carries_the_tokenizer_version() -> None:
    assert f"x:tokenizer:{TOKENIZER_VERSION}" == VERSION_TOKEN
    assert VERSION_TOKEN in tokenize(b"Subject: x\r\n\r\nbody\r\n")
    assert VERSION_TOKEN in tokenize(b"")


def test_received_header_tokens() -> None:
    raw = b"Received: from relay.bad.example (relay.bad.example [192.0.2.7]) by mx\r\n\r\nhi\r\n"
    tokens = tokenize(raw)
    assert {"rcvd:ip:192.0.2", "rcvd:bad.example", "rcvd:relay.bad.example"} <= tokens


def test_extra_tokens_and_length_cap() -> None:
    tokens = tokenize(b"Subject: x\r\n\r\nbody\r\n", extra=["auth:spf=fail", "x" * 100])
    assert "auth:spf=fail" in tokens
    assert all(len(token) <= MAX_TOKEN_LEN for token in tokens)


def test_garbage_never_raises() -> None:
    assert isinstance(tokenize(b"\x00\xff\xfe garbage \x1b$B"), set)
    assert isinstance(tokenize(b""), set)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.text(max_size=200))
def test_any_bytes_tokenise_to_bounded_tokens(raw: bytes, text: str) -> None:
    tokens = tokenize(raw) | tokenize(text.encode("utf-8", "surrogatepass")) | text_tokens(text)
    assert all(0 < len(token) <= MAX_TOKEN_LEN for token in tokens)


def test_a_long_run_without_at_sign_is_tokenised_in_linear_time() -> None:
    """A 2 MiB line of word characters once took minutes (a quadratic e-mail pattern) and
    stalled delivery at DATA; this test would take that long again if it came back."""
    raw = b"Subject: one line\r\n\r\n" + b"x" * (2 * 1024 * 1024) + b"\r\n"
    tokens = tokenize(raw)
    assert any(token.startswith("skip:x") for token in tokens)
    assert not any(token.startswith("email:") for token in tokens)


def _plain_words(text: str, prefix: str) -> set[str]:
    """The word rule written as plainly as possible, to check the fast `_words` against."""
    out: set[str] = set()
    for run in _CJK_RUN.findall(text):
        if len(run) == 1:
            out.add(prefix + run)
        else:
            out.update(prefix + run[i : i + 2] for i in range(len(run) - 1))
    for match in _WORD.finditer(_CJK_RUN.sub(" ", text)):
        word = match.group().rstrip(".-!'").lower()
        if 2 <= len(word) <= 30:
            out.add(prefix + word)
        elif len(word) > 30:
            out.add(f"{prefix}skip:{word[0]}{len(word) // 10 * 10}")
    return out


@settings(max_examples=300)
@given(
    st.text(alphabet=st.sampled_from("aZ0_.-!'$€%İß 会議のお知らせ\u00a0\u0307ＡＢ"), max_size=80)
)
def test_fast_word_rule_gives_exactly_the_plain_rules_tokens(text: str) -> None:
    out: set[str] = set()
    _words(text, "p:", out)
    assert out == _plain_words(text, "p:")


@settings(max_examples=300)
@given(st.text(alphabet=st.characters(max_codepoint=127), max_size=120))
def test_fast_word_rule_on_ascii_text_gives_the_plain_rules_tokens(text: str) -> None:
    """Pure-ASCII text takes the ASCII pattern: every ASCII character, every token."""
    out: set[str] = set()
    _words(text, "p:", out)
    assert out == _plain_words(text, "p:")


def test_fast_word_rule_on_real_text() -> None:
    text = (
        "FREE!!! Earn $500 today... Visit www.Example.COM, it's 100% FREE. "
        "İstanbul STRASSE straße 会議の件について、よろしくお願いします。 " + "x" * 45 + " 本 a b"
    )
    out: set[str] = set()
    _words(text, "", out)
    assert out == _plain_words(text, "")
    assert {"free", "$500", "i̇stanbul", "straße", "会議", "skip:x40", "本"} <= out
