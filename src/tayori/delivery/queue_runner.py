"""The outbound delivery worker: claims due messages from the shared queue, delivers them to
their next hops, records one outcome per attempt and recipient, and sends the reports (DSN).

Flow of one claimed message (any node may run this; a claim is a lease in the store):

1. Recipients due now are grouped by domain; each domain's route is resolved (`routes`).
   Null MX and non-existent domains fail at once; DNS failures defer. Admin bounce
   requests (`tayori queue bounce`) fail at once too.
2. Recipients of one message for one destination travel in one transaction (up to
   `MAX_RCPT_PER_TRANSACTION`). Transactions queue per destination, served by at most
   `concurrency_per_destination` connections, each reused for message after message.
3. Per recipient, the remote reply decides: `2xx` delivered (`remote.delivered`), `5xx`
   bounced (`remote.rejected`), anything else, or no answer, deferred (`remote.deferred`).
4. When all of a message's transactions are done, `attempts.AttemptRecorder` schedules the
   retries, expires and bounces, sends the reports, and stores states and outcomes with
   `record_attempts` in one transaction, which also ends the lease.

At-least-once window: a recipient is marked delivered when step 5 commits, after the remote
server's `250`. A crash (or a lease running out, or `stop` giving up after its grace) in
between leaves the recipient queued; the next claim delivers it again, so the remote
recipient may get a duplicate. The same holds for reports: the DSN is handed to the
`BounceSender` before step 5, so a crash there may send it twice, never zero times. Nothing
narrower is possible without the remote server's help; the window is one database commit
long in normal operation, and the lease is chosen well above the time a delivery can take.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import secrets
import socket
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from tayori.config.settings import OutboundSettings
from tayori.delivery.attempts import (
    AttemptRecorder,
    AttemptResult,
    Clock,
    Kind,
    SystemClock,
    abandoned,
    retry_delay,
)
from tayori.delivery.dsn import BounceSender
from tayori.delivery.routes import Route, RouteFailure, resolve_route
from tayori.delivery.smtp_client import (
    ConnectFailure,
    ConnectionLost,
    SmtpConnection,
    client_tls_context,
    open_connection,
)
from tayori.dns.resolver import Resolver
from tayori.storage.interfaces import BlobStore, QueueStore
from tayori.storage.records import QueuedRecipient, QueueEntry, RecipientState

__all__ = ["MAX_RCPT_PER_TRANSACTION", "Clock", "QueueRunner", "SystemClock", "retry_delay"]

log = logging.getLogger(__name__)

MAX_RCPT_PER_TRANSACTION = 100
"""RFC 5321 §4.5.3.1.8: servers must take at least 100 recipients per transaction."""
MESSAGES_PER_CONNECTION = 5
"""Another connection to a destination opens (up to its concurrency limit) only when more
than this many transactions per open connection are waiting: a few messages share one
connection, a burst spreads over several."""


class ForwardResults(Protocol):
    """Forwarded copies' results as the member reads them (issue 3, `delivery.forwarding`):
    `relabel` names them before they are recorded, `recorded` counts them afterwards."""

    def relabel(self, entry: QueueEntry, results: dict[int, AttemptResult]) -> None: ...

    async def recorded(self, entry: QueueEntry, results: Mapping[int, AttemptResult]) -> None: ...


@dataclass(eq=False)
class _Claim:
    """A leased message while its transactions run."""

    entry: QueueEntry
    holder: str
    lease_until: datetime
    pending: int = 0
    results: dict[int, AttemptResult] = field(default_factory=dict)
    skipped: set[int] = field(default_factory=set)
    """Recipients due but not attempted (shutdown, lease too short): left as they were."""
    body: bytes | None = None
    body_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass(eq=False)
class _Job:
    """One transaction: a message to some of its recipients, all for one destination."""

    claim: _Claim
    recipients: list[QueuedRecipient]


@dataclass(eq=False)
class _Destination:
    route: Route
    jobs: collections.deque[_Job] = field(default_factory=collections.deque)
    workers: int = 0
    connected: int = 0


class QueueRunner:
    """Delivers the outbound queue. `start`/`stop` run it in the background; `run_once`
    does one claim-deliver-record round and returns when it is recorded (tests, CLI)."""

    def __init__(
        self,
        queue: QueueStore,
        blobs: BlobStore,
        resolver: Resolver,
        settings: OutboundSettings,
        hostname: str,
        bounce: BounceSender,
        clock: Clock,
        *,
        batch: int = 50,
        max_in_flight: int = 500,
        poll_interval: float = 5.0,
        lease: timedelta | None = None,
        tls: ssl.SSLContext | None = None,
        forwarding: ForwardResults | None = None,
    ) -> None:
        self._forwarding = forwarding
        self._queue = queue
        self._blobs = blobs
        self._resolver = resolver
        self._settings = settings
        hostname = hostname or socket.getfqdn()  # EHLO needs a name ([server] hostname)
        self._hostname = hostname
        self._clock = clock
        self._batch = batch
        self._max_in_flight = max_in_flight
        self._poll_interval = poll_interval
        worst = settings.connect_timeout + settings.command_timeout * 6
        self._lease = lease or timedelta(seconds=max(1800.0, 2 * worst))
        self._tls = tls if tls is not None else client_tls_context()
        self._recorder = AttemptRecorder(queue, blobs, settings, hostname, bounce, clock)
        self._holder_prefix = f"{hostname}:{os.getpid()}:{secrets.token_hex(4)}"
        self._claims_made = 0
        self._claims: set[_Claim] = set()
        self._destinations: dict[str, _Destination] = {}
        self._workers: set[asyncio.Task[None]] = set()
        self._finishing: set[asyncio.Task[None]] = set()
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # --- running ---------------------------------------------------------------------

    async def start(self) -> None:
        """Deliver in the background until `stop`."""
        if self._loop_task is not None:
            raise RuntimeError("queue runner already started")
        self._stopping = False
        self._loop_task = asyncio.get_running_loop().create_task(self._run(), name="queue")

    def wake(self) -> None:
        """Look for due messages now rather than at the next poll (after an enqueue)."""
        self._wake.set()

    async def stop(self, grace: float = 30.0) -> None:
        """Stop claiming; transactions in progress finish (up to `grace` seconds, then they
        are cut off); transactions not started are left queued. Every claim is recorded or
        released before this returns, so nothing is lost and another node (or the next
        start) carries on at once."""
        self._stopping = True
        self._wake.set()
        if self._loop_task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        workers = set(self._workers)
        if workers:
            _done, late = await asyncio.wait(workers, timeout=grace)
            for task in late:
                task.cancel()
            await asyncio.gather(*late, return_exceptions=True)
        for claim in list(self._claims):
            if claim.pending == 0 and not claim.done.is_set():
                self._finish_soon(claim)
        if self._finishing:
            await asyncio.gather(*set(self._finishing), return_exceptions=True)

    async def run_once(self) -> int:
        """Claim what is due now (one batch), deliver it, record it; the number of messages
        claimed."""
        claims = await self._claim(self._batch)
        await self._dispatch(claims)
        await asyncio.gather(*(claim.done.wait() for claim in claims))
        return len(claims)

    async def _run(self) -> None:
        while not self._stopping:
            room = self._max_in_flight - len(self._claims)
            claims: list[_Claim] = []
            if room > 0:
                try:
                    claims = await self._claim(min(self._batch, room))
                except Exception:
                    log.exception("queue: claiming due messages failed; trying again later")
                try:
                    await self._dispatch(claims)
                except Exception:
                    log.exception("queue: dispatching failed; the claims are released")
                    for claim in claims:
                        if claim.pending == 0 and not claim.done.is_set():
                            claim.results.clear()
                            self._finish_soon(claim)
            if self._stopping:
                break
            if claims and len(claims) == min(self._batch, room):
                continue  # more may be due
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll_interval):
                    await self._wake.wait()

    async def _claim(self, limit: int) -> list[_Claim]:
        now = self._clock.now()
        lease_until = now + self._lease
        self._claims_made += 1
        holder = f"{self._holder_prefix}:{self._claims_made}"
        entries = await asyncio.to_thread(self._queue.claim_due, now, holder, lease_until, limit)
        claims = [_Claim(entry, holder, lease_until) for entry in entries]
        self._claims.update(claims)
        return claims

    # --- dispatching -----------------------------------------------------------------

    async def _dispatch(self, claims: Sequence[_Claim]) -> None:
        now = self._clock.now()
        routes: dict[str, asyncio.Task[Route | RouteFailure]] = {}
        plans: list[tuple[_Claim, dict[str, list[QueuedRecipient]]]] = []
        for claim in claims:
            by_domain: dict[str, list[QueuedRecipient]] = {}
            for recipient in claim.entry.recipients:
                if recipient.state is not RecipientState.QUEUED:
                    continue
                if recipient.bounce_requested:
                    claim.results[recipient.id] = abandoned(recipient)
                elif recipient.next_attempt <= now:
                    by_domain.setdefault(recipient.domain.lower(), []).append(recipient)
            for domain in by_domain:
                if domain not in routes:
                    routes[domain] = asyncio.ensure_future(
                        resolve_route(domain, self._resolver, self._settings)
                    )
            plans.append((claim, by_domain))
        if routes:
            await asyncio.gather(*routes.values(), return_exceptions=True)
        for claim, by_domain in plans:
            jobs: list[tuple[Route, _Job]] = []
            for domain, recipients in by_domain.items():
                route = _route_result(routes[domain], domain)
                if isinstance(route, RouteFailure):
                    kind = Kind.FAILED if route.permanent else Kind.DEFERRED
                    for recipient in recipients:
                        claim.results[recipient.id] = AttemptResult(
                            kind, route.reason, route.reply, local=True
                        )
                    continue
                for start in range(0, len(recipients), MAX_RCPT_PER_TRANSACTION):
                    chunk = recipients[start : start + MAX_RCPT_PER_TRANSACTION]
                    jobs.append((route, _Job(claim, chunk)))
            claim.pending = len(jobs)
            if not jobs:
                self._finish_soon(claim)
            for route, job in jobs:
                self._enqueue_job(route, job)

    def _enqueue_job(self, route: Route, job: _Job) -> None:
        destination = self._destinations.get(route.destination)
        if destination is None:
            destination = self._destinations[route.destination] = _Destination(route)
        destination.jobs.append(job)
        limit = max(1, self._settings.concurrency_per_destination)
        waiting = len(destination.jobs)
        if destination.workers < limit and waiting > destination.workers * MESSAGES_PER_CONNECTION:
            destination.workers += 1
            task = asyncio.get_running_loop().create_task(
                self._worker(destination), name=f"deliver {route.destination}"
            )
            self._workers.add(task)
            task.add_done_callback(self._workers.discard)

    # --- delivering --------------------------------------------------------------------

    async def _worker(self, destination: _Destination) -> None:
        connection: SmtpConnection | None = None
        job: _Job | None = None
        try:
            while destination.jobs and not self._stopping:
                job = destination.jobs.popleft()
                if not self._time_left(job):
                    self._job_done(job, None)
                    job = None
                    continue
                if connection is not None and not connection.usable:
                    await connection.close()
                    connection = None
                    destination.connected -= 1
                if connection is None:
                    opened = await self._open(destination)
                    if isinstance(opened, ConnectFailure):
                        self._unreachable(destination, job, opened)
                        job = None
                        continue
                    connection = opened
                    destination.connected += 1
                self._job_done(job, await self._transact(connection, job))
                job = None
        finally:
            if job is not None:  # cut off by stop(): not recorded, left queued
                self._job_done(job, None)
            destination.workers -= 1
            if self._stopping:
                for left in list(destination.jobs):
                    self._job_done(left, None)
                destination.jobs.clear()
            if connection is not None:
                destination.connected -= 1
                if asyncio.current_task() is not None and _cancelling():
                    connection.client.close()
                else:
                    await connection.close()
            if destination.workers == 0 and not destination.jobs:
                self._destinations.pop(destination.route.destination, None)

    def _time_left(self, job: _Job) -> bool:
        """Start a transaction only if it can end well inside the lease: otherwise another
        node might claim the message meanwhile and deliver it a second time. The budget is
        a connection's set-up and a transaction's commands each taking their full timeout
        (per-recipient waits beyond that are not counted: servers answer RCPT quickly)."""
        settings = self._settings
        budget = timedelta(seconds=settings.connect_timeout + settings.command_timeout * 5)
        budget = min(budget, self._lease / 2)
        return self._clock.now() + budget <= job.claim.lease_until

    async def _open(self, destination: _Destination) -> SmtpConnection | ConnectFailure:
        settings = self._settings
        return await open_connection(
            destination.route.hops,
            self._hostname,
            connect_timeout=settings.connect_timeout,
            command_timeout=settings.command_timeout,
            tls=self._tls,
        )

    def _unreachable(self, destination: _Destination, job: _Job, failure: ConnectFailure) -> None:
        """Defer this transaction; when no connection to the destination is up, the others
        waiting for it too, rather than have each wait out the same timeouts."""
        host = failure.hop.host if failure.hop else ""
        address = failure.hop.address if failure.hop else ""
        result = AttemptResult(
            Kind.DEFERRED, "remote.deferred", failure.reply, host, address, local=True
        )
        jobs = [job]
        if destination.connected == 0:
            jobs += list(destination.jobs)
            destination.jobs.clear()
        for each in jobs:
            self._job_done(each, dict.fromkeys((r.id for r in each.recipients), result))

    async def _transact(self, connection: SmtpConnection, job: _Job) -> dict[int, AttemptResult]:
        hop = connection.hop
        try:
            body = await self._body(job.claim)
        except Exception as error:
            log.error("queue %s: cannot read the message: %s", job.claim.entry.queue_id, error)
            reply = "451 4.3.0 Local error: the queued message could not be read"
            failed = AttemptResult(Kind.DEFERRED, "remote.deferred", reply, local=True)
            return {r.id: failed for r in job.recipients}
        addresses = [r.recipient for r in job.recipients]
        try:
            replies = await connection.send(job.claim.entry.sender, addresses, body)
        except ConnectionLost as lost:
            result = AttemptResult(
                Kind.DEFERRED,
                "remote.deferred",
                lost.reply,
                hop.host,
                hop.address,
                connection.tls_version,
                local=not lost.reply.startswith("421"),
            )
            return {r.id: result for r in job.recipients}
        results: dict[int, AttemptResult] = {}
        for recipient in job.recipients:
            reply = replies[recipient.recipient]
            local = reply.startswith(("554 5.6.3 Conversion", "553 5.6.7 Non-ASCII"))
            kind, code = _classify(reply)
            results[recipient.id] = AttemptResult(
                kind, code, reply, hop.host, hop.address, connection.tls_version, local
            )
        return results

    async def _body(self, claim: _Claim) -> bytes:
        async with claim.body_lock:
            if claim.body is None:
                claim.body = await asyncio.to_thread(_read_blob, self._blobs, claim.entry.blob_ref)
            return claim.body

    def _job_done(self, job: _Job, results: dict[int, AttemptResult] | None) -> None:
        claim = job.claim
        if results is None:
            claim.skipped.update(r.id for r in job.recipients)
        else:
            claim.results.update(results)
        claim.pending -= 1
        if claim.pending == 0:
            self._finish_soon(claim)

    def _finish_soon(self, claim: _Claim) -> None:
        task = asyncio.get_running_loop().create_task(self._finish(claim))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    # --- recording ---------------------------------------------------------------------

    async def _finish(self, claim: _Claim) -> None:
        try:
            if self._forwarding is not None:
                self._forwarding.relabel(claim.entry, claim.results)
            await self._recorder.record(claim.entry, claim.holder, claim.results, claim.skipped)
            if self._forwarding is not None:
                await self._forwarding.recorded(claim.entry, claim.results)
        except Exception:
            log.exception("queue %s: recording the attempt failed", claim.entry.queue_id)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._queue.release, claim.entry.id, claim.holder)
        finally:
            self._claims.discard(claim)
            claim.done.set()


def _classify(reply: str) -> tuple[Kind, str]:
    if reply.startswith("2"):
        return Kind.DELIVERED, "remote.delivered"
    if reply.startswith("5"):
        return Kind.FAILED, "remote.rejected"
    return Kind.DEFERRED, "remote.deferred"


def _route_result(task: asyncio.Task[Route | RouteFailure], domain: str) -> Route | RouteFailure:
    error = task.exception()
    if error is None:
        return task.result()
    log.error("queue: resolving %s failed: %r", domain, error)
    return RouteFailure(
        domain, False, "remote.deferred", "451 4.4.3 Host or domain name lookup failed"
    )


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _read_blob(blobs: BlobStore, ref: str) -> bytes:
    with blobs.open(ref) as stream:
        return stream.read()
