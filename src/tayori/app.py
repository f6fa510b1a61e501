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

from tayori.auth.authenticator import Authenticator
from tayori.auth.throttle import LoginThrottle
from tayori.config.settings import HostPort, Settings
from tayori.delivery.attempts import SystemClock
from tayori.delivery.bounces import BounceRouter
from tayori.delivery.committer import DeliveryCommitter
from tayori.delivery.dkim_signing import DkimSigner
from tayori.delivery.local import LocalDelivery
from tayori.delivery.queue_runner import QueueRunner
from tayori.delivery.submission import SubmissionDelivery
from tayori.dns.resolver import DnsPythonResolver
from tayori.pipeline.inbound import InboundPipeline
from tayori.pipeline.member_rules import MemberRules
from tayori.pipeline.spam_block import SpamBlock
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.pop3 import Pop3Server
from tayori.servers.smtp_inbound import InboundHandler
from tayori.servers.smtp_session import SmtpListener
from tayori.servers.smtp_submission import SubmissionHandler
from tayori.servers.tls import server_context
from tayori.spam import SpamEngine
from tayori.storage.factory import Stores, open_stores

log = logging.getLogger("tayori")

SHUTDOWN_GRACE = 30.0

# Listeners the configuration knows that later versions serve; said so at start-up, never
# silently skipped.
NOT_YET = ("imap", "imaps", "http")


@dataclass
class Service:
    """Every role of one `tayori serve` process, started and stopped together."""

    settings: Settings
    stores: Stores | None = None
    committer: DeliveryCommitter | None = None
    smtp: list[SmtpListener] = field(default_factory=list)
    pop3: list[Pop3Server] = field(default_factory=list)
    runner: QueueRunner | None = None
    listening: list[tuple[str, str]] = field(default_factory=list)

    def tls_context(self) -> ssl.SSLContext | None:
        tls = self.settings.tls
        if tls.cert is None or tls.key is None:
            return None
        return server_context(tls.cert, tls.key)

    async def start(self) -> None:
        settings = self.settings
        stores = self.stores = open_stores(settings.storage.url, settings.server.data_dir)
        hostname = settings.server.hostname
        context = self.tls_context()
        shared_total: Counter[str] = Counter()

        def limiter() -> ConnectionLimiter:
            limits = settings.limits
            return ConnectionLimiter(
                limits.max_connections, limits.max_connections_per_ip, shared_total
            )

        self.committer = DeliveryCommitter(stores.metadata)
        self.committer.start()
        listen = settings.listen
        local = LocalDelivery(stores.metadata, stores.blobs, self.committer, hostname)
        resolver = DnsPythonResolver(settings.dns)
        if listen.smtp is not None:
            own_names = frozenset({hostname.lower(), listen.smtp.host})
            member_rules = MemberRules(stores.rules)
            pipeline = InboundPipeline(
                resolver,
                settings.inbound,
                own_names,
                dns_timeout=settings.dns.timeout,
                # Reject rules first: a refused or Junk-ruled sender is not scored.
                recipient_steps=[member_rules, SpamBlock(SpamEngine(stores.spam), stores.rules)],
            )
            handler = InboundHandler(
                stores.metadata,
                local,
                settings.limits,
                pipeline,
                authserv_id=hostname,
                member_rules=member_rules,
            )
            smtp = SmtpListener(
                handler,
                hostname=hostname,
                limits=settings.limits,
                ssl_context=context,
                limiter=limiter(),
            )
            self.smtp.append(smtp)
            await self._listen("smtp", listen.smtp, smtp.start)

        # One authenticator, so POP3 and SMTP AUTH share the brute-force counters.
        authenticator = Authenticator(stores.metadata, LoginThrottle(settings.auth), settings.auth)
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
            ),
            settings.submission,
            settings.limits,
            settings.auth,
        )
        lifetime = timedelta(seconds=settings.outbound.max_lifetime)
        bounces = BounceRouter(
            stores.metadata, local, stores.blobs, stores.queue, hostname, lifetime, self._wake
        )
        self.runner = QueueRunner(
            stores.queue,
            stores.blobs,
            resolver,
            settings.outbound,
            hostname,
            bounces,
            SystemClock(),
        )
        await self.runner.start()
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

    def _wake(self) -> None:
        """Something was queued: deliver now rather than at the next poll."""
        if self.runner is not None:
            self.runner.wake()

    async def _listen(
        self, role: str, address: HostPort, start: Callable[[str, int], Awaitable[asyncio.Server]]
    ) -> None:
        server = await start(address.host, address.port)
        for sock in server.sockets:
            host, port = sock.getsockname()[:2]
            self.listening.append((role, str(HostPort(host, port))))

    async def stop(self, grace: float = SHUTDOWN_GRACE) -> None:
        """Stop accepting, let messages in flight finish, commit, then close the stores."""
        closing = [server.close() for server in self.pop3]
        closing += [listener.close(grace) for listener in self.smtp]
        await asyncio.gather(*closing, return_exceptions=True)
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


def serve(settings: Settings) -> int:
    """Run every enabled listener until SIGTERM or SIGINT; returns the exit status."""
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # aiosmtpd's per-command chatter and alembic's schema check are not news to an admin.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    logging.getLogger("alembic").setLevel(logging.WARNING)
    _install_uvloop()
    return asyncio.run(_run(settings))
