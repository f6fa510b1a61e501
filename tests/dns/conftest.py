"""Fixtures for DNS tests: a real DNS server on loopback and a resolver pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tayori.dns import DnsPythonResolver
from tayori.testing.dns_server import DnsServer


class FakeClock:
    """Monotonic seconds that move only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A started test DNS server on 127.0.0.1 with an empty zone (`dns_server.zone`);
    stopped after the test, which also fails the test if the server itself faulted."""
    with DnsServer() as server:
        yield server


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def resolver(dns_server: DnsServer, clock: FakeClock) -> DnsPythonResolver:
    """DnsPythonResolver asking only `dns_server`, with the fake clock for its cache."""
    return DnsPythonResolver(dns_server.settings(timeout=2.0), clock=clock)
