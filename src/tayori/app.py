"""The composition root: the one place that builds concrete objects from the settings.

Everything below takes its collaborators as arguments; only this module knows that the
metadata store is SQL, that blobs are files or rows, and which listeners a node runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import ssl
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from tayori.auth.authenticator import Authenticator
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import HostPort, Settings, SpamEngineKind
from tayori.core.offload import Offload, in_thread, inline
from tayori.core.outcome import utcnow
from tayori.delivery.attempts import SystemClock
from tayori.delivery.bounces import BounceRouter
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.dkim_signing import DkimSigner
from tayori.delivery.forwarding import Forwarder
from tayori.delivery.local import LocalDelivery
from tayori.delivery.queue_runner import QueueRunner
from tayori.delivery.retention import run_periodically as purge_junk_periodically
from tayori.delivery.submission import SubmissionDelivery
from tayori.diagnostics.history import HistoryJanitor
from tayori.dns.resolver import DnsPythonResolver, Resolver
from tayori.pipeline.inbound import InboundPipeline
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.spam_block import SpamBlock
from tayori.rules.srs import load_or_create_key
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.mx_workers import (
    MxDispatcher,
    MxWorkers,
    WorkerLink,
    WorkerStartError,
    listening_sockets,
)
from tayori.servers.pop3 import Pop3Server
from tayori.servers.smtp_inbound import InboundHandler
from tayori.servers.smtp_session import SmtpListener
from tayori.servers.smtp_submission import SubmissionHandler
from tayori.servers.tls import server_context
from tayori.spam import SpamEngine
from tayori.spam.rspamd import RspamdSpamEngine
from tayori.storage.blobs import FileBlobStore
from tayori.storage.factory import Stores, open_stores
from tayori.storage.sweep import run_periodically as sweep_orphans_periodically

if TYPE_CHECKING:
    from tayori.web.server import WebServer

log = logging.getLogger("tayori")

SHUTDOWN_GRACE = 30.0

# Listeners the configuration knows that later versions serve; said so at start-up, never
# silently skipped.
NOT_YET = ("imap", "imaps")


def spam_engine(settings: Settings, stores: Stores) -> SpamEngine:
    """The engine `[spam] engine` names: the built-in classifier, or rspamd with the built-in
    one behind it for when rspamd does not answer (tayori.spam.rspamd)."""
    spam = settings.spam
    if spam.engine is SpamEngineKind.RSPAMD:
        return RspamdSpamEngine(
            stores.spam,
            url=spam.rspamd_url,
            timeout=spam.rspamd_timeout,
            password=spam.rspamd_password,
        )
    return SpamEngine(stores.spam)


def local_delivery(stores: Stores, committer: DeliveryCommitter, hostname: str) -> LocalDelivery:
    """Members' copies: message files are written by the group committer's thread (one
    thread hop per message, not two); blobs in PostgreSQL in worker threads, each a network
    write (`tayori.delivery.local`)."""
    return LocalDelivery(
        stores.metadata,
        stores.blobs,
        committer,
        hostname,
        copies_in_committer=isinstance(stores.blobs, FileBlobStore),
        reads=store_reads(stores),
    )


def store_reads(stores: Stores) -> Offload:
    """Where hot-path store reads run: inline on the event loop for SQLite, whose reads are
    cheaper than a thread hop, in a worker thread for PostgreSQL (`tayori.core.offload`)."""
    return inline if stores.local_reads else in_thread


def inbound_pipeline(
    settings: Settings, stores: Stores, resolver: Resolver, engine: SpamEngine | None = None
) -> tuple[InboundPipeline, MemberRules]:
    """The MX pipeline as `serve` runs it; `tayori trace --from/--to` runs the same one
    without delivering, so what it reports is what would happen. `engine`: the process's
    spam engine, shared with the webmail's "this is spam" (one model cache per process)."""
    listen = settings.listen
    hostname = settings.server.hostname
    own_names = frozenset({hostname.lower(), *([listen.smtp.host] if listen.smtp else [])})
    reads = store_reads(stores)
    engine = engine or spam_engine(settings, stores)
    # rspamd answers over HTTP: never on the loop, whatever the store.
    scoring = in_thread if isinstance(engine, RspamdSpamEngine) else reads
    member_rules = MemberRules(stores.rules, reads)
    pipeline = InboundPipeline(
        resolver,
        settings.inbound,
        own_names,
        dns_timeout=settings.dns.timeout,
        # Reject rules first: a refused or Junk-ruled sender is not scored.
        recipient_steps=[
            member_rules,
            SpamBlock(engine, stores.rules, member_rules, scoring=scoring, reads=reads),
        ],
    )
    return pipeline, member_rules


def forwarder_for(
    settings: Settings, stores: Stores, local: LocalDelivery, wake: Callable[[], None]
) -> Forwarder:
    """Forwarding (issue 3): copies through the queue, SRS with the shared key file."""
    return Forwarder(
        stores.metadata,
        local,
        stores.blobs,
        stores.queue,
        stores.rules,
        load_or_create_key(settings.server.data_dir),
        settings.server.hostname,
        timedelta(seconds=settings.outbound.max_lifetime),
        wake,
    )


def mx_listener(
    settings: Settings,
    stores: Stores,
    local: LocalDelivery,
    resolver: Resolver,
    forwarder: Forwarder,
    limiter: ConnectionLimiter,
    context: ssl.SSLContext | None,
    engine: SpamEngine | None = None,
) -> SmtpListener:
    """The inbound SMTP (MX) role, the same in the main process and in MX workers."""
    pipeline, member_rules = inbound_pipeline(settings, stores, resolver, engine)
    handler = InboundHandler(
        stores.metadata,
        local,
        settings.limits,
        pipeline,
        authserv_id=settings.server.hostname,
        member_rules=member_rules,
        forwarder=forwarder,
        reads=store_reads(stores),
    )
    return SmtpListener(
        handler,
        hostname=settings.server.hostname,
        limits=settings.limits,
        ssl_context=context,
        limiter=limiter,
    )


def tls_context(settings: Settings) -> ssl.SSLContext | None:
    tls = settings.tls
    if tls.cert is None or tls.key is None:
        return None
    return server_context(tls.cert, tls.key)


@dataclass
class Service:
    """Every role of one `tayori serve` process, started and stopped together."""

    settings: Settings
    stores: Stores | None = None
    committer: DeliveryCommitter | None = None
    smtp: list[SmtpListener] = field(default_factory=list)
    pop3: list[Pop3Server] = field(default_factory=list)
    runner: QueueRunner | None = None
    web: WebServer | None = None
    janitor: HistoryJanitor | None = None
    listening: list[tuple[str, str]] = field(default_factory=list)
    mx_workers: MxWorkers | None = None
    mx_dispatcher: MxDispatcher | None = None
    background: list[asyncio.Task[None]] = field(default_factory=list)
    """Periodic maintenance (Junk retention, issue 3), cancelled at stop."""

    async def start(self) -> None:
        settings = self.settings
        stores = self.stores = open_stores(settings.storage.url, settings.server.data_dir)
        hostname = settings.server.hostname
        context = tls_context(settings)
        shared_total: Counter[str] = Counter()

        def limiter() -> ConnectionLimiter:
            limits = settings.limits
            return ConnectionLimiter(
                limits.max_connections, limits.max_connections_per_ip, shared_total
            )

        self.committer = DeliveryCommitter(stores.metadata)
        self.committer.start()
        listen = settings.listen
        local = local_delivery(stores, self.committer, hostname)
        resolver = DnsPythonResolver(settings.dns)
        forwarder = forwarder_for(settings, stores, local, self._wake)
        engine = spam_engine(settings, stores)
        if listen.smtp is not None:
            smtp = mx_listener(
                settings, stores, local, resolver, forwarder, limiter(), context, engine
            )
            self.smtp.append(smtp)
            processes = settings.server.smtp_processes
            if processes > 1 and settings.source is None:
                log.warning("smtp_processes = %d ignored: no config file to start them", processes)
            if processes > 1 and settings.source is not None:
                sockets = listening_sockets(listen.smtp.host, listen.smtp.port)
                self.mx_workers = MxWorkers(processes - 1, settings.source, self._wake)
                self.mx_dispatcher = MxDispatcher(sockets, smtp, self.mx_workers)
                await self.mx_workers.start()
                self.mx_dispatcher.start()
                for sock in sockets:
                    host, port = sock.getsockname()[:2]
                    self.listening.append(("smtp", str(HostPort(host, port))))
            else:
                await self._listen("smtp", listen.smtp, smtp.start)

        # One authenticator, so POP3 and SMTP AUTH share the brute-force counters.
        authenticator = Authenticator(
            stores.metadata, LoginThrottle(settings.auth), settings.auth, member=stores.member
        )
        submission = SubmissionHandler(
            stores.metadata,
            stores.queue,
            authenticator,
            resolver,
            SubmissionDelivery(
                local,
                stores.blobs,
                stores.queue,
                DkimSigner(stores.queue),
                hostname,
                timedelta(seconds=settings.outbound.max_lifetime),
                self._wake,
                forwarder=forwarder,  # members sending to members who forward (issue 3)
            ),
            settings.submission,
            settings.limits,
            settings.auth,
            member_rules=MemberRules(stores.rules, store_reads(stores)),
        )
        lifetime = timedelta(seconds=settings.outbound.max_lifetime)
        bounces = BounceRouter(
            stores.metadata,
            local,
            stores.blobs,
            stores.queue,
            hostname,
            lifetime,
            self._wake,
            original_sender=forwarder.original_sender,
            forwarder=forwarder,
        )
        self.runner = QueueRunner(
            stores.queue,
            stores.blobs,
            resolver,
            settings.outbound,
            hostname,
            bounces,
            SystemClock(),
            forwarding=forwarder,
        )
        await self.runner.start()
        self.background.append(
            asyncio.get_running_loop().create_task(
                purge_junk_periodically(
                    stores.metadata, stores.blobs, settings.spam.junk_retention_days
                ),
                name="junk retention",
            )
        )
        # Daily: bytes a crash left without a message (tayori.storage.sweep says why it is safe).
        self.background.append(
            asyncio.get_running_loop().create_task(
                sweep_orphans_periodically(settings.storage.url, stores.blobs),
                name="orphan sweep",
            )
        )
        self.janitor = HistoryJanitor(stores.metadata, settings.history.retention_days, utcnow)
        self.janitor.start()
        for role, address, implicit in (
            ("submission", listen.submission, False),
            ("submissions", listen.submissions, True),
        ):
            if address is None:
                continue
            if implicit and context is None:
                log.warning("%s not started: no TLS certificate configured ([tls] cert, key)", role)
                continue
            listener = SmtpListener(
                submission,
                hostname=hostname,
                limits=settings.limits,
                ssl_context=context,
                limiter=limiter(),
                login=True,
                implicit_tls=implicit,
            )
            self.smtp.append(listener)
            await self._listen(role, address, listener.start)
        for role, address, implicit in (
            ("pop3", listen.pop3, False),
            ("pop3s", listen.pop3s, True),
        ):
            if address is None:
                continue
            if implicit and context is None:
                log.warning("%s not started: no TLS certificate configured ([tls] cert, key)", role)
                continue
            server = Pop3Server(
                metadata=stores.metadata,
                blobs=stores.blobs,
                authenticator=authenticator,
                limits=settings.limits,
                auth_settings=settings.auth,
                hostname=hostname,
                ssl_context=context,
                implicit_tls=implicit,
                limiter=limiter(),
            )
            self.pop3.append(server)
            await self._listen(role, address, server.start)
        if listen.http is not None:
            # Imported here: a node without the web role never loads FastAPI and Jinja2.
            from tayori.web.context import WebContext
            from tayori.web.server import WebServer

            web = WebServer(
                WebContext(
                    settings=settings,
                    stores=stores,
                    authenticator=authenticator,
                    submission=submission,
                    spam_engine=engine,
                    # Language, time zone and display name from the member's settings.
                    preferences=stores.member.get_preferences,
                )
            )
            await web.start(listen.http.host, listen.http.port)
            self.web = web
            for sock in web.sockets:
                host, port = sock.getsockname()[:2]
                self.listening.append(("http", str(HostPort(host, port))))

    def _wake(self) -> None:
        """Something was queued: deliver now rather than at the next poll."""
        if self.runner is not None:
            self.runner.wake()

    async def _listen(
        self, role: str, address: HostPort, start: Callable[[str, int], Awaitable[asyncio.Server]]
    ) -> None:
        self._record_listening(role, await start(address.host, address.port))

    def _record_listening(self, role: str, server: asyncio.Server) -> None:
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            self.listening.append((role, str(HostPort(host, port))))

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let messages in flight finish, commit, then close the stores."""
        if self.mx_dispatcher is not None:
            await self.mx_dispatcher.close()
        closing = [server.close() for server in self.pop3]
        if self.web is not None:
            closing.append(self.web.stop())
        closing += [listener.close(grace) for listener in self.smtp]
        if self.mx_workers is not None:
            closing.append(self.mx_workers.stop(grace))
        await asyncio.gather(*closing, return_exceptions=True)
        if self.janitor is not None:
            await self.janitor.stop()
        for task in self.background:
            task.cancel()
        await asyncio.gather(*self.background, return_exceptions=True)
        if self.runner is not None:  # after the listeners: nothing new gets queued now
            await self.runner.stop(grace)
        if self.committer is not None:
            await asyncio.to_thread(self.committer.stop)
        if self.stores is not None:
            self.stores.close()


def _install_uvloop() -> None:
    with contextlib.suppress(ImportError):
        import uvloop

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


async def _run(settings: Settings) -> int:
    service = Service(settings)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    try:
        await service.start()
    except OSError as error:
        print(f"error: cannot listen: {error}", file=sys.stderr)
        await service.stop(grace=0)
        return 1
    except WorkerStartError as error:
        print(f"error: {error}", file=sys.stderr)
        await service.stop(grace=0)
        return 1
    print(f"Tayori serving {settings.server.hostname} (data in {settings.server.data_dir})")
    for role, address in service.listening:
        print(f"  {role:<12} {address}")
    for role in NOT_YET:
        if getattr(settings.listen, role) is not None:
            print(f"  {role:<12} configured, but not part of this version yet")
    print("ready", flush=True)
    await stop.wait()
    print("stopping: finishing messages in flight", flush=True)
    await service.stop()
    print("stopped", flush=True)
    return 0


async def _run_mx_worker(settings: Settings, link: WorkerLink) -> int:
    """An MX worker process (`[server] smtp_processes`): inbound SMTP sessions the main
    process hands over, with its own store connections and group committer, until SIGTERM
    or until the main process is gone."""
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    committer = DeliveryCommitter(stores.metadata)
    committer.start()
    local = local_delivery(stores, committer, settings.server.hostname)
    resolver = DnsPythonResolver(settings.dns)
    limits = settings.limits
    listener = mx_listener(
        settings,
        stores,
        local,
        resolver,
        forwarder_for(settings, stores, local, link.wake),
        ConnectionLimiter(limits.max_connections, limits.max_connections_per_ip, Counter()),
        tls_context(settings),
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    listener.notify_closed(link.session_ended)
    serving = loop.create_task(link.serve(listener.take_connection))
    serving.add_done_callback(lambda _: stop.set())  # the main process is gone
    try:
        link.ready()
        await stop.wait()
        serving.cancel()
        await listener.close(SHUTDOWN_GRACE)
    finally:
        serving.cancel()
        await asyncio.to_thread(committer.stop)
        stores.close()
    return 0


def serve(settings: Settings) -> int:
    """Run every enabled listener until SIGTERM or SIGINT; returns the exit status. An MX
    worker process (`[server] smtp_processes`) runs the same command and ends up here too."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd's per-command chatter and alembic's schema check are not news to an admin.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _install_uvloop()
    link = WorkerLink.from_environment()
    if link is not None:
        return asyncio.run(_run_mx_worker(settings, link))
    return asyncio.run(_run(settings))
