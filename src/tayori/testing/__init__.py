"""Test kit for Tayori and the programs around it (in the spirit of `trio.testing`).

`DnsServer` / `Zone`: a real DNS server on loopback answering from an editable zone.

Loaded lazily, so that `python -m tayori.testing.dns_server` does not import its own module
twice (runpy warns when a package has already imported the module it is asked to run).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tayori.testing.dns_server import DnsServer, Query, Zone

__all__ = ["DnsServer", "Query", "Zone"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from tayori.testing import dns_server

        return getattr(dns_server, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
