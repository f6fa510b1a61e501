"""Connection limits shared by the listeners: overall and per client address."""

from __future__ import annotations

import ipaddress
from collections import Counter


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


class ConnectionLimiter:
    """Counts open connections; `acquire` says no when a limit would be passed.

    One limiter per listener for the per-IP count, sharing the overall total through
    `shared_total` so that one protocol cannot starve the others of the global budget.
    """

    def __init__(self, max_total: int, max_per_ip: int, shared_total: Counter[str] | None = None):
        self.max_total = max_total
        self.max_per_ip = max_per_ip
        self._total = shared_total if shared_total is not None else Counter()
        self._per_ip: Counter[str] = Counter()

    def acquire(self, ip: str) -> bool:
        if self._total["all"] >= self.max_total or self._per_ip[ip] >= self.max_per_ip:
            return False
        self._total["all"] += 1
        self._per_ip[ip] += 1
        return True

    def release(self, ip: str) -> None:
        self._total["all"] -= 1
        self._per_ip[ip] -= 1
        if self._per_ip[ip] <= 0:
            del self._per_ip[ip]

    @property
    def open_connections(self) -> int:
        return self._total["all"]
