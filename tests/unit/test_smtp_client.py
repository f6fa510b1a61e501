"""The outbound SMTP client on loopback: PIPELINING (RFC 2920) when offered and one command
at a time otherwise, per-recipient replies in the server's exact words, multi-line replies,
dot-stuffing on the wire, 421, drops and timeouts.

Two servers play the remote side: `Peer`, a scripted server on asyncio streams that records
each read exactly as it arrived (commands in one read were sent before any was answered)
and can answer byte by byte; and the test kit's `SmtpSink` (aiosmtpd), with STARTTLS.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

import pytest

from tayori.delivery.routes import Hop
from tayori.delivery.smtp_client import (
    ConnectFailure,
    ConnectionLost,
    SmtpConnection,
    client_tls_context,
    open_connection,
)
from tayori.testing.smtp_sink import SmtpSink
from tests.unit.test_queue_runner import World

MESSAGE = b"From: a@local.test\r\nSubject: hi\r\n\r\nbody\r\n"
SILENT = ""
"""An answer that is never given (the server hangs)."""

DEFAULTS: dict[str, str | None] = {
    "GREETING": "220 peer.test ESMTP",
    "EHLO": "250-peer.test\r\n250-PIPELINING\r\n250-8BITMIME\r\n250 ENHANCEDSTATUSCODES",
    "HELO": "250 peer.test",
    "MAIL": "250 2.1.0 Ok",
    "RCPT": "250 2.1.5 Ok",
    "DATA": "354 End data with <CR><LF>.<CR><LF>",
    ".": "250 2.0.0 Ok: queued as 1234",
    "RSET": "250 2.0.0 Ok",
    "QUIT": "221 2.0.0 Bye",
}


class Peer:
    """A scripted SMTP server on 127.0.0.1 for one connection at a time.

    `answers` per verb (`"."` is the end of the message; `None` closes the connection
    instead of answering, `SILENT` never answers), `rcpt` per address. All answers due for
    one read go back in one write, or one byte at a time with `trickle`."""

    def __init__(
        self,
        *,
        pipelining: bool = True,
        trickle: bool = False,
        after_message: str | None = None,
        **answers: str | None,
    ) -> None:
        self.answers = dict(DEFAULTS)
        if not pipelining:
            self.answers["EHLO"] = "250-peer.test\r\n250 8BITMIME"
        self.answers.update({("." if k == "END" else k): v for k, v in answers.items()})
        self.rcpt: dict[str, str | None] = {}
        self.trickle = trickle
        self.after_message = after_message
        self.reads: list[bytes] = []
        self.commands: list[str] = []
        self.messages: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def __aenter__(self) -> Peer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._tasks)
        await self._server.wait_closed()

    @property
    def hop(self) -> Hop:
        return Hop("peer.test", "127.0.0.1", self.port)

    def command_reads(self) -> list[bytes]:
        """Reads that carried commands (not the message after DATA)."""
        return [read for read in self.reads if not read.startswith(b"From:")]

    def _answer(self, line: str) -> str | None:
        verb = line.split(" ", 1)[0].split(":", 1)[0].upper()
        if verb == "RCPT":
            address = line.partition("<")[2].rstrip(">")
            if address in self.rcpt:
                return self.rcpt[address]
        return self.answers.get(verb, "500 5.5.2 unknown command")

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        try:
            await self._converse(reader, writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._tasks.discard(task)

    async def _converse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        greeting = self.answers["GREETING"]
        assert greeting is not None
        await self._send(writer, [greeting])
        if not greeting.startswith("2"):
            return
        buffer, message, in_data = b"", b"", False
        while chunk := await reader.read(65536):
            self.reads.append(chunk)
            buffer += chunk
            out: list[str] = []
            while b"\n" in buffer:
                raw, buffer = buffer.split(b"\n", 1)
                if in_data:
                    if raw != b".\r":
                        message += raw + b"\n"
                        continue
                    in_data = False
                    self.messages.append(message)
                    answer = self.answers["."]
                    if answer is not None and self.after_message is not None:
                        out.append(answer)
                        answer = self.after_message
                else:
                    line = raw.rstrip(b"\r").decode(errors="replace")
                    self.commands.append(line)
                    answer = self._answer(line)
                    if line.upper() == "DATA" and answer is not None and answer.startswith("354"):
                        in_data, message = True, b""
                if answer is None:
                    await self._send(writer, out)
                    return
                if answer != SILENT:
                    out.append(answer)
            await self._send(writer, out)
            if self.after_message is not None and self.messages:
                return

    async def _send(self, writer: asyncio.StreamWriter, answers: Sequence[str]) -> None:
        data = b"".join(answer.encode() + b"\r\n" for answer in answers)
        if not self.trickle:
            writer.write(data)
            await writer.drain()
            return
        for i in range(len(data)):
            writer.write(data[i : i + 1])
            await writer.drain()
            await asyncio.sleep(0.001)


async def connect(hop: Hop, *, timeout: float = 5.0, tls: bool = False) -> SmtpConnection:
    opened = await open_connection(
        [hop],
        "client.test",
        connect_timeout=timeout,
        command_timeout=timeout,
        tls=client_tls_context() if tls else None,
    )
    assert isinstance(opened, SmtpConnection), opened
    return opened


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(scenario())


RECIPIENTS = ["one@remote.test", "two@remote.test", "three@remote.test"]


# --- pipelining ---------------------------------------------------------------------------


def test_mail_rcpts_and_data_go_in_one_write() -> None:
    async def scenario() -> None:
        async with Peer() as peer:
            connection = await connect(peer.hop)
            assert connection.pipelining
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert replies == dict.fromkeys(RECIPIENTS, "250 2.0.0 Ok: queued as 1234")
        group = (
            b"MAIL FROM:<a@local.test>\r\n"
            + b"".join(b"RCPT TO:<%s>\r\n" % r.encode() for r in RECIPIENTS)
            + b"DATA\r\n"
        )
        assert group in peer.reads, peer.reads
        assert peer.messages == [MESSAGE]
        assert peer.commands[-1] == "QUIT"

    run(scenario)


@pytest.mark.parametrize("trickle", [False, True], ids=["one-segment", "byte-by-byte"])
def test_each_recipient_gets_its_own_reply_in_the_servers_words(trickle: bool) -> None:
    async def scenario() -> None:
        async with Peer(trickle=trickle) as peer:
            peer.rcpt["two@remote.test"] = (
                "550-5.1.1 <two@remote.test>: Recipient address rejected:\r\n"
                "550 5.1.1 User unknown in virtual mailbox table"
            )
            peer.rcpt["three@remote.test"] = "450 4.2.1 <three@remote.test>: mailbox busy"
            connection = await connect(peer.hop)
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert replies == {
            "one@remote.test": "250 2.0.0 Ok: queued as 1234",
            "two@remote.test": (
                "550 5.1.1 <two@remote.test>: Recipient address rejected: "
                "5.1.1 User unknown in virtual mailbox table"
            ),
            "three@remote.test": "450 4.2.1 <three@remote.test>: mailbox busy",
        }
        assert peer.messages == [MESSAGE]

    run(scenario)


def test_a_refused_mail_answers_every_recipient_and_the_connection_carries_on() -> None:
    async def scenario() -> None:
        refusal = "553 5.7.1 <a@local.test>: Sender address rejected: not owned"
        async with Peer(MAIL=refusal) as peer:
            peer.answers["RCPT"] = "503 5.5.1 Error: need MAIL command"
            peer.answers["DATA"] = "503 5.5.1 Error: need RCPT command"
            connection = await connect(peer.hop)
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            assert replies == dict.fromkeys(RECIPIENTS, refusal)
            assert connection.usable
            assert peer.commands[-1] == "RSET"
            peer.answers.update(DEFAULTS)
            again = await connection.send("a@local.test", RECIPIENTS[:1], MESSAGE)
            await connection.close()
        assert again == {"one@remote.test": "250 2.0.0 Ok: queued as 1234"}
        assert peer.messages == [MESSAGE]
        assert peer.commands.count("EHLO client.test") == 1, "one connection for both"

    run(scenario)


def test_no_recipient_accepted_but_data_accepted_gets_an_empty_message() -> None:
    """RFC 2920 3.1: the client must look at DATA's reply too; a 354 gets a lone dot."""

    async def scenario() -> None:
        async with Peer(RCPT="550 5.1.1 unknown", END="554 5.5.1 no valid recipients") as peer:
            connection = await connect(peer.hop)
            replies = await connection.send("a@local.test", RECIPIENTS[:2], MESSAGE)
            assert replies == dict.fromkeys(RECIPIENTS[:2], "550 5.1.1 unknown")
            assert peer.messages == [b""]
            assert connection.usable
            await connection.close()
        assert peer.commands[-2:] == ["RSET", "QUIT"]

    run(scenario)


def test_a_refused_data_applies_to_the_accepted_recipients() -> None:
    async def scenario() -> None:
        async with Peer(DATA="554 5.7.1 blocked due to poor reputation") as peer:
            peer.rcpt["two@remote.test"] = "550 5.1.1 unknown"
            connection = await connect(peer.hop)
            replies = await connection.send("a@local.test", RECIPIENTS[:2], MESSAGE)
            await connection.close()
        assert replies == {
            "one@remote.test": "554 5.7.1 blocked due to poor reputation",
            "two@remote.test": "550 5.1.1 unknown",
        }
        assert peer.messages == []
        assert peer.commands[-2:] == ["RSET", "QUIT"]

    run(scenario)


def test_without_pipelining_one_command_at_a_time() -> None:
    async def scenario() -> None:
        async with Peer(pipelining=False) as peer:
            peer.rcpt["two@remote.test"] = "550 5.1.1 unknown"
            connection = await connect(peer.hop)
            assert not connection.pipelining
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert replies["two@remote.test"] == "550 5.1.1 unknown"
        assert replies["one@remote.test"] == "250 2.0.0 Ok: queued as 1234"
        reads = peer.command_reads()
        assert all(read.count(b"\r\n") == 1 for read in reads), reads
        assert [read.split(b":")[0].split(b" ")[0].strip() for read in reads] == [
            b"EHLO", b"MAIL", b"RCPT", b"RCPT", b"RCPT", b"DATA", b"QUIT",
        ]  # fmt: skip

    run(scenario)


def test_without_pipelining_a_refused_mail_sends_no_rcpt() -> None:
    async def scenario() -> None:
        async with Peer(pipelining=False, MAIL="550 5.7.1 go away") as peer:
            connection = await connect(peer.hop)
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert replies == dict.fromkeys(RECIPIENTS, "550 5.7.1 go away")
        assert [c.split(" ")[0] for c in peer.commands] == ["EHLO", "MAIL", "RSET", "QUIT"]

    run(scenario)


# --- the message on the wire --------------------------------------------------------------


def test_dot_stuffing_and_line_ends_on_the_wire() -> None:
    async def scenario() -> None:
        body = b"Subject: dots\r\n\r\n.hidden\r\nbare\n..two\r\n.\r\nend"
        async with Peer() as peer:
            connection = await connect(peer.hop)
            await connection.send("a@local.test", RECIPIENTS[:1], body)
            await connection.close()
        assert peer.messages == [
            b"Subject: dots\r\n\r\n..hidden\r\nbare\r\n...two\r\n..\r\nend\r\n"
        ]

    run(scenario)


def test_eight_bit_and_utf8_options() -> None:
    async def scenario() -> None:
        body = "Subject: 日本語\r\n\r\n本文\r\n".encode()
        async with Peer() as peer:
            connection = await connect(peer.hop)
            await connection.send("a@local.test", RECIPIENTS[:1], body)
            utf8 = await connection.send("山田@local.test", RECIPIENTS[:1], MESSAGE)
            await connection.close()
        assert "MAIL FROM:<a@local.test> BODY=8BITMIME" in peer.commands
        assert utf8["one@remote.test"].startswith("553 5.6.7 ")
        assert peer.commands.count("RSET") == 0

    run(scenario)


# --- connections that break ---------------------------------------------------------------


def test_a_421_in_the_group_ends_the_connection_with_the_servers_words() -> None:
    async def scenario() -> None:
        async with Peer() as peer:
            peer.rcpt["two@remote.test"] = "421 4.3.2 Service shutting down"
            connection = await connect(peer.hop)
            with pytest.raises(ConnectionLost) as lost:
                await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            assert lost.value.reply == "421 4.3.2 Service shutting down"
            assert not connection.usable
            await connection.close()

    run(scenario)


@pytest.mark.parametrize("verb", ["MAIL", "RCPT", "DATA", "END"])
def test_a_dropped_connection_names_the_stage(verb: str) -> None:
    stage = {"MAIL": "MAIL FROM", "RCPT": "RCPT TO", "DATA": "DATA", "END": "DATA"}[verb]

    async def scenario() -> None:
        peer = Peer()
        peer.answers["." if verb == "END" else verb] = None
        async with peer:
            connection = await connect(peer.hop)
            with pytest.raises(ConnectionLost) as lost:
                await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert lost.value.reply.startswith(
            f"451 4.4.2 Lost connection with {peer.hop} while sending {stage}"
        )

    run(scenario)


def test_a_silent_server_times_out() -> None:
    async def scenario() -> None:
        async with Peer(END=SILENT) as peer:
            connection = await connect(peer.hop, timeout=0.5)
            with pytest.raises(ConnectionLost) as lost:
                await connection.send("a@local.test", RECIPIENTS[:1], MESSAGE)
            assert not connection.usable
            await connection.close()
        assert lost.value.reply == f"451 4.4.2 Timed out waiting for {peer.hop} after DATA"

    run(scenario)


def test_a_server_that_says_421_between_messages_is_not_reused() -> None:
    async def scenario() -> None:
        async with Peer(after_message="421 4.4.2 peer.test Error: timeout exceeded") as peer:
            connection = await connect(peer.hop)
            await connection.send("a@local.test", RECIPIENTS[:1], MESSAGE)
            async with asyncio.timeout(5):
                while connection.usable:
                    await asyncio.sleep(0.01)
            await connection.close()
        assert peer.commands[-1] == "DATA", "no QUIT to a server that left"

    run(scenario)


def test_refused_greeting_and_helo_fallback() -> None:
    async def scenario() -> None:
        async with Peer(GREETING="554-5.7.1 no mail here\r\n554 5.7.1 go away") as peer:
            failed = await open_connection(
                [peer.hop], "client.test", connect_timeout=5, command_timeout=5, tls=None
            )
        assert isinstance(failed, ConnectFailure)
        assert failed.reply == "554 5.7.1 no mail here 5.7.1 go away"

        async with Peer(EHLO="502 5.5.1 EHLO not implemented", trickle=True) as old:
            connection = await connect(old.hop)
            assert not connection.pipelining
            replies = await connection.send("a@local.test", RECIPIENTS[:1], b"plain\r\n")
            await connection.close()
        assert replies == {"one@remote.test": "250 2.0.0 Ok: queued as 1234"}
        assert old.commands[:2] == ["EHLO client.test", "HELO client.test"]

    run(scenario)


def test_extensions_from_a_multi_line_ehlo_split_byte_by_byte() -> None:
    async def scenario() -> None:
        async with Peer(trickle=True) as peer:
            connection = await connect(peer.hop)
            assert connection.pipelining
            assert connection.eight_bit_mime
            assert not connection.smtputf8
            await connection.close()

    run(scenario)


@pytest.mark.parametrize(
    "answer",
    ["454 4.7.0 TLS not available", None, "220 2.0.0 Ready"],
    ids=["454", "drop", "no-tls"],
)
def test_a_failed_starttls_is_retried_in_plain_text(answer: str | None) -> None:
    """Refused, dropped, or a 220 from a server that cannot do TLS after all (the handshake
    times out): the hop is tried once more without STARTTLS, and the group is pipelined."""

    async def scenario() -> None:
        ehlo = "250-peer.test\r\n250-STARTTLS\r\n250 PIPELINING"
        async with Peer(EHLO=ehlo, STARTTLS=answer) as peer:
            connection = await connect(peer.hop, timeout=0.5, tls=True)
            assert connection.tls_version is None
            replies = await connection.send("a@local.test", RECIPIENTS[:2], MESSAGE)
            await connection.close()
        assert set(replies.values()) == {"250 2.0.0 Ok: queued as 1234"}
        assert peer.commands.count("EHLO client.test") == 2
        assert peer.commands.count("STARTTLS") == 1
        group = (
            b"MAIL FROM:<a@local.test>\r\nRCPT TO:<one@remote.test>\r\n"
            b"RCPT TO:<two@remote.test>\r\nDATA\r\n"
        )
        assert group in peer.reads

    run(scenario)


# --- against aiosmtpd (the test kit's sink), with STARTTLS ----------------------------------


def sink_hop(sink: SmtpSink) -> Hop:
    return Hop("sink.test", "127.0.0.1", sink.port)


def test_sink_sees_the_group_in_one_read_after_starttls() -> None:
    async def scenario() -> None:
        async with SmtpSink(starttls=True) as sink:
            sink.rcpt_replies["two@remote.test"] = "550 5.1.1 <two@remote.test>: unknown"
            connection = await connect(sink_hop(sink), tls=True)
            assert connection.tls_version is not None
            assert connection.tls_version.startswith("TLSv1.")
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            second = await connection.send("b@local.test", RECIPIENTS[:1], MESSAGE)
            await connection.close()
        assert replies["two@remote.test"] == "550 5.1.1 <two@remote.test>: unknown"
        assert replies["one@remote.test"] == replies["three@remote.test"]
        assert replies["one@remote.test"].startswith("250 ")
        assert second["one@remote.test"].startswith("250 ")
        assert [t.rcpt_tos for t in sink.transactions] == [
            ("one@remote.test", "three@remote.test"),
            ("one@remote.test",),
        ]
        assert all(t.tls and t.connection == 1 for t in sink.transactions)
        groups = [data for _, data in sink.reads if data.startswith(b"MAIL FROM")]
        assert len(groups) == 2
        assert groups[0].count(b"RCPT TO:") == 3
        assert groups[0].endswith(b"RCPT TO:<three@remote.test>\r\nDATA\r\n")
        assert groups[1] == b"MAIL FROM:<b@local.test>\r\nRCPT TO:<one@remote.test>\r\nDATA\r\n"

    run(scenario)


def test_sink_refusing_mail_gets_its_words_for_every_recipient() -> None:
    async def scenario() -> None:
        async with SmtpSink() as sink:
            sink.mail_reply = "550 5.7.1 Sender blocked"
            connection = await connect(sink_hop(sink))
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            assert connection.usable
            sink.mail_reply = "250 2.1.0 Ok"
            again = await connection.send("a@local.test", RECIPIENTS[:1], MESSAGE)
            await connection.close()
        assert replies == dict.fromkeys(RECIPIENTS, "550 5.7.1 Sender blocked")
        assert again["one@remote.test"].startswith("250 ")
        assert sink.connections == 1

    run(scenario)


def test_sink_without_pipelining_sees_one_command_per_read() -> None:
    async def scenario() -> None:
        async with SmtpSink(pipelining=False) as sink:
            connection = await connect(sink_hop(sink))
            assert not connection.pipelining
            replies = await connection.send("a@local.test", RECIPIENTS, MESSAGE)
            await connection.close()
        assert all(reply.startswith("250 ") for reply in replies.values())
        commands = [data for _, data in sink.reads if data != MESSAGE + b".\r\n"]
        assert all(data.count(b"\r\n") == 1 for data in commands), commands
        assert len(commands) == 7  # EHLO, MAIL, 3 RCPT, DATA, QUIT

    run(scenario)


def test_the_queue_runner_pipelines_and_records_each_recipients_words() -> None:
    """The whole outbound path: one queued message for three recipients of one domain goes
    as one pipelined group, and each recipient's outcome carries its own reply."""

    async def scenario() -> None:
        world = World()
        world.route("remote.test")
        world.add(*RECIPIENTS)
        async with SmtpSink() as sink:
            sink.rcpt_replies["two@remote.test"] = "550 5.1.1 <two@remote.test>: unknown"
            sink.rcpt_replies["three@remote.test"] = "450 4.2.1 <three@remote.test>: busy"
            await world.runner(sink.port).run_once()
        groups = [data for _, data in sink.reads if data.startswith(b"MAIL FROM")]
        assert [group.count(b"RCPT TO:") for group in groups] == [3]
        assert groups[0].endswith(b"DATA\r\n")
        results = {
            o.recipient: (o.reason, o.reply) for o in world.outcomes() if o.reason != "dsn.sent"
        }
        assert results["one@remote.test"] == ("remote.delivered", "250 2.0.0 Ok: queued")
        assert results["two@remote.test"] == (
            "remote.rejected",
            "550 5.1.1 <two@remote.test>: unknown",
        )
        assert results["three@remote.test"] == (
            "remote.deferred",
            "450 4.2.1 <three@remote.test>: busy",
        )

    run(scenario)
