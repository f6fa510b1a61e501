"""Loopback ports for the servers tests start, safe when pytest-xdist runs several workers.

A port found by binding port 0 and closing the socket is only a guess: until our server binds
it, the kernel may hand the same port to another test process (xdist workers run side by side)
or to an outgoing connection. So ports come from below the kernel's ephemeral range, where the
kernel never picks one by itself, and each worker owns its own slice of that region: two
workers of one run never meet, and the bind probe skips anything another program holds. Within
a process a port is never handed out twice (CI once saw `listen.pop3` and `listen.submissions`
get the same port from two successive port-0 binds).
"""

from __future__ import annotations

import os
import random
import socket
from pathlib import Path

_LOWEST = 10_000
_HANDED_OUT: set[tuple[str, int]] = set()


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32_768


def _worker_slice() -> range | None:
    """This process's ports: its share of [_LOWEST, ephemeral low); None when there is no
    room below the ephemeral range (then port 0 binds are the fallback)."""
    high = _ephemeral_low()
    if high - _LOWEST < 1_000:
        return None
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(worker[2:]) if worker.startswith("gw") and worker[2:].isdigit() else 0
    width = (high - _LOWEST) // count
    start = _LOWEST + (index % count) * width
    return range(start, start + width)


def _bind(host: str, port: int) -> int | None:
    """The port `host:port` could be bound to (port 0: the kernel's pick), else None."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return None
        return int(sock.getsockname()[1])


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on `host` that nothing listens on and this process never handed out."""
    ports = _worker_slice()
    if ports is None:
        while True:
            port = _bind(host, 0)
            if port is None:
                raise RuntimeError(f"cannot bind a TCP port on {host}")
            if (host, port) not in _HANDED_OUT:
                _HANDED_OUT.add((host, port))
                return port
    # A random start keeps two separate test runs on one machine (two clones) apart too.
    offset = random.randrange(len(ports))
    for step in range(len(ports)):
        port = ports[(offset + step) % len(ports)]
        if (host, port) not in _HANDED_OUT and _bind(host, port) is not None:
            _HANDED_OUT.add((host, port))
            return port
    raise RuntimeError(f"no free port left in {ports} on {host}")
