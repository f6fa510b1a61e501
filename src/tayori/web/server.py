"""Serving the web app inside `tayori serve`'s event loop with uvicorn.

uvicorn normally owns the process (signals, loop); here it is one listener among the SMTP
and POP3 ones, so its signal capture is switched off (the service handles SIGTERM and stops
every listener in order) and the socket is bound by us, so that the printed address is the
real one (port 0 included).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator

import uvicorn

from tayori.web.app import create_app
from tayori.web.context import WebContext

log = logging.getLogger(__name__)
SWEEP_EVERY = 600.0
"""Seconds between removals of expired sessions (an expired one is refused anyway)."""


class _EmbeddedServer(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY on accepted connections only when
    # the listening socket says it is TCP; without it every response waits ~40 ms for the
    # client's delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


class WebServer:
    """The webmail listener: start, the bound sockets, stop."""

    def __init__(self, context: WebContext) -> None:
        self.context = context
        self.app = create_app(context)
        self.sockets: list[socket.socket] = []
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._sweeper: asyncio.Task[None] | None = None

    async def start(self, host: str, port: int) -> None:
        self.sockets = [_bind(host, port)]
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            proxy_headers=False,  # [web] trusted_proxies decides, in tayori.web.security
            server_header=False,
            timeout_graceful_shutdown=10,
        )
        self._server = _EmbeddedServer(config)
        self._task = asyncio.create_task(self._server.serve(sockets=self.sockets))
        while not self._server.started:
            if self._task.done():
                self._task.result()  # raises what stopped it
                raise OSError("the web server stopped while starting")
            await asyncio.sleep(0.01)
        self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_EVERY)
            try:
                await self.app.state.sessions.sweep()
            except Exception:
                log.exception("could not remove expired web sessions")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
        for sock in self.sockets:
            sock.close()
