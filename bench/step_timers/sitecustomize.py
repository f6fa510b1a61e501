"""Step timers for a running MX: where a message's time goes, without a profiler's overhead.

Not part of Tayori. Python imports `sitecustomize` at start-up from PYTHONPATH, so

    TAYORI_STEP_TIMERS=1500 PYTHONPATH=bench/step_timers tayori serve --config ...

times the MX's steps in every serve process (the SMTP processes inherit the environment)
and prints, every 1500 messages, one line per process to the server's stderr: mean, p50,
p90 and p99 milliseconds of each step over the last 1500 (commits: over the commits of the
window). `bench/RESULTS.md` ("Where a message's 18 ms go") was measured with this.

The timers wrap functions by name once `tayori.app` is imported: a renamed function is
reported on stderr ("step timers: ... not found") and left out, never an error of the
server's. Timing costs a few microseconds per step; CPU time is the thread's own
(`time.thread_time`, kernel time included, so a thread's fsync counts).
"""

from __future__ import annotations

import builtins
import functools
import os
import sys
import threading
import time
from collections import defaultdict
from typing import Any

_WINDOW = int(os.environ.get("TAYORI_STEP_TIMERS", "0") or 0)

# (module, attribute path, label, kind): kind "async" / "sync" times wall clock,
# "sync+cpu" the thread's CPU time as well.
_STEPS = [
    ("tayori.servers.smtp_inbound", "InboundHandler.handle_RCPT", "RCPT", "async"),
    ("tayori.servers.smtp_inbound", "InboundHandler.handle_DATA", "DATA", "async"),
    ("tayori.pipeline.spam_block", "SpamBlock.decide", "spam score", "async"),
    ("tayori.delivery.local", "LocalDelivery._write_copies", "write copies", "sync+cpu"),
    ("tayori.storage.blobs", "FileBlobStore.put", "blob put", "sync"),
    ("tayori.storage.blobs", "_fsync_dir", "directory fsync", "sync"),
    ("tayori.delivery.committer", "DeliveryCommitter.append", "await commit", "async"),
    ("tayori.storage.engine", "_begin_immediate", "commit: lock wait", "sync"),
    ("tayori.storage.sql_store", "append_in", "commit: statements", "sync+cpu"),
    ("tayori.storage.engine", "TayoriSQLiteDialect.do_commit", "commit: COMMIT", "sync"),
]


class _Recorder:
    def __init__(self, window: int) -> None:
        self._window = window
        self._lock = threading.Lock()
        self._samples: defaultdict[str, list[float]] = defaultdict(list)

    def add(self, label: str, seconds: float) -> None:
        with self._lock:
            self._samples[label].append(seconds)
            if label == "DATA" and len(self._samples[label]) >= self._window:
                self._report()

    def _report(self) -> None:
        parts = []
        for label, values in sorted(self._samples.items()):
            ordered = sorted(values)

            def ms(share: float, ordered: list[float] = ordered) -> str:
                return f"{1000 * ordered[min(len(ordered) - 1, int(len(ordered) * share))]:.2f}"

            mean = 1000 * sum(ordered) / len(ordered)
            parts.append(
                f"{label}: n={len(ordered)} mean={mean:.2f} p50={ms(0.5)} p90={ms(0.9)} "
                f"p99={ms(0.99)}"
            )
        print(f"[step timers, pid {os.getpid()}, ms] " + " | ".join(parts), file=sys.stderr)
        self._samples.clear()


def _wrap(recorder: _Recorder, function: Any, label: str, kind: str) -> Any:
    if kind == "async":

        @functools.wraps(function)
        async def timed_async(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return await function(*args, **kwargs)
            finally:
                recorder.add(label, time.perf_counter() - start)

        return timed_async

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            recorder.add(label, time.perf_counter() - start)
            if kind == "sync+cpu":
                recorder.add(label + " (CPU)", time.thread_time() - cpu)

    return timed


def _install(recorder: _Recorder) -> None:
    import importlib

    for module_name, path, label, kind in _STEPS:
        try:
            owner: Any = importlib.import_module(module_name)
            *parents, name = path.split(".")
            for parent in parents:
                owner = getattr(owner, parent)
            setattr(owner, name, _wrap(recorder, getattr(owner, name), label, kind))
        except (ImportError, AttributeError) as error:
            print(f"step timers: {module_name}.{path} not found ({error})", file=sys.stderr)


def _install_after_app_import() -> None:
    recorder = _Recorder(_WINDOW)
    original_import = builtins.__import__
    installed = False

    def importing(name: str, *args: Any, **kwargs: Any) -> Any:
        nonlocal installed
        module = original_import(name, *args, **kwargs)
        if not installed and name == "tayori.app":
            installed = True
            builtins.__import__ = original_import
            _install(recorder)
        return module

    builtins.__import__ = importing


if _WINDOW > 0:
    _install_after_app_import()
