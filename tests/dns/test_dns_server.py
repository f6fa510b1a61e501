"""The test DNS server itself, asked with dnspython's plain query functions over UDP and TCP."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import dns.exception
import dns.flags
import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import pytest

import tayori.testing
from tayori.testing.dns_server import DnsServer, Query, Zone

TIMEOUT = 2.0


def ask(
    server: DnsServer,
    name: str,
    rdtype: str,
    *,
    tcp: bool = False,
    payload: int | None = None,
    timeout: float = TIMEOUT,
) -> dns.message.Message:
    query = dns.message.make_query(name, rdtype)
    if payload is not None:
        query.use_edns(0, 0, payload)
    if tcp:
        return dns.query.tcp(query, server.host, timeout=timeout, port=server.port)
    return dns.query.udp(query, server.host, timeout=timeout, port=server.port)


def records(response: dns.message.Message) -> list[str]:
    return sorted(rd.to_text() for rrset in response.answer for rd in rrset)


def test_testing_package_exports() -> None:
    assert tayori.testing.__all__ == ["DnsServer", "Query", "Zone"]
    assert tayori.testing.DnsServer is DnsServer
    with pytest.raises(AttributeError):
        _ = tayori.testing.Nothing  # type: ignore[attr-defined]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_answers_authoritatively_on_both_transports(dns_server: DnsServer, tcp: bool) -> None:
    dns_server.zone.add("example.test", "MX", "10 mx.example.test", ttl=123)
    response = ask(dns_server, "example.test", "MX", tcp=tcp)
    assert response.rcode() == dns.rcode.NOERROR
    assert response.flags & dns.flags.AA
    assert records(response) == ["10 mx.example.test."]
    assert response.answer[0].ttl == 123
    assert list(dns_server.queries) == [Query("example.test", "MX", "tcp" if tcp else "udp")]


def test_nxdomain_and_nodata_carry_an_soa(dns_server: DnsServer) -> None:
    dns_server.zone.add("exists.test", "A", "127.0.0.2")
    nxdomain = ask(dns_server, "missing.test", "A")
    assert nxdomain.rcode() == dns.rcode.NXDOMAIN
    nodata = ask(dns_server, "exists.test", "MX")
    assert nodata.rcode() == dns.rcode.NOERROR
    for response in (nxdomain, nodata):
        assert response.answer == []
        assert [rrset.rdtype for rrset in response.authority] == [dns.rdatatype.SOA]


def test_txt_is_split_into_character_strings(dns_server: DnsServer) -> None:
    dns_server.zone.add("long.test", "TXT", "x" * 600)
    dns_server.zone.add("parts.test", "TXT", ["v=spf1 ", "-all"])
    long_txt = ask(dns_server, "long.test", "TXT", tcp=True).answer[0][0]
    assert [len(s) for s in long_txt.strings] == [255, 255, 90]  # type: ignore[attr-defined]
    parts = ask(dns_server, "parts.test", "TXT").answer[0][0]
    assert parts.strings == (b"v=spf1 ", b"-all")  # type: ignore[attr-defined]
    with pytest.raises(ValueError, match="255"):
        dns_server.zone.add("bad.test", "TXT", ["y" * 256])


def test_large_udp_answers_are_truncated(dns_server: DnsServer) -> None:
    for i in range(40):
        dns_server.zone.add("many.test", "A", f"127.0.1.{i}")
    plain = ask(dns_server, "many.test", "A")  # no EDNS: 512 bytes at most
    assert plain.flags & dns.flags.TC
    assert len(plain.to_wire()) <= 512
    full = ask(dns_server, "many.test", "A", tcp=True)
    assert not full.flags & dns.flags.TC
    assert len(records(full)) == 40
    with_edns = ask(dns_server, "many.test", "A", payload=1232)
    assert not with_edns.flags & dns.flags.TC
    assert len(records(with_edns)) == 40


def test_server_payload_cap_wins_over_the_client(dns_server: DnsServer) -> None:
    with DnsServer(dns_server.zone, max_udp_payload=512) as capped:
        for i in range(40):
            capped.zone.add("many.test", "A", f"127.0.1.{i}")
        assert ask(capped, "many.test", "A", payload=4096).flags & dns.flags.TC


def test_zone_changes_are_seen_live(dns_server: DnsServer) -> None:
    zone = dns_server.zone
    zone.add("host.test", "A", "127.0.0.2")
    zone.add("host.test", "A", "127.0.0.3")
    zone.add("host.test", "TXT", "hello")
    zone.remove("host.test", "A", "127.0.0.2")
    assert records(ask(dns_server, "host.test", "A")) == ["127.0.0.3"]
    zone.remove("host.test", "A")
    assert ask(dns_server, "host.test", "A").rcode() == dns.rcode.NOERROR
    zone.remove("host.test")
    assert ask(dns_server, "host.test", "TXT").rcode() == dns.rcode.NXDOMAIN
    zone.remove("never.test", "A", "127.0.0.9")  # not an error


def test_cname_is_followed_and_exclusive(dns_server: DnsServer) -> None:
    zone = dns_server.zone
    zone.add("alias.test", "CNAME", "target.test")
    zone.add("target.test", "A", "127.0.0.2")
    response = ask(dns_server, "alias.test", "A")
    assert [rrset.rdtype for rrset in response.answer] == [dns.rdatatype.CNAME, dns.rdatatype.A]
    assert records(ask(dns_server, "alias.test", "CNAME")) == ["target.test."]
    with pytest.raises(ValueError, match="CNAME"):
        zone.add("alias.test", "A", "127.0.0.3")
    with pytest.raises(ValueError, match="CNAME"):
        zone.add("target.test", "CNAME", "elsewhere.test")


def test_any_returns_every_type(dns_server: DnsServer) -> None:
    dns_server.zone.add("all.test", "A", "127.0.0.2")
    dns_server.zone.add("all.test", "MX", "10 mx.all.test")
    response = ask(dns_server, "all.test", "ANY", tcp=True)
    assert {rrset.rdtype for rrset in response.answer} == {dns.rdatatype.A, dns.rdatatype.MX}


def test_bad_values_are_refused() -> None:
    zone = Zone()
    with pytest.raises(ValueError, match="MX"):
        zone.add("x.test", "MX", "not a preference")
    with pytest.raises(ValueError, match="text"):
        zone.add("x.test", "A", ["127.0.0.1"])


@pytest.mark.parametrize(
    ("mode", "rcode"), [("servfail", dns.rcode.SERVFAIL), ("refused", dns.rcode.REFUSED)]
)
def test_failure_switches(dns_server: DnsServer, mode: str, rcode: int) -> None:
    dns_server.zone.add("sick.test", "A", "127.0.0.2")
    dns_server.zone.add("sick.test", "MX", "10 mx.sick.test")
    dns_server.zone.fail("sick.test", mode, rdtype="A")  # type: ignore[arg-type]
    assert ask(dns_server, "sick.test", "A").rcode() == rcode
    assert ask(dns_server, "sick.test", "MX").rcode() == dns.rcode.NOERROR
    dns_server.zone.heal("sick.test", rdtype="A")
    assert records(ask(dns_server, "sick.test", "A")) == ["127.0.0.2"]


@pytest.mark.parametrize("tcp", [False, True], ids=["udp", "tcp"])
def test_drop_means_no_answer(dns_server: DnsServer, tcp: bool) -> None:
    dns_server.zone.fail("mute.test", "drop")
    with pytest.raises(dns.exception.Timeout):
        ask(dns_server, "mute.test", "A", tcp=tcp, timeout=0.1)
    assert ask(dns_server, "other.test", "A", tcp=tcp).rcode() == dns.rcode.NXDOMAIN


def test_garbage_is_ignored(dns_server: DnsServer) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.sendto(b"\x00\x01garbage", (dns_server.host, dns_server.port))
    assert ask(dns_server, "x.test", "A").rcode() == dns.rcode.NXDOMAIN


def test_several_queries_on_one_tcp_connection(dns_server: DnsServer) -> None:
    dns_server.zone.add("a.test", "A", "127.0.0.2")
    with socket.create_connection((dns_server.host, dns_server.port), timeout=TIMEOUT) as sock:
        for _ in range(2):
            wire = dns.message.make_query("a.test", "A").to_wire(prepend_length=True)
            sock.sendall(wire)
            size = int.from_bytes(sock.recv(2), "big")
            data = b""
            while len(data) < size:
                data += sock.recv(size - len(data))
            assert records(dns.message.from_wire(data)) == ["127.0.0.2"]


def test_stop_closes_idle_tcp_connections() -> None:
    server = DnsServer().start()
    with socket.create_connection((server.host, server.port), timeout=TIMEOUT) as sock:
        server.stop()
        # Refused while still waiting to be accepted (a reset) is closed just the same.
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(1) == b""
    server.stop()  # twice is fine


def test_a_stopped_server_restarts_on_its_port() -> None:
    server = DnsServer()
    with server:
        port = server.port
        server.zone.add("back.test", "A", "127.0.0.2")
    with pytest.raises(ConnectionRefusedError):
        ask(server, "back.test", "A", tcp=True)
    with server:
        assert server.port == port
        assert records(ask(server, "back.test", "A")) == ["127.0.0.2"]


def test_a_stopped_servers_port_can_be_taken_again() -> None:
    with DnsServer() as first:
        port = first.port
    with DnsServer(port=port) as second:
        second.zone.add("again.test", "A", "127.0.0.2")
        assert records(ask(second, "again.test", "A")) == ["127.0.0.2"]


def test_loopback_only_and_single_start() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DnsServer(host="0.0.0.0")
    with DnsServer() as server, pytest.raises(RuntimeError, match="already"):
        server.start()


def test_a_fault_in_the_server_fails_the_test_at_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    server = DnsServer().start()

    def broken(*args: object) -> None:
        raise KeyError("zone bug")

    monkeypatch.setattr(server.zone, "answer", broken)
    assert ask(server, "x.test", "A").rcode() == dns.rcode.SERVFAIL
    with pytest.raises(RuntimeError, match="failed while answering"):
        server.stop()


def test_zone_from_json() -> None:
    zone = Zone.from_json(
        {
            "negative_ttl": 5,
            "records": [
                {"name": "j.test", "type": "MX", "value": "0 .", "ttl": 10},
                {"name": "j.test", "type": "TXT", "value": ["a", "b"]},
            ],
            "failures": [{"name": "f.test", "mode": "refused", "type": "A"}],
        }
    )
    with DnsServer(zone) as server:
        assert records(ask(server, "j.test", "MX")) == ["0 ."]
        assert records(ask(server, "j.test", "TXT")) == ['"a" "b"']
        assert ask(server, "f.test", "A").rcode() == dns.rcode.REFUSED
        assert ask(server, "none.test", "A").authority[0].ttl == 5


def test_standalone_command(tmp_path: Path) -> None:
    zone_file = tmp_path / "zone.json"
    zone_file.write_text(
        json.dumps({"records": [{"name": "cli.test", "type": "A", "value": "127.0.0.8"}]})
    )
    env = {**os.environ, "PYTHONWARNINGS": "error"}
    with subprocess.Popen(
        [sys.executable, "-m", "tayori.testing.dns_server", "--zone", str(zone_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    ) as process:
        try:
            assert process.stdout is not None
            port = int(process.stdout.readline())
            response = dns.query.udp(
                dns.message.make_query("cli.test", "A"), "127.0.0.1", timeout=TIMEOUT, port=port
            )
            assert records(response) == ["127.0.0.8"]
        finally:
            process.send_signal(signal.SIGTERM)
            _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert "Warning" not in stderr
    assert f"127.0.0.1:{port}" in stderr
