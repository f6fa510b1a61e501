#!/usr/bin/env python3
"""POP3 download benchmark: one session, USER/PASS, STAT, RETR 1..N, QUIT; loopback only.

The client is the peer benchmark's bare socket client (`pop3_raw` in
../shared/bench/peers_bench.py): one RETR at a time, read until CRLF.CRLF, no line parsing,
so the figure is the server's speed, not poplib's. Bytes counted are whole RETR responses
(status line, dot-stuffed message, terminator), as the peer script counts them.

Fill the mailbox first, either here with --fill (delivers --messages messages over SMTP with
smtp_inbound.py's client, then downloads) or separately:

    python bench/smtp_inbound.py --port 21025 --messages 5000 --concurrency 10 \
        --rcpt bench@example.test
    python bench/pop3_retr.py --port 21110 --user bench@example.test \
        --password-file pw.txt --messages 5000 --sessions 2

Besides the whole session (login included, as the peer script measures it), each session
reports the RETR loop alone: its rate, and with --server-pid the server's CPU per RETR. The
login costs a fixed ~0.1-0.2 s of server CPU (the argon2 password check and the maildrop
listing), which at a few thousand messages is a good part of the session.

Exit status: 0 when every session downloaded the expected number of messages, 1 otherwise,
2 on bad usage or a server that refuses the login.
"""

from __future__ import annotations

import argparse
import socket
import sys
import time
from typing import Any

from _common import (
    BenchError,
    emit,
    log,
    loopback_address,
    machine_busy_seconds,
    read_password,
    tree_cpu_seconds,
    wait_quiet,
)

TERMINATOR = b"\r\n.\r\n"


class RawPop3:
    """Blocking, minimal POP3 client with a hard deadline on every read."""

    def __init__(self, addr: tuple[int, str], port: int, deadline: float) -> None:
        family, host = addr
        self.deadline = deadline
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(max(1.0, min(60.0, deadline - time.perf_counter())))
        self.sock.connect((host, port))
        self.buf = bytearray()

    def _until(self, marker: bytes, start: int = 0) -> int:
        while True:
            i = self.buf.find(marker, start)
            if i >= 0:
                return i
            if time.perf_counter() > self.deadline:
                raise TimeoutError("POP3 download hit its time bound")
            start = max(0, len(self.buf) - len(marker) + 1)
            chunk = self.sock.recv(262144)
            if not chunk:
                raise ConnectionError("server closed the connection")
            self.buf += chunk

    def command(self, line: bytes | None, multi: bool = False) -> tuple[bytes, int]:
        """Send line (None: just read the greeting); returns (status line, response bytes)."""
        if line is not None:
            self.sock.sendall(line + b"\r\n")
        i = self._until(b"\r\n")
        first = bytes(self.buf[:i])
        if not first.startswith(b"+OK"):
            del self.buf[: i + 2]
            raise BenchError(f"POP3 {(line or b'greeting').split()[0].decode()}: {first!r}")
        if not multi:
            del self.buf[: i + 2]
            return first, i + 2
        # An empty message body makes the terminator follow the status line's CRLF directly.
        j = self._until(TERMINATOR, i)
        size = j + len(TERMINATOR)
        del self.buf[:size]
        return first, size

    def close(self) -> None:
        self.sock.close()


def download(
    addr: tuple[int, str],
    port: int,
    user: str,
    password: str,
    limit: int,
    timeout: float,
    server_pid: int | None,
) -> dict[str, Any]:
    busy0 = machine_busy_seconds()
    client0 = time.process_time()
    server0 = tree_cpu_seconds(server_pid)
    t0 = time.perf_counter()
    pop = RawPop3(addr, port, t0 + timeout)
    try:
        pop.command(None)
        pop.command(b"USER " + user.encode())
        pop.command(b"PASS " + password.encode())
        t_login = time.perf_counter()
        server_login = tree_cpu_seconds(server_pid)
        first, _ = pop.command(b"STAT")
        count = int(first.split()[1])
        n = min(count, limit) if limit else count
        total = 0
        for i in range(1, n + 1):
            _, size = pop.command(b"RETR %d" % i, multi=True)
            total += size
        t_retr = time.perf_counter()
        server_retr = tree_cpu_seconds(server_pid)
        pop.command(b"QUIT")
    finally:
        pop.close()
    t1 = time.perf_counter()
    server1 = tree_cpu_seconds(server_pid)
    client = time.process_time() - client0
    server = None if server0 is None or server1 is None else server1 - server0
    # The login (a password hash, ~0.1-0.2 s of CPU) is a fixed cost per session; the RETR
    # loop alone shows the per-message cost the download rate depends on.
    retr_cpu = None if server_login is None or server_retr is None else server_retr - server_login
    wall = t1 - t0
    foreign = max(0.0, machine_busy_seconds() - busy0 - client - (server or 0.0)) / wall
    return {
        "mailbox": count,
        "n": n,
        "bytes": total,
        "wall_s": wall,
        "login_s": t_login - t0,
        "retr_s": t_retr - t_login,
        "msgs_per_s": n / wall,
        "retr_msgs_per_s": n / (t_retr - t_login) if t_retr > t_login else 0.0,
        "server_retr_cpu_s": retr_cpu,
        "server_us_per_retr": None if retr_cpu is None or not n else retr_cpu / n * 1e6,
        "mb_per_s": total / 1e6 / wall,
        "client_cpu_s": client,
        "server_cpu_s": server,
        "other_load_cores": foreign,
    }


def fill(args: argparse.Namespace) -> dict[str, Any]:
    import smtp_inbound

    smtp_args = argparse.Namespace(
        host=args.host,
        port=args.smtp_port,
        messages=args.messages,
        concurrency=args.fill_concurrency,
        size=args.size,
        rcpt=args.user,
        rcpt_count=1,
        sender="sender@client.bench.test",
        helo="client.bench.test",
        per_connection=0,
        no_pipelining=False,
        timeout=args.timeout,
        server_pid=None,
        loop=smtp_inbound.default_loop(),
        quiet_wait=0.0,
        quiet_threshold=0.3,
    )
    log(f"filling {args.user} with {args.messages} x {args.size} B over SMTP port {args.smtp_port}")
    r = smtp_inbound.deliver(smtp_args)
    if r["ok"] != args.messages:
        raise BenchError(f"fill delivered {r['ok']}/{args.messages}: {r['refused']} {r['errors']}")
    log(f"filled at {r['msgs_per_s']:.0f} msg/s")
    return r


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--host", default="127.0.0.1", help="loopback only (default %(default)s)")
    ap.add_argument("--port", type=int, required=True, help="POP3 port")
    ap.add_argument("--user", required=True)
    ap.add_argument("--password-file", required=True, help="first line is the password")
    ap.add_argument(
        "--messages", type=int, default=0, help="RETR 1..N (0 = the whole mailbox from STAT)"
    )
    ap.add_argument(
        "--expect", type=int, default=None, help="fail unless STAT shows this many (default N)"
    )
    ap.add_argument("--sessions", type=int, default=1, help="download this many times in a row")
    ap.add_argument("--fill", action="store_true", help="first deliver --messages over SMTP")
    ap.add_argument("--smtp-port", type=int, default=None, help="SMTP port for --fill")
    ap.add_argument("--size", type=int, default=5271, help="message size for --fill")
    ap.add_argument("--fill-concurrency", type=int, default=10)
    ap.add_argument("--timeout", type=float, default=300.0, help="bound per session, seconds")
    ap.add_argument("--server-pid", type=int, default=None, help="report this tree's CPU")
    ap.add_argument(
        "--quiet-wait",
        type=float,
        default=0.0,
        help="before each session wait up to this many seconds for a quiet machine",
    )
    ap.add_argument("--quiet-threshold", type=float, default=0.3, help="busy cores deemed quiet")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.fill and (not args.smtp_port or not args.messages):
        ap.error("--fill needs --smtp-port and --messages")
    expect = args.expect if args.expect is not None else (args.messages or None)
    try:
        addr = loopback_address(args.host, args.port)
        password = read_password(args.password_file)
        filled = fill(args) if args.fill else None
        runs = []
        for k in range(args.sessions):
            wait_quiet(args.quiet_wait, args.quiet_threshold)
            r = download(
                addr, args.port, args.user, password, args.messages, args.timeout, args.server_pid
            )
            r["ok"] = expect is None or (r["mailbox"] >= expect and r["n"] == expect)
            runs.append(r)
            log(
                f"session {k + 1}: {r['n']} msgs {r['bytes'] / 1e6:.1f} MB in {r['wall_s']:.2f}s"
                f" = {r['msgs_per_s']:.0f} msg/s {r['mb_per_s']:.1f} MB/s"
            )
    except (BenchError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    result = {
        "host": args.host,
        "port": args.port,
        "user": args.user,
        "fill": filled,
        "sessions": runs,
    }
    lines = [f"POP3 {args.host}:{args.port} {args.user}"]
    for k, r in enumerate(runs, 1):
        server = "" if r["server_cpu_s"] is None else f", server CPU {r['server_cpu_s']:.2f}s"
        if r["server_us_per_retr"] is not None:
            server += f" ({r['server_us_per_retr']:.0f} us per RETR)"
        lines.append(
            f"  session {k}: {r['n']}/{r['mailbox']} msgs, {r['bytes'] / 1e6:.1f} MB in "
            f"{r['wall_s']:.2f}s (login {r['login_s'] * 1000:.0f} ms) = "
            f"{r['msgs_per_s']:.0f} msg/s (RETR loop {r['retr_msgs_per_s']:.0f}), "
            f"{r['mb_per_s']:.1f} MB/s; client CPU "
            f"{r['client_cpu_s']:.2f}s{server}; other load {r['other_load_cores']:.2f} cores"
        )
    emit(result, args.json, lines)
    return 0 if all(r["ok"] for r in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
