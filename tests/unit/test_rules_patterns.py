"""Reject-list patterns: what members may type, what each form matches, clear refusals."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tayori.rules.patterns import PatternError, PatternKind, parse_pattern


@pytest.mark.parametrize(
    ("text", "kind", "canonical"),
    [
        ("User@Example.COM", PatternKind.ADDRESS, "user@example.com"),
        ("example.com", PatternKind.DOMAIN, "@example.com"),
        ("@Example.com.", PatternKind.DOMAIN, "@example.com"),
        (".example.com", PatternKind.DOMAIN_TREE, ".example.com"),
        ("*@*.Example.com", PatternKind.WILDCARD, "*@*.example.com"),
        ("news**@example.com", PatternKind.WILDCARD, "news*@example.com"),
        ("*.example.com", PatternKind.WILDCARD, "*.example.com"),
        ("xn--r8jz45g.jp", PatternKind.DOMAIN, "@例え.jp"),
        ("  spam@example.com  ", PatternKind.ADDRESS, "spam@example.com"),
    ],
)
def test_forms_and_canonical_spelling(text: str, kind: PatternKind, canonical: str) -> None:
    pattern = parse_pattern(text)
    assert (pattern.kind, pattern.text) == (kind, canonical)
    # The stored spelling parses back to the same pattern (the decision code relies on it).
    assert parse_pattern(pattern.text).text == canonical


@pytest.mark.parametrize(
    ("pattern", "address", "expected"),
    [
        ("spam@example.com", "SPAM@EXAMPLE.COM", True),
        ("spam@example.com", "<spam@example.com>", True),
        ("spam@example.com", "spam2@example.com", False),
        ("example.com", "anyone@example.com", True),
        ("example.com", "anyone@mail.example.com", False),
        (".example.com", "anyone@example.com", True),
        (".example.com", "anyone@mail.example.com", True),
        (".example.com", "anyone@badexample.com", False),
        ("*@*.example.com", "a@mail.example.com", True),
        ("*@*.example.com", "a@example.com", False),
        ("news*@example.com", "newsletter@example.com", True),
        ("news*@example.com", "info@example.com", False),
        ("*.example.com", "x@deep.mail.example.com", True),
        ("*.example.com", "x@example.com.evil.test", False),
        ("a.b@example.com", "axb@example.com", False),  # dots are literal, not regex
        ("example.com", "", False),  # the null sender never matches
        ("example.com", "not-an-address", False),
    ],
)
def test_matching(pattern: str, address: str, expected: bool) -> None:
    assert parse_pattern(pattern).matches(address) is expected


def test_internationalised_domains_match_either_spelling() -> None:
    unicode_pattern = parse_pattern("例え.jp")
    ace_pattern = parse_pattern("xn--r8jz45g.jp")
    for pattern in (unicode_pattern, ace_pattern):
        assert pattern.matches("user@xn--r8jz45g.jp")
        assert pattern.matches("user@例え.JP")
    assert parse_pattern("*@*.例え.jp").matches("a@mail.xn--r8jz45g.jp")


def test_full_width_and_case_fold() -> None:
    assert parse_pattern("ＳＰＡＭ@example.com").matches("spam@example.com")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("a b@example.com", "spaces"),
        ("<a@example.com>", "angle brackets"),
        ("a@b@example.com", "more than one @"),
        ("localhost", "not a full domain"),
        ("user@", "domain part is missing"),
        ("@", "domain part is missing"),
        ("-bad.example.com", "not allowed in a domain"),
        ("a..b@example.com", "two in a row"),
        ("x@a..b.com", "not allowed in a domain"),
        ('bad"q@example.com', "characters not allowed"),
        ("*", "every sender"),
        ("*@*", "every sender"),
        ("*.*", "every sender"),
        ("*@", "empty side"),
        ("x" * 400 + "@example.com", "at most 320"),
        ("exa_mple.com", "not allowed in a domain"),
    ],
)
def test_invalid_patterns_are_refused_clearly(text: str, message: str) -> None:
    with pytest.raises(PatternError, match=message):
        parse_pattern(text)


def test_pattern_error_is_a_value_error_for_callers_that_validate_input() -> None:
    with pytest.raises(ValueError, match="empty"):
        parse_pattern("")


# --- properties ---------------------------------------------------------------------------

_PATTERN_TEXT = st.text(
    alphabet=st.sampled_from('abcXYZ019.-_@*<> \t"例えｘ') | st.characters(), max_size=40
)
_LABEL = st.from_regex(r"[a-z0-9](?:[a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
_DOMAIN = st.lists(_LABEL, min_size=2, max_size=4).map(".".join)
_LOCAL = st.from_regex(r"[a-z0-9](?:[a-z0-9+_]{0,10})", fullmatch=True)


@given(_PATTERN_TEXT)
def test_any_text_parses_or_is_refused_with_pattern_error(text: str) -> None:
    try:
        pattern = parse_pattern(text)
    except PatternError as error:
        assert str(error)
        return
    assert parse_pattern(pattern.text) == pattern
    pattern.matches(text)  # never raises, whatever it is given


@given(_LOCAL, _DOMAIN, st.sampled_from(["{l}@{d}", "{d}", ".{d}", "*@{d}", "{l}*@*"]))
def test_an_address_matches_the_patterns_made_from_it(local: str, domain: str, form: str) -> None:
    address = f"{local}@{domain}"
    pattern = parse_pattern(form.format(l=local.upper(), d=domain.upper()))
    assert pattern.matches(address)
    assert pattern.matches(f"<{address.upper()}>")
    if "{d}" in form:
        assert not pattern.matches(f"{local}@{domain}x.invalid")
    else:
        assert not pattern.matches(f"_{local}@{domain}")
