"""Helpers shared by the bench scripts: loopback guard, /proc readings, small statistics.

Not part of the `tayori` package and not imported by tests; the scripts import it from their
own directory (`python bench/xxx.py` puts `bench/` on sys.path).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import socket
import sys
import time
from collections.abc import Iterable, Sequence
from typing import Any

TICK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    """A clear, expected failure (bad host, server refused login...): printed without traceback."""


def log(*parts: object) -> None:
    print(f"[{time.strftime('%H:%M:%S')}]", *parts, file=sys.stderr, flush=True)


def loopback_address(host: str, port: int) -> tuple[int, str]:
    """Resolve host and insist that every address it names is loopback.

    Returns (family, address) to connect to. The bench loads a server hard: it must never be
    pointed at anything but this machine.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as error:
        raise BenchError(f"cannot resolve host {host!r}: {error}") from None
    addresses = [(family, str(sockaddr[0])) for family, _, _, _, sockaddr in infos]
    bad = [addr for _, addr in addresses if not ipaddress.ip_address(addr).is_loopback]
    if not addresses or bad:
        raise BenchError(
            f"refusing host {host!r} ({', '.join(bad) or 'no address'}): this benchmark only "
            "talks to loopback addresses (127.0.0.0/8 or ::1)"
        )
    return addresses[0]


def percentile(values: Sequence[float], fraction: float) -> float | None:
    """Nearest-rank percentile (fraction 0..1) of values; None when empty."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(fraction * len(ordered) + 0.5)))
    return ordered[rank - 1]


# --- /proc -----------------------------------------------------------------------------------


def _stat(pid: int) -> tuple[str, int, int]:
    """(comm, ppid, utime+stime+cutime+cstime ticks) of one process."""
    with open(f"/proc/{pid}/stat") as f:
        data = f.read()
    close = data.rindex(")")
    comm = data[data.index("(") + 1 : close]
    rest = data[close + 2 :].split()
    return comm, int(rest[1]), sum(int(x) for x in rest[11:15])


def proc_tree(root: int) -> list[int]:
    """PIDs of root and all its descendants (a snapshot)."""
    children: dict[int, list[int]] = {}
    alive: set[int] = set()
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            _, ppid, _ = _stat(int(name))
        except (OSError, ValueError, IndexError):
            continue
        alive.add(int(name))
        children.setdefault(ppid, []).append(int(name))
    out: list[int] = []
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in alive:
            out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids: Iterable[int]) -> float:
    """CPU seconds used so far by these processes (reaped children folded in)."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += _stat(pid)[2]
    return total / TICK


def tree_cpu_seconds(root: int | None) -> float | None:
    return None if root is None else cpu_seconds(proc_tree(root))


def mem_kib(pids: Iterable[int]) -> tuple[int, int, int]:
    """(sum RSS KiB, sum PSS KiB, processes) over pids, from /proc/PID/smaps_rollup."""
    rss = pss = count = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    if line.startswith("Rss:"):
                        rss += int(line.split()[1])
                    elif line.startswith("Pss:"):
                        pss += int(line.split()[1])
            count += 1
        except OSError:
            pass
    return rss, pss, count


def machine_busy_seconds() -> float:
    """Machine-wide busy CPU seconds (all cores) so far, from /proc/stat."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq = (
            int(x) for x in f.readline().split()[1:8]
        )
    return (user + nice + system + irq + softirq) / TICK


def wait_quiet(max_wait: float, threshold: float = 0.3) -> float:
    """Shared machine: wait (at most max_wait seconds) until machine-wide busy CPU over 0.5 s
    is below threshold cores, as the peer script does before each measured run. Returns the
    last sampled load in cores (other people's load: our servers are idle between runs)."""
    end = time.time() + max_wait
    load = 0.0
    while max_wait > 0:
        b0 = machine_busy_seconds()
        time.sleep(0.5)
        load = (machine_busy_seconds() - b0) / 0.5
        if load < threshold or time.time() >= end:
            break
    if max_wait > 0 and load >= threshold:
        log(f"machine still busy ({load:.2f} cores) after {max_wait:.0f}s, measuring anyway")
    return load


def create_accounts(config: str, pattern: str, count: int, password: str) -> int:
    """Create the accounts pattern.format(i=0..count-1) that do not exist yet in the Tayori
    instance of `config`; returns how many were created.

    Does what `tayori user add ADDRESS --quota 0` does, through Tayori's own store API in this
    process (so it needs Tayori's venv), hashing the password once: 500 `tayori user add` runs
    would take minutes.
    """
    from pathlib import Path

    from tayori.auth.passwords import hash_password
    from tayori.config.loader import load_settings
    from tayori.storage.factory import open_stores

    settings = load_settings(Path(config).resolve())
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    created = 0
    try:
        password_hash = hash_password(password)
        for i in range(count):
            address = pattern.format(i=i)
            if stores.metadata.get_account(address) is None:
                stores.metadata.add_account(address, password_hash, 0)
                created += 1
    finally:
        stores.close()
    return created


def emit(result: dict[str, Any], as_json: bool, lines: Sequence[str]) -> None:
    """Print the result: one JSON object, or human-readable lines."""
    if as_json:
        print(json.dumps(result, sort_keys=True))
    else:
        for line in lines:
            print(line)


def read_password(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.readline().rstrip("\r\n")


# --- report of a run_all.sh run ----------------------------------------------------------------


def _spread(values: Sequence[float | None]) -> tuple[float, float, float] | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    mid = len(vals) // 2
    median = vals[mid] if len(vals) % 2 else (vals[mid - 1] + vals[mid]) / 2
    return median, vals[0], vals[-1]


def _fmt(t: tuple[float, float, float] | None, digits: int = 0) -> str:
    if t is None:
        return "n/a"
    median, low, high = (f"{v:,.{digits}f}" for v in t)
    return median if low == high else f"{median} ({low}–{high})"


def _ratio(a: tuple[float, float, float] | None, b: tuple[float, float, float] | None) -> str:
    if a is None or b is None or not b[0]:
        return "n/a"
    return f"{a[0] / b[0]:.2f}×"


def _load(path: str) -> Any:
    """The JSON in path, or None (with a note on stderr) when a failed run left none."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as error:
        log(f"skipping {path}: {error}")
        return None


def render_report(out: str) -> str:
    """Markdown tables of Tayori's and the peers' figures from one run_all.sh results dir."""
    import glob
    import re

    def files(pattern: str) -> list[str]:
        return sorted(glob.glob(os.path.join(out, pattern)))

    def loaded(pattern: str) -> list[Any]:
        return [r for r in (_load(p) for p in files(pattern)) if r is not None]

    lines: list[str] = []
    w = lines.append
    if os.path.exists(os.path.join(out, "meta.txt")):
        with open(os.path.join(out, "meta.txt")) as f:
            w("```\n" + f.read().rstrip() + "\n```\n")
    peers: dict[str, Any] = {}
    pargs: dict[str, Any] = {}
    if os.path.exists(os.path.join(out, "peers.json")):
        dump = _load(os.path.join(out, "peers.json"))
        peers, pargs = dump["results"], dump["args"]
        meta = dump["meta"]
        w(
            f"Peers: Postfix {meta.get('postfix')}, Dovecot {meta.get('dovecot')}, "
            f"{pargs.get('reps')} reps. Figures are median (min–max) over reps.\n"
        )

    # SMTP
    smtp: dict[int, list[dict[str, Any]]] = {}
    for r in loaded("tayori-smtp-c*-r*.json"):
        smtp.setdefault(int(r["concurrency"]), []).append(r)
    n_peer = pargs.get("smtp_messages", 0)
    pf = {int(c): [r for r in runs if r["ok"]] for c, runs in peers.get("smtp", {}).items()}
    py = {
        key: {int(c): [r for r in runs if r["ok"]] for c, runs in by.items()}
        for key, by in peers.get("py", {}).items()
    }
    concs = sorted(set(smtp) | set(pf))
    if concs:
        w("### SMTP inbound: messages/s until the last durable `250` (higher is better)\n")
        head = "| sessions | Tayori | p50 / p99 latency ms | Tayori CPU ms/msg | Postfix+Dovecot "
        head += "in Maildir | (Postfix accepted) | P+D CPU ms/msg |"
        keys = sorted(py)
        head += "".join(f" aiosmtpd {k} |" for k in keys)
        head += " Tayori ÷ P+D | Tayori ÷ aiosmtpd |"
        w(head)
        w("|" + "---|" * (head.count("|") - 1))
        for c in concs:
            t = smtp.get(c, [])
            tay = _spread([r["msgs_per_s"] for r in t if r["ok"] == r["messages"]])
            p50 = _spread([r["latency_ms"]["p50"] for r in t])
            p99 = _spread([r["latency_ms"]["p99"] for r in t])
            tcpu = _spread([r["server_cpu_ms_per_msg"] for r in t])
            runs = pf.get(c, [])
            durable = _spread([n_peer / r["deliver_s"] for r in runs])
            accepted = _spread([n_peer / r["accept_s"] for r in runs])
            pcpu = _spread([1000 * r["server_cpu_s"] / n_peer for r in runs])
            py_rates = {
                k: _spread([n_peer / r["deliver_s"] for r in py[k].get(c, [])]) for k in keys
            }
            best_py = max(
                (v for v in py_rates.values() if v is not None), key=lambda v: v[0], default=None
            )
            row = (
                f"| {c} | {_fmt(tay)} | {_fmt(p50, 1)} / {_fmt(p99, 1)} | {_fmt(tcpu, 2)} | "
                f"{_fmt(durable)} | {_fmt(accepted)} | {_fmt(pcpu, 2)} |"
            )
            row += "".join(f" {_fmt(py_rates[k])} |" for k in keys)
            row += f" **{_ratio(tay, durable)}** | {_ratio(tay, best_py)} |"
            w(row)
            bad = [r for r in t if r["ok"] != r["messages"]]
            if bad:
                w(f"| {c} | incomplete Tayori runs: {len(bad)} (refusals/errors) |")
        checked: dict[int, list[dict[str, Any]]] = {}
        for r in loaded("tayori-smtpchecks-c*-r*.json"):
            checked.setdefault(int(r["concurrency"]), []).append(r)
        if checked:
            w(
                "\nTayori with its inbound checks on (FCrDNS, HELO, sender domain, SPF, DKIM, "
                "DMARC; answers from a loopback DNS server) — the peers run no such checks:\n"
            )
            w("| sessions | Tayori msg/s | p50 / p99 ms | CPU ms/msg | ÷ P+D | refused |")
            w("|---|---|---|---|---|---|")
            for c in sorted(checked):
                t = checked[c]
                rate = _spread([r["msgs_per_s"] for r in t if r["ok"] == r["messages"]])
                p50 = _spread([r["latency_ms"]["p50"] for r in t])
                p99 = _spread([r["latency_ms"]["p99"] for r in t])
                durable = _spread([n_peer / r["deliver_s"] for r in pf.get(c, [])])
                refused = sum(r["refused_total"] + r["errors_total"] for r in t)
                w(
                    f"| {c} | {_fmt(rate)} | {_fmt(p50, 1)} / {_fmt(p99, 1)} | "
                    f"{_fmt(_spread([r['server_cpu_ms_per_msg'] for r in t]), 2)} | "
                    f"{_ratio(rate, durable)} | {refused} |"
                )
        src = loaded("tayori-smtpsource-c*-r*.json")
        for c in sorted({int(r["concurrency"]) for r in src}):
            rr = [r for r in src if int(r["concurrency"]) == c]
            rate = _spread(
                [r["delivered"] / r["seconds"] for r in rr if r["delivered"] == r["messages"]]
            )
            peer = _spread([n_peer / r["deliver_s"] for r in pf.get(c, [])])
            w(
                f"\nCross-check with the peers' own load tool: `smtp-source -s {c}` (1 message per "
                f"connection) against Tayori: {_fmt(rate)} msg/s "
                f"({', '.join(str(r['delivered']) + '/' + str(r['messages']) for r in rr)} "
                f"delivered); Postfix+Dovecot at {c}: {_fmt(peer)}."
            )
        w("")

    # POP3
    pop = loaded("tayori-pop3-r*.json")
    if pop or "pop3" in peers:
        w("### POP3 download (USER/PASS, STAT, RETR 1..N, QUIT; bare socket client)\n")
        w("| server, session | messages | msg/s | MB/s | server CPU s |")
        w("|---|---|---|---|---|")
        for k in (0, 1):
            ss = [r["sessions"][k] for r in pop if len(r["sessions"]) > k]
            if ss:
                w(
                    f"| Tayori, session {k + 1} after delivery | {ss[0]['n']} | "
                    f"{_fmt(_spread([s['msgs_per_s'] for s in ss]))} | "
                    f"{_fmt(_spread([s['mb_per_s'] for s in ss]), 1)} | "
                    f"{_fmt(_spread([s['server_cpu_s'] for s in ss]), 2)} |"
                )
        labels = (
            ("warm_raw", "Dovecot, bare socket client (3rd session)"),
            ("cold_poplib", "Dovecot, poplib (1st session)"),
            ("warm_poplib", "Dovecot, poplib (2nd session)"),
        )
        for key, label in labels:
            rr = [r for r in peers.get("pop3", {}).get(key, []) if r["ok"]]
            if rr:
                w(
                    f"| {label} | {rr[0]['n']} | {_fmt(_spread([r['n'] / r['wall'] for r in rr]))}"
                    f" | {_fmt(_spread([r['bytes'] / 1e6 / r['wall'] for r in rr]), 1)} | "
                    f"{_fmt(_spread([r['server_cpu'] for r in rr]), 2)} |"
                )
        best = _spread([max(s["msgs_per_s"] for s in r["sessions"]) for r in pop if r["sessions"]])
        dove = _spread(
            [r["n"] / r["wall"] for r in peers.get("pop3", {}).get("warm_raw", []) if r["ok"]]
        )
        w(f"\nTayori (faster session) ÷ Dovecot (bare client): **{_ratio(best, dove)}**")
        fills = _spread([r["fill"]["msgs_per_s"] for r in pop if r.get("fill")])
        w(f"Tayori mailbox filled over SMTP at {_fmt(fills)} msg/s (10 sessions, 1 account).\n")

    # memory
    mem = loaded("tayori-mem-r*.json")
    if mem or "mem" in peers:
        w("### Memory per idle connection (PSS delta of the server's process tree)\n")
        w("| server, state | connections | PSS KiB/conn | RSS KiB/conn | processes/conn |")
        w("|---|---|---|---|---|")
        if mem:
            w(
                f"| Tayori pop3, USER+PASS (one process) | {mem[0]['connections']} | "
                f"**{_fmt(_spread([m['pss_kib_per_conn'] for m in mem]), 1)}** | "
                f"{_fmt(_spread([m['rss_kib_per_conn'] for m in mem]), 1)} | 0 |"
            )
        for label, runs in peers.get("mem", {}).items():
            w(
                f"| {label} | {runs[0]['k'] if runs else '?'} | "
                f"{_fmt(_spread([r['pss_kb'] for r in runs]), 1)} | "
                f"{_fmt(_spread([r['rss_kb'] for r in runs]), 1)} | "
                f"{_fmt(_spread([r['procs'] for r in runs]), 2)} |"
            )
        w("")

    if "fsync" in peers:
        w("### Disk fsync rate (peers' measurement, same run)\n")
        w("| pattern | ops/s |")
        w("|---|---|")
        for label, rates in peers["fsync"]["rates"].items():
            w(f"| {label} | {_fmt(_spread(rates))} |")
        w("")
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "report":
        print(render_report(sys.argv[2]))
    else:
        print("usage: python bench/_common.py report RESULTS_DIR", file=sys.stderr)
        sys.exit(2)
