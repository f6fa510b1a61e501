"""Human byte sizes ("50MB", "1 GiB") for config and the admin CLI."""

from __future__ import annotations

import re
from decimal import Decimal

_UNITS = {
    "": 1,
    "B": 1,
    "K": 1000,
    "KB": 1000,
    "KIB": 1024,
    "M": 1000**2,
    "MB": 1000**2,
    "MIB": 1024**2,
    "G": 1000**3,
    "GB": 1000**3,
    "GIB": 1024**3,
    "T": 1000**4,
    "TB": 1000**4,
    "TIB": 1024**4,
}
SIZE_EXAMPLES = "1048576, 500KB, 50MB, 1GB or 2GiB"
"""Accepted forms, quoted by every message that rejects a size."""

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int) -> int:
    """Parse a size; bare numbers are bytes. Raises ValueError with the accepted forms."""
    if isinstance(text, int):
        if text < 0:
            raise ValueError("a size cannot be negative")
        return text
    match = _SIZE.match(text)
    unit = match.group(2).upper() if match else None
    if match is None or unit not in _UNITS:
        raise ValueError(f"{text!r} is not a size; write e.g. {SIZE_EXAMPLES}")
    # Decimal, not float: "1.001KB" must be 1001 bytes, not 1000.9999999999999 truncated.
    return int(Decimal(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """Short human form with decimal units, as mail programs and providers show quotas."""
    if size < 1000:
        return f"{size} B"
    value = float(size)
    for unit in ("KB", "MB", "GB", "TB"):
        value /= 1000
        # Step up when rounding to one decimal would print 1000.0 of this unit.
        if round(value, 1) < 1000 or unit == "TB":
            return f"{value:.1f} {unit}"
    raise AssertionError("unreachable")
