"""Route resolution: MX by preference, equal preferences in random order (RFC 5321 §5.1).

The resolver is the in-memory fake; each test runs its own event loop (`asyncio.run`) and
passes a seeded `random.Random`, so every order it sees is reproducible.
"""

from __future__ import annotations

import asyncio
import random

from tayori.config.settings import OutboundSettings
from tayori.delivery.routes import Route, RouteFailure, mx_hosts_in_order, resolve_route
from tayori.dns.resolver import Mx
from tests.fakes_queue import FakeResolver

SETTINGS = OutboundSettings(port=2525)


def _resolver() -> FakeResolver:
    """remote.test: two hosts at preference 10, three at 20, one at 5; one address each."""
    resolver = FakeResolver()
    resolver.mx_records["remote.test"] = [
        (20, "c.remote.test"),
        (10, "a.remote.test"),
        (20, "d.remote.test"),
        (5, "first.remote.test"),
        (10, "b.remote.test"),
        (20, "e.remote.test"),
    ]
    for number, host in enumerate(
        ["first", "a", "b", "c", "d", "e"],
        start=1,
    ):
        resolver.hosts[f"{host}.remote.test"] = [f"127.0.0.{number}"]
    return resolver


def _route(resolver: FakeResolver, rng: random.Random) -> Route:
    route = asyncio.run(resolve_route("remote.test", resolver, SETTINGS, rng=rng))
    assert isinstance(route, Route), route
    return route


def _hosts(route: Route) -> list[str]:
    return [hop.host.partition(".")[0] for hop in route.hops]


def test_lower_preference_always_comes_first() -> None:
    resolver = _resolver()
    rng = random.Random(1)
    for _ in range(50):
        hosts = _hosts(_route(resolver, rng))
        assert hosts[0] == "first"
        assert sorted(hosts[1:3]) == ["a", "b"]
        assert sorted(hosts[3:]) == ["c", "d", "e"]


def test_equal_preferences_are_shuffled_both_orders_occur() -> None:
    resolver = _resolver()
    rng = random.Random(4242)
    seen_10: set[tuple[str, ...]] = set()
    seen_20: set[tuple[str, ...]] = set()
    for _ in range(200):
        hosts = _hosts(_route(resolver, rng))
        seen_10.add(tuple(hosts[1:3]))
        seen_20.add(tuple(hosts[3:]))
    assert seen_10 == {("a", "b"), ("b", "a")}
    assert len(seen_20) == 6  # every permutation of the three hosts at preference 20


def test_seeded_random_gives_the_same_order() -> None:
    resolver = _resolver()
    first = [_hosts(_route(resolver, random.Random(7))) for _ in range(5)]
    assert all(order == first[0] for order in first)


def test_hops_carry_the_configured_port_and_the_hosts_addresses() -> None:
    route = _route(_resolver(), random.Random(0))
    assert route.destination == "remote.test"
    assert {hop.port for hop in route.hops} == {2525}
    assert route.hops[0].address == "127.0.0.1"
    assert str(route.hops[0]) == "first.remote.test[127.0.0.1]:2525"


def test_each_host_keeps_its_addresses_together_ipv6_first() -> None:
    resolver = FakeResolver()
    resolver.mx_records["remote.test"] = [(10, "a.remote.test"), (10, "b.remote.test")]
    resolver.hosts["a.remote.test"] = ["127.0.0.1", "::1"]
    resolver.hosts["b.remote.test"] = ["127.0.0.2"]
    orders = set()
    rng = random.Random(3)
    for _ in range(40):
        route = _route(resolver, rng)
        orders.add(tuple((hop.host, hop.address) for hop in route.hops))
    a = (("a.remote.test", "::1"), ("a.remote.test", "127.0.0.1"))
    b = (("b.remote.test", "127.0.0.2"),)
    assert orders == {a + b, b + a}


def test_mx_hosts_in_order_leaves_out_the_root_and_keeps_singletons() -> None:
    records = [Mx(0, "."), Mx(10, "only.remote.test"), Mx(30, "last.remote.test")]
    assert mx_hosts_in_order(records, random.Random(0)) == ["only.remote.test", "last.remote.test"]


def test_mx_hosts_in_order_without_rng_uses_the_system_random_source() -> None:
    records = [Mx(10, "a.test"), Mx(10, "b.test"), Mx(5, "z.test")]
    for _ in range(20):
        hosts = mx_hosts_in_order(records)
        assert hosts[0] == "z.test"
        assert sorted(hosts[1:]) == ["a.test", "b.test"]


def test_null_mx_still_bounces_with_an_rng() -> None:
    resolver = FakeResolver()
    resolver.mx_records["nomail.test"] = [(0, ".")]
    failure = asyncio.run(resolve_route("nomail.test", resolver, SETTINGS, rng=random.Random(0)))
    assert isinstance(failure, RouteFailure)
    assert failure.permanent and failure.reason == "remote.null_mx"
