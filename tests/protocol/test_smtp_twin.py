"""A connection's protocol is a twin of a template (no reflection per connection): it must
be indistinguishable from a protocol made by aiosmtpd's `__init__`, and share no state a
session changes with the template or with other twins. Fails when a new aiosmtpd adds
per-connection state that `TayoriSmtp.twin` does not know about."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from typing import Any

import pytest

from tayori.config.settings import LimitsSettings
from tayori.servers.limits import ConnectionLimiter
from tayori.servers.smtp_session import SmtpListener, TayoriSmtp

_MUTABLE = (list, dict, set, collections.deque, bytearray)


class MxHandler:
    async def handle_RCPT(self, *args: Any) -> str:
        return "250 OK"

    async def handle_DATA(self, *args: Any) -> str:
        return "250 OK"


class SubmissionHandler(MxHandler):
    async def auth_PLAIN(self, *args: Any) -> None:
        return None

    async def auth_LOGIN(self, *args: Any) -> None:
        return None


def _listener(handler: object, login: bool) -> SmtpListener:
    return SmtpListener(
        handler,
        hostname="mx.example.test",
        limits=LimitsSettings(),
        ssl_context=None,
        limiter=ConnectionLimiter(10, 10, collections.Counter()),
        login=login,
    )


def _shape(value: Any, owner: TayoriSmtp) -> Any:
    """What must be equal between a twin and a protocol made by `__init__`: methods by
    function and by whether they are bound to their own protocol; tables by their shape;
    the stream protocol's per-connection objects by type; everything else by value."""
    if hasattr(value, "__func__"):
        return ("method", value.__func__, value.__self__ is owner)
    if isinstance(value, dict):
        return {key: _shape(item, owner) for key, item in value.items()}
    if isinstance(value, tuple) and hasattr(value, "_fields"):  # aiosmtpd's _AuthMechAttr
        return tuple(_shape(item, owner) for item in value)
    if isinstance(value, asyncio.StreamReader | asyncio.Future) or type(value).__name__ in (
        "ReferenceType",
        "deque",
    ):
        return type(value)
    return value


# Submission requires AUTH without aiosmtpd's TLS check (the handler enforces TLS, as it
# alone can tell an implicit-TLS connection); aiosmtpd warns about that for each protocol.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize(("handler", "login"), [(MxHandler(), False), (SubmissionHandler(), True)])
def test_a_twin_is_a_protocol_made_by_init(handler: object, login: bool) -> None:
    async def scenario() -> None:
        listener = _listener(handler, login)
        made: Callable[[], TayoriSmtp] = listener._new_protocol
        fresh, template = made(), made()
        twin = template.twin()
        assert set(vars(twin)) == set(vars(fresh))
        for name in vars(fresh):
            assert _shape(getattr(twin, name), twin) == _shape(getattr(fresh, name), fresh), name
        assert twin._smtp_methods["DATA"].__self__ is twin
        if login:
            assert set(twin._auth_methods) == {"LOGIN", "PLAIN"}
            assert twin._auth_methods["PLAIN"].method.__self__ is handler  # the handler's
        # Nothing a session changes is shared with the template or another twin.
        other = template.twin()
        for name, value in vars(twin).items():
            if isinstance(value, _MUTABLE) or name in ("_strong_reader", "_closed"):
                assert value is not getattr(template, name), name
                assert value is not getattr(other, name), name

    asyncio.run(scenario())


def test_the_listener_makes_its_template_again_in_another_loop() -> None:
    listener = _listener(MxHandler(), False)

    async def protocol_loop() -> tuple[object, object]:
        protocol = listener._protocol()
        return protocol.loop, asyncio.get_running_loop()

    for _ in range(2):
        used, running = asyncio.run(protocol_loop())
        assert used is running
