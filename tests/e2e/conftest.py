"""The whole service on loopback: `python -m tayori serve` in a subprocess, real sockets,
real TLS, real clients; on SQLite and on a fresh PostgreSQL database per instance."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tayori.auth.passwords import generate_password
from tayori.cli import main
from tayori.servers.tls import write_self_signed
from tayori.testing.dns_server import DnsServer, Zone
from tests.conftest import temporary_pg_database
from tests.ports import free_port

ROLES = ("smtp", "submission", "submissions", "pop3", "pop3s")
DOMAIN = "example.test"


class Instance:
    """A data dir, a config, users, and a `tayori serve` process that can be (re)started."""

    def __init__(
        self, root: Path, storage_url: str, dns: DnsServer, extra_config: str = ""
    ) -> None:
        self.root = root
        self.dns = dns
        root.mkdir(parents=True, exist_ok=True)
        self.config = root / "tayori.toml"
        self.ports = {role: free_port() for role in ROLES}
        self.cert = root / "tls" / "cert.pem"
        write_self_signed("mx.example.test", self.cert, root / "tls" / "key.pem")
        listen = "\n".join(f'{role} = "127.0.0.1:{port}"' for role, port in self.ports.items())
        disabled = ("imap", "imaps", "http")
        self.config.write_text(
            f'[server]\nhostname = "mx.example.test"\ndata_dir = "{root}"\n\n'
            f"[listen]\n{listen}\n" + "".join(f'{role} = ""\n' for role in disabled) + "\n"
            f'[storage]\nurl = "{storage_url}"\n\n'
            '[tls]\ncert = "tls/cert.pem"\nkey = "tls/key.pem"\n\n'
            f'[dns]\nnameservers = ["{dns.nameserver}"]\ntimeout = 2.0\n\n'
            "[auth]\nfailure_delay = 0.05\n" + extra_config
        )
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []
        self.passwords: dict[str, str] = {}
        self.cli("migrate")
        self.cli("domain", "add", DOMAIN)

    def cli(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """Run an admin command in this process: the same `main` as the `tayori` command,
        without a Python start-up per call (set-up runs several per test)."""
        out, err = io.StringIO(), io.StringIO()
        stdin = sys.stdin
        sys.stdin = io.StringIO(input or "")
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                code = main([*args, "--config", str(self.config)])
        finally:
            sys.stdin = stdin
        if check and code != 0:
            raise AssertionError(
                f"tayori {' '.join(args)} failed: {err.getvalue()}{out.getvalue()}"
            )
        return out.getvalue() + err.getvalue()

    def run_command(self, *args: str, input: str | None = None, check: bool = True) -> str:
        """The installed command in a subprocess, as an admin runs it."""
        result = subprocess.run(
            [sys.executable, "-m", "tayori", *args, "--config", str(self.config)],
            input=input,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"tayori {' '.join(args)} failed: {result.stderr}{result.stdout}")
        return result.stdout + result.stderr

    def add_user(self, address: str, quota: str | None = None) -> str:
        password = generate_password()
        args = ["user", "add", address, "--password-stdin"]
        if quota:
            args += ["--quota", quota]
        self.cli(*args, input=password + "\n")
        self.passwords[address] = password
        return password

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        with (self.root / "serve.log").open("a") as log:  # the child keeps its own copy
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tayori", "serve", "--config", str(self.config)],
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env=env,
            )
        assert self.process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            self.output.append(line)
            if line.strip() == "ready":
                return
        self.kill()
        raise AssertionError(f"tayori serve did not start: {self.output} {self.log()}")

    def log(self) -> str:
        path = self.root / "serve.log"
        return path.read_text()[-5000:] if path.exists() else ""

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM and wait: the graceful path."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def wait(self, timeout: float = 60) -> int:
        """Wait for the process to exit (after a signal sent elsewhere); its exit status."""
        assert self.process is not None
        code = self.process.wait(timeout)
        assert self.process.stdout is not None
        self.output += self.process.stdout.readlines()
        self.process.stdout.close()
        self.process = None
        return code

    def kill(self) -> None:
        """SIGKILL: the crash path."""
        if self.process is not None:
            self.process.kill()
            self.process.wait(30)
            if self.process.stdout:
                self.process.stdout.close()
            self.process = None

    def outcomes(self, *args: str) -> list[dict[str, object]]:
        import json

        text = self.cli("outcomes", "--json", "--limit", "10000", *args)
        return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """A storage URL for a new, empty instance on each back end."""
    if request.param == "sqlite":
        yield ""
    else:
        with temporary_pg_database("tayori_e2e") as url:
            yield url


def base_zone() -> Zone:
    """The world as the instance's DNS sees it: our domain, and a few senders' domains."""
    zone = Zone()
    for domain in (DOMAIN, "remote.test", "elsewhere.test"):
        zone.add(domain, "MX", f"10 mx.{domain}")
        zone.add(f"mx.{domain}", "A", "127.0.0.1")
    zone.add("nullmx.test", "MX", "0 .")
    # Test clients connect from 127.0.0.1: give it forward-confirmed reverse DNS, as a
    # well-run sending server has (the inbound checks of issue 3 look it up).
    zone.add("1.0.0.127.in-addr.arpa", "PTR", "mx.remote.test")
    return zone


@pytest.fixture
def dns_server() -> Iterator[DnsServer]:
    """A real DNS server on loopback answering from `base_zone()`; tests may change it."""
    with DnsServer(base_zone()) as server:
        yield server


@pytest.fixture
def make_instance(tmp_path: Path, backend: str, dns_server: DnsServer) -> Iterator[object]:
    """Factory: `make_instance(extra_config="...")` builds (not starts) an instance."""
    made: list[Instance] = []

    def factory(extra_config: str = "") -> Instance:
        instance = Instance(tmp_path / f"i{len(made)}", backend, dns_server, extra_config)
        made.append(instance)
        return instance

    yield factory
    for instance in made:
        if instance.process is not None:
            instance.kill()


@pytest.fixture
def instance(make_instance: object) -> Iterator[Instance]:
    """A started instance with alice and bob in example.test."""
    inst: Instance = make_instance()  # type: ignore[operator]
    inst.add_user("alice@example.test")
    inst.add_user("bob@example.test")
    inst.start()
    yield inst
    if inst.process is not None:
        assert inst.stop() == 0, inst.log()
