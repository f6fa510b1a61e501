"""`[server] smtp_processes = 2`: a worker process receives MX mail beside the main one, on
the same address; every message arrives exactly once; SIGTERM stops both; a worker whose
main process is killed goes away and frees the port."""

from __future__ import annotations

import os
import signal
import smtplib
import threading
import time
from pathlib import Path

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.mail import pop3_download, strip_trace
from tests.e2e.test_sending import ThreadedSink, eventually

pytestmark = [pytest.mark.e2e]

CONNECTIONS = 12
PER_CONNECTION = 5


def _two_processes(make_instance: object) -> Instance:
    instance: Instance = make_instance()  # type: ignore[operator]
    text = instance.config.read_text()
    instance.config.write_text(text.replace("[server]\n", "[server]\nsmtp_processes = 2\n", 1))
    instance.add_user("alice@example.test")
    instance.start()
    return instance


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses: the ppid follows the last ")".
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime


def _message(connection: int, n: int) -> bytes:
    token = f"p{connection}-m{n}"
    return (
        f"From: s@remote.test\r\nMessage-ID: <{token}@remote.test>\r\nSubject: {token}\r\n\r\n"
        + f"body of {token}\r\n" * 20
    ).encode()


def _deliver(port: int) -> list[str]:
    errors: list[str] = []

    def one_connection(connection: int) -> None:
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
                for n in range(PER_CONNECTION):
                    smtp.sendmail("s@remote.test", ["alice@example.test"], _message(connection, n))
        except (OSError, smtplib.SMTPException) as error:
            errors.append(f"{connection}: {error!r}")

    threads = [threading.Thread(target=one_connection, args=(c,)) for c in range(CONNECTIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)
    return errors


def test_worker_process_receives_mail_and_stops_with_the_main_one(
    make_instance: object,
) -> None:
    instance = _two_processes(make_instance)
    assert instance.process is not None
    workers = _children(instance.process.pid)
    assert len(workers) == 1, f"expected one MX worker process, found {workers}"
    worker = workers[0]
    before = _cpu_ticks(worker)

    assert _deliver(instance.ports["smtp"]) == []
    # The kernel spread the 12 connections over both processes (SO_REUSEPORT): the worker
    # did real work (all 12 landing on one process has a chance of 1 in 2,048).
    assert _cpu_ticks(worker) - before > 0, "the worker process received no mail"

    stored = pop3_download(
        instance.ports["pop3"], "alice@example.test", instance.passwords["alice@example.test"]
    )
    tokens = sorted(
        strip_trace(message).split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
        for message in stored
    )
    expected = sorted(f"p{c}-m{n}" for c in range(CONNECTIONS) for n in range(PER_CONNECTION))
    assert tokens == expected
    assert all(strip_trace(m) == _message(*_numbers(strip_trace(m))) for m in stored)
    delivered = [o for o in instance.outcomes() if o["reason"] == "delivered"]
    assert len(delivered) == CONNECTIONS * PER_CONNECTION

    assert instance.stop() == 0
    _gone(worker)


def test_worker_leaves_when_the_main_process_is_killed(make_instance: object) -> None:
    instance = _two_processes(make_instance)
    assert instance.process is not None
    (worker,) = _children(instance.process.pid)
    instance.kill()
    _gone(worker)
    # The port is free again: a new start (with its own worker) serves mail.
    instance.start()
    assert _deliver(instance.ports["smtp"]) == []
    assert instance.stop() == 0


def test_mail_forwarded_by_a_worker_goes_out_through_the_main_process(
    make_instance: object,
) -> None:
    """A worker queues forwarded copies in the shared store; the main process's queue runner
    (woken over the line, or at its next poll) delivers them."""
    threaded = ThreadedSink()
    try:
        sink = threaded.sink
        instance: Instance = make_instance()  # type: ignore[operator]
        text = instance.config.read_text()
        instance.config.write_text(text.replace("[server]\n", "[server]\nsmtp_processes = 2\n", 1))
        with instance.config.open("a") as config:
            config.write(f"\n[outbound]\nport = {sink.port}\n")
        instance.add_user("alice@example.test")
        instance.cli("forward", "add", "alice@example.test", "friend@elsewhere.test")
        instance.start()
        assert _deliver(instance.ports["smtp"]) == []
        total = CONNECTIONS * PER_CONNECTION
        eventually(lambda: len(sink.transactions) == total, "every forwarded copy at the sink")
        subjects = sorted(
            t.data.split(b"Subject: ", 1)[1].split(b"\r\n", 1)[0].decode()
            for t in sink.transactions
        )
        assert subjects == sorted(
            f"p{c}-m{n}" for c in range(CONNECTIONS) for n in range(PER_CONNECTION)
        )
        assert all(t.rcpt_tos == ("friend@elsewhere.test",) for t in sink.transactions)
        assert instance.stop() == 0
    finally:
        threaded.close()


def _numbers(message: bytes) -> tuple[int, int]:
    token = message.split(b"Subject: p", 1)[1].split(b"\r\n", 1)[0].decode()
    connection, n = token.split("-m")
    return int(connection), int(n)


def _gone(pid: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        # A zombie (exited, not yet reaped by its killed parent's reaper) counts as gone.
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return
        except OSError:
            return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    pytest.fail(f"worker process {pid} still running {timeout:.0f} s later")
