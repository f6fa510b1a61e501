"""Human byte sizes as admins write them in the config and the CLI."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tayori.core.sizes import SIZE_EXAMPLES, format_size, parse_size


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("1048576", 1048576),
        (" 50MB ", 50_000_000),
        ("50 mb", 50_000_000),
        ("500KB", 500_000),
        ("500k", 500_000),
        ("1GB", 1_000_000_000),
        ("2GiB", 2 * 1024**3),
        ("1.5MiB", 1572864),
        ("1TB", 10**12),
        ("12B", 12),
        ("1.001KB", 1001),  # float arithmetic would give 1000
        ("4.35MB", 4_350_000),
    ],
)
def test_parse_size_accepts_units(text: str, expected: int) -> None:
    assert parse_size(text) == expected


def test_parse_size_passes_ints_through() -> None:
    assert parse_size(1234) == 1234


@pytest.mark.parametrize("text", ["fifty", "", "MB", "-5", "5 XB", "1,000", "1e6", "5 M B"])
def test_parse_size_rejects_with_the_accepted_forms(text: str) -> None:
    with pytest.raises(ValueError, match="is not a size") as caught:
        parse_size(text)
    assert SIZE_EXAMPLES in str(caught.value)


def test_parse_size_rejects_negative_ints() -> None:
    with pytest.raises(ValueError, match="negative"):
        parse_size(-1)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1000, "1.0 KB"),
        (1536, "1.5 KB"),
        (999_949, "999.9 KB"),
        (999_950, "1.0 MB"),  # not "1000.0 KB"
        (50_000_000, "50.0 MB"),
        (1_000_000_000, "1.0 GB"),
        (10**12, "1.0 TB"),
        (10**16, "10000.0 TB"),
    ],
)
def test_format_size(size: int, expected: str) -> None:
    assert format_size(size) == expected


@given(st.integers(min_value=0, max_value=10**15))
def test_format_size_never_shows_a_thousand_of_a_unit(size: int) -> None:
    number, unit = format_size(size).split()
    assert unit == "TB" or float(number) < 1000


@given(
    st.integers(min_value=0, max_value=10**6),
    st.sampled_from(["", "B", "KB", "MB", "GB", "KiB", "MiB", "GiB"]),
)
def test_whole_numbers_with_any_unit_are_exact(amount: int, unit: str) -> None:
    multiplier = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9}.get(
        unit, {"KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}.get(unit, 0)
    )
    assert parse_size(f"{amount}{unit}") == amount * multiplier
