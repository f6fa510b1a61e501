"""POP3 (RFC 1939) with CAPA (RFC 2449), STLS (RFC 2595), AUTH PLAIN (RFC 5034) and response
codes (RFC 2449, RFC 3206), as a state machine without I/O.

The server feeds received bytes to `Pop3Machine.receive_data` and asks `next_action` what to
do; each action is a plain value (send bytes, check a password, start TLS, stream a message,
delete messages, close). Things only the server can do (checking passwords, opening the
maildrop, reading blobs) come back through `login_succeeded`, `login_failed`, `tls_started`
and `update_finished`. Keeping all reply text here means a transcript test covers every
answer a client can see without a socket in sight.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from tayori.protocols.sasl import CANCEL, PLAIN, SaslError, decode_plain

MAX_COMMAND_LINE = 255
"""RFC 2449 section 4: a command line is at most 255 octets including CRLF."""

MAX_SASL_LINE = 8192
"""RFC 5034 lifts the limit for SASL response lines; PLAIN never needs more than this."""


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


class LoginDenial(enum.Enum):
    """Why the server could not open a maildrop, mapped to a reply with an RFC 3206 code."""

    BAD_CREDENTIALS = "bad-credentials"
    LOCKED_OUT = "locked-out"
    """Too many failures for the account or the client address; ends by itself."""
    LOCKED_OUT_PERMANENTLY = "locked-out-permanently"
    ACCOUNT_DISABLED = "account-disabled"
    IN_USE = "in-use"
    """Another POP3 session holds the maildrop lock."""
    UNAVAILABLE = "unavailable"
    """The store failed; nothing is wrong with the client's request."""


@dataclass(frozen=True, slots=True)
class Pop3Config:
    """What the machine needs to know about the connection it serves."""

    hostname: str
    stls_available: bool
    """The listener has a certificate, so STLS can be offered."""
    tls_active: bool
    """The connection is encrypted already (implicit TLS on port 995)."""
    plaintext_login_allowed: bool
    """Passwords may be sent before TLS on this connection (loopback, or a lab setting)."""
    implementation: str = "Tayori"
    max_auth_failures: int = 3
    """Failed logins on one connection before it is closed, so that a guesser has to pay
    for a new connection (and the throttle sees it) every few attempts."""


class MaildropEntry(NamedTuple):
    """One message of the session's snapshot: just enough to list, stream and delete it."""

    message_id: int
    uid: int
    size: int
    blob_ref: str


# --- actions --------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class NeedData:
    """No complete command is buffered: read more from the client."""


NEED_DATA = NeedData()


@dataclass(frozen=True, slots=True)
class Send:
    data: bytes


@dataclass(frozen=True, slots=True)
class Authenticate:
    """Check these credentials, open the maildrop, then call `login_succeeded` or
    `login_failed`."""

    username: str
    password: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class StartTls:
    """Send `reply`, run the TLS handshake, then call `tls_started` (or close on failure)."""

    reply: bytes


@dataclass(frozen=True, slots=True)
class StreamMessage:
    """Open the blob; on success send `header`, then the message (whole, or only the header
    and `top_lines` body lines), dot-stuffed and terminated. If the blob cannot be opened,
    send `unavailable` instead."""

    number: int
    entry: MaildropEntry
    top_lines: int | None
    header: bytes
    unavailable: bytes


@dataclass(frozen=True, slots=True)
class Update:
    """QUIT after DELE: expunge these messages, delete their blobs, then call
    `update_finished`."""

    entries: tuple[MaildropEntry, ...]


@dataclass(frozen=True, slots=True)
class Close:
    """Send `reply` (if any) and close the connection."""

    reply: bytes


Action = NeedData | Send | Authenticate | StartTls | StreamMessage | Update | Close


# --- replies --------------------------------------------------------------------------------


def ok(text: str) -> bytes:
    return f"+OK {text}\r\n".encode()


def err(text: str, code: str | None = None) -> bytes:
    """A negative reply; `code` is an RFC 2449/3206 response code such as "SYS/TEMP"."""
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}\r\n".encode()


def multiline(first: str, lines: Iterable[str]) -> bytes:
    """A multi-line reply whose lines never start with "." (lists, capabilities)."""
    body = "".join(f"{line}\r\n" for line in lines)
    return f"+OK {first}\r\n{body}.\r\n".encode()


def retr_header(size: int) -> bytes:
    """The status line of a RETR response. The server builds whole responses of messages it
    reads ahead in a worker thread, so they go out in one write with no copying on the
    event loop; it uses this function too, so both always agree."""
    return b"+OK %d octets\r\n" % size


TOO_MANY_CONNECTIONS = err("Too many connections; try again later", "SYS/TEMP")
IDLE_TIMEOUT = err("Idle timeout; closing the connection", "SYS/TEMP")
SHUTTING_DOWN = err("Server shutting down; try again shortly", "SYS/TEMP")


class _CommandError(Exception):
    """Raised inside a command handler to answer with a negative reply."""

    def __init__(self, reply: bytes) -> None:
        super().__init__(reply)
        self.reply = reply


def _octets(entries: Iterable[MaildropEntry]) -> int:
    return sum(entry.size for entry in entries)


def _printable_command(command: str) -> str:
    """The command name as it may be echoed back: short, printable ASCII, or nothing."""
    if command.isascii() and command.isprintable() and len(command) <= 16:
        return command
    return ""


# --- the machine ----------------------------------------------------------------------------


class Pop3Machine:
    """One POP3 session: AUTHORIZATION, then TRANSACTION after login, then UPDATE on QUIT.

    Pipelined commands (RFC 2449 PIPELINING) are answered one at a time in order: while an
    action that needs the server (login, STLS, UPDATE) is outstanding, `next_action` must
    not be called.
    """

    __slots__ = (
        "_auth_failures",
        "_buffer",
        "_config",
        "_deleted",
        "_discarding",
        "_entries",
        "_pending",
        "_sasl_waiting",
        "_start",
        "_tls_active",
        "_uidvalidity",
        "_user",
        "state",
        "username",
    )

    def __init__(self, config: Pop3Config) -> None:
        self._config = config
        self._tls_active = config.tls_active
        self._buffer = b""
        self._start = 0
        self._discarding = False
        self._pending: type[Authenticate | StartTls | Update] | None = None
        self._user: str | None = None
        self._sasl_waiting = False
        self._auth_failures = 0
        self._entries: tuple[MaildropEntry, ...] = ()
        self._deleted: set[int] = set()
        self._uidvalidity = 0
        self.state = State.AUTHORIZATION
        self.username: str | None = None
        """The login name once the session is in TRANSACTION."""

    # --- properties the server asks about ----------------------------------------------

    @property
    def tls_active(self) -> bool:
        return self._tls_active

    @property
    def login_allowed(self) -> bool:
        """Whether a password may be sent now (TLS is up, or plain text is allowed here)."""
        return self._tls_active or self._config.plaintext_login_allowed

    def greeting(self) -> bytes:
        # No APOP timestamp: APOP needs clear-text passwords on the server, which we never keep.
        return ok(f"{self._config.hostname} POP3 ready")

    # --- input -------------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        self._buffer = self._buffer[self._start :] + data
        self._start = 0

    def next_action(self) -> Action:
        """The next thing to do for the buffered input, or NEED_DATA."""
        if self._pending is not None:
            raise RuntimeError(f"{self._pending.__name__} is still outstanding")
        if self.state in (State.UPDATE, State.CLOSED):
            raise RuntimeError(f"no commands are read in the {self.state.value} state")
        limit = MAX_SASL_LINE if self._sasl_waiting else MAX_COMMAND_LINE
        newline = self._buffer.find(b"\n", self._start)
        if newline < 0:
            # Keep only the partial line: an idle session should not hold a whole read.
            self._buffer, self._start = self._buffer[self._start :], 0
            if len(self._buffer) >= limit:
                # Drop what we have and keep dropping until the line ends, then answer.
                self._discarding = True
                self._buffer = b""
            return NEED_DATA
        # Lines are taken by offset, so a batch of pipelined commands is not copied per line.
        line = self._buffer[self._start : newline + 1]
        self._start = newline + 1
        if self._discarding or len(line) > limit:
            self._discarding = False
            self._sasl_waiting = False  # a broken SASL response ends the exchange
            self._user = None
            return Send(err(f"Line too long (the limit here is {limit} octets)"))
        return self._handle_line(line[:-2] if line.endswith(b"\r\n") else line[:-1])

    def _handle_line(self, raw: bytes) -> Action:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._sasl_waiting = False
            return Send(err("Command line is not valid UTF-8"))
        if self._sasl_waiting:
            self._sasl_waiting = False
            return self._sasl_response(text)
        command, _, argument = text.partition(" ")
        command = command.upper()
        user, self._user = self._user, None  # PASS must come right after USER
        try:
            if command in _ANY_STATE:
                return _ANY_STATE[command](self, argument)
            if self.state is State.AUTHORIZATION:
                if command == "PASS":
                    return self._pass(user, argument)
                if command in _AUTHORIZATION:
                    return _AUTHORIZATION[command](self, argument)
                if command in _TRANSACTION:
                    return Send(err("Log in first (USER and PASS, or AUTH PLAIN)"))
            else:
                if command in _TRANSACTION:
                    return _TRANSACTION[command](self, argument)
                if command in ("USER", "PASS", "AUTH", "STLS"):
                    return Send(err(f"{command} is only allowed before login"))
        except _CommandError as error:
            return Send(error.reply)
        if not command:
            return Send(err("Empty command line"))
        name = _printable_command(command)
        return Send(err(f"Unknown command: {name}" if name else "Unknown command"))

    # --- results from the server -------------------------------------------------------

    def login_succeeded(
        self, username: str, uidvalidity: int, entries: Sequence[MaildropEntry]
    ) -> Send:
        """The credentials were good and the maildrop is locked for this session."""
        self._expect(Authenticate)
        self.state = State.TRANSACTION
        self.username = username
        self._uidvalidity = uidvalidity
        self._entries = tuple(entries)
        self._deleted = set()
        count, octets = self._totals()
        return Send(ok(f"Logged in; maildrop has {count} messages ({octets} octets)"))

    def login_failed(self, failure: LoginDenial, retry_after: float | None = None) -> Action:
        """Answer a refused login; too many failures on one connection close it.

        Temporary lockouts get [SYS/TEMP], not [AUTH]: the password was not even checked,
        and [AUTH] makes clients throw away a saved password that may well be right (the
        lockout may come from someone else guessing). Permanent refusals get [AUTH], which
        tells the client a person has to act.
        """
        self._expect(Authenticate)
        if failure is LoginDenial.BAD_CREDENTIALS:
            return self._auth_failure(err("Authentication failed", "AUTH"))
        if failure is LoginDenial.LOCKED_OUT:
            wait = ""
            if retry_after is not None:
                minutes = max(1, math.ceil(retry_after / 60))
                wait = f" in {minutes} minute{'s' if minutes > 1 else ''}"
            return Send(err(f"Too many failed logins; try again{wait}", "SYS/TEMP"))
        return Send(_FAILURE_REPLIES[failure])

    def tls_started(self) -> None:
        """The handshake finished. Everything about the plain-text session is forgotten
        (RFC 2595 section 4), including anything the client pipelined after STLS."""
        self._expect(StartTls)
        self._tls_active = True
        self._buffer, self._start = b"", 0
        self._discarding = False
        self._user = None

    def update_finished(self, success: bool, deleted: int = 0) -> Close:
        """The UPDATE state's work is done (or failed and nothing was deleted)."""
        self._expect(Update)
        self.state = State.CLOSED
        if not success:
            return Close(
                err(
                    "Could not delete the marked messages; none were deleted, try again later",
                    "SYS/TEMP",
                )
            )
        return Close(ok(f"{self._config.hostname} POP3 server signing off ({deleted} deleted)"))

    def _expect(self, action: type[Authenticate | StartTls | Update]) -> None:
        if self._pending is not action:
            raise RuntimeError(f"no {action.__name__} is outstanding")
        self._pending = None

    # --- AUTHORIZATION ---------------------------------------------------------------------

    def _capa(self, argument: str) -> Action:
        capabilities = ["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.state is State.AUTHORIZATION:
            # RFC 2595 spirit: do not invite a password before TLS when it would be refused.
            if self.login_allowed:
                capabilities += ["USER", f"SASL {PLAIN}"]
            if self._config.stls_available and not self._tls_active:
                capabilities.append("STLS")
        capabilities.append(f"IMPLEMENTATION {self._config.implementation}")
        return Send(multiline("Capability list follows", capabilities))

    def _quit(self, argument: str) -> Action:
        if self.state is State.TRANSACTION:
            doomed = tuple(self._entries[index] for index in sorted(self._deleted))
            if doomed:
                self.state = State.UPDATE
                self._pending = Update
                return Update(doomed)
        self.state = State.CLOSED
        return Close(ok(f"{self._config.hostname} POP3 server signing off"))

    def _refuse_plaintext(self) -> None:
        if self.login_allowed:
            return
        if self._config.stls_available:
            text = "Plain-text login is refused without TLS; use STLS first"
        else:
            text = "Plain-text login is refused without TLS; connect to the POP3S port"
        raise _CommandError(err(text, "AUTH"))

    def _user_command(self, argument: str) -> Action:
        self._refuse_plaintext()
        name = argument.strip()
        if not name:
            return Send(err("USER needs a login name (your address)"))
        self._user = name
        return Send(ok("Send your password with PASS"))

    def _pass(self, user: str | None, argument: str) -> Action:
        self._refuse_plaintext()
        if user is None:
            return Send(err("Send USER first"))
        # RFC 1939: PASS has one argument, so spaces belong to the password.
        if not argument:
            return Send(err("PASS needs a password"))
        self._pending = Authenticate
        return Authenticate(user, argument)

    def _auth(self, argument: str) -> Action:
        parts = argument.split()
        if not parts:
            # RFC 1734 style listing, still used by some clients to discover mechanisms.
            return Send(multiline("Mechanisms follow", [PLAIN] if self.login_allowed else []))
        if parts[0].upper() != PLAIN:
            return Send(err(f"Unsupported authentication mechanism; only {PLAIN} is offered"))
        if len(parts) > 2:
            return Send(err("Too many arguments to AUTH"))
        self._refuse_plaintext()
        if len(parts) == 1:
            self._sasl_waiting = True
            return Send(b"+ \r\n")
        return self._sasl_response(parts[1])

    def _sasl_response(self, response: str) -> Action:
        if response.strip() == CANCEL:
            return Send(err("Authentication cancelled"))
        try:
            credentials = decode_plain(response)
        except SaslError as error:
            return self._auth_failure(err(str(error)))
        self._pending = Authenticate
        return Authenticate(credentials.authcid, credentials.password)

    def _auth_failure(self, reply: bytes) -> Action:
        self._auth_failures += 1
        if self._auth_failures >= self._config.max_auth_failures:
            self.state = State.CLOSED
            return Close(reply)
        return Send(reply)

    def _stls(self, argument: str) -> Action:
        if self._tls_active:
            return Send(err("TLS is already active"))
        if not self._config.stls_available:
            return Send(err("STLS is not available on this server"))
        self._pending = StartTls
        # Bytes pipelined after STLS were sent in the clear and must not be read as if they
        # came over TLS (the STARTTLS command injection attack).
        self._buffer, self._start = b"", 0
        return StartTls(ok("Begin TLS negotiation"))

    # --- TRANSACTION -----------------------------------------------------------------------

    def _totals(self) -> tuple[int, int]:
        live = [entry for index, entry in enumerate(self._entries) if index not in self._deleted]
        return len(live), _octets(live)

    def _index(self, argument: str) -> int:
        """The 0-based index of a live message named by a message-number argument."""
        if not argument:
            raise _CommandError(err("Missing message number"))
        if not (argument.isascii() and argument.isdigit()):
            shown = argument[:20]
            raise _CommandError(err(f"Not a message number: {shown!r}"))
        number = int(argument)
        if not 1 <= number <= len(self._entries):
            raise _CommandError(
                err(f"No such message: {number} (the maildrop has {len(self._entries)})")
            )
        if number - 1 in self._deleted:
            raise _CommandError(err(f"Message {number} is already deleted"))
        return number - 1

    @staticmethod
    def _arguments(argument: str, most: int) -> list[str]:
        parts = argument.split()
        if len(parts) > most:
            raise _CommandError(err("Too many arguments"))
        return parts

    def _stat(self, argument: str) -> Action:
        self._arguments(argument, 0)
        count, octets = self._totals()
        return Send(ok(f"{count} {octets}"))

    def _list(self, argument: str) -> Action:
        parts = self._arguments(argument, 1)
        if parts:
            index = self._index(parts[0])
            return Send(ok(f"{index + 1} {self._entries[index].size}"))
        count, octets = self._totals()
        lines = (
            f"{index + 1} {entry.size}"
            for index, entry in enumerate(self._entries)
            if index not in self._deleted
        )
        return Send(multiline(f"{count} messages ({octets} octets)", lines))

    def _uid(self, entry: MaildropEntry) -> str:
        # Printable, at most 70 characters (RFC 1939), and stable for the life of the message:
        # UIDs are never reused within one UIDVALIDITY of a mailbox.
        return f"{self._uidvalidity:x}.{entry.uid:x}"

    def _uidl(self, argument: str) -> Action:
        parts = self._arguments(argument, 1)
        if parts:
            index = self._index(parts[0])
            return Send(ok(f"{index + 1} {self._uid(self._entries[index])}"))
        lines = (
            f"{index + 1} {self._uid(entry)}"
            for index, entry in enumerate(self._entries)
            if index not in self._deleted
        )
        return Send(multiline("Unique-id listing follows", lines))

    def _retr(self, argument: str) -> Action:
        parts = self._arguments(argument, 1)
        index = self._index(parts[0] if parts else "")
        entry = self._entries[index]
        return StreamMessage(index + 1, entry, None, retr_header(entry.size), _UNREADABLE)

    def _top(self, argument: str) -> Action:
        parts = self._arguments(argument, 2)
        if len(parts) < 2:
            raise _CommandError(err("TOP needs a message number and a line count"))
        index = self._index(parts[0])
        if not (parts[1].isascii() and parts[1].isdigit()):
            raise _CommandError(err(f"Not a line count: {parts[1][:20]!r}"))
        entry = self._entries[index]
        header = ok("Top of message follows")
        return StreamMessage(index + 1, entry, int(parts[1]), header, _UNREADABLE)

    def _dele(self, argument: str) -> Action:
        parts = self._arguments(argument, 1)
        index = self._index(parts[0] if parts else "")
        self._deleted.add(index)
        return Send(ok(f"Message {index + 1} deleted"))

    def _rset(self, argument: str) -> Action:
        self._arguments(argument, 0)
        self._deleted.clear()
        count, octets = self._totals()
        return Send(ok(f"Maildrop has {count} messages ({octets} octets)"))

    def _noop(self, argument: str) -> Action:
        self._arguments(argument, 0)
        return Send(ok("Still here"))


_UNREADABLE = err("The message could not be read; try again later", "SYS/TEMP")

_FAILURE_REPLIES = {
    LoginDenial.LOCKED_OUT_PERMANENTLY: err(
        "This account is locked; contact your administrator", "AUTH"
    ),
    LoginDenial.ACCOUNT_DISABLED: err(
        "This account is disabled; contact your administrator", "AUTH"
    ),
    LoginDenial.IN_USE: err("Mailbox is locked by another POP3 session", "IN-USE"),
    LoginDenial.UNAVAILABLE: err("The mail store is unavailable; try again later", "SYS/TEMP"),
}

_ANY_STATE = {"CAPA": Pop3Machine._capa, "QUIT": Pop3Machine._quit}
_AUTHORIZATION = {
    "USER": Pop3Machine._user_command,
    "AUTH": Pop3Machine._auth,
    "STLS": Pop3Machine._stls,
}
_TRANSACTION = {
    "STAT": Pop3Machine._stat,
    "LIST": Pop3Machine._list,
    "UIDL": Pop3Machine._uidl,
    "RETR": Pop3Machine._retr,
    "TOP": Pop3Machine._top,
    "DELE": Pop3Machine._dele,
    "RSET": Pop3Machine._rset,
    "NOOP": Pop3Machine._noop,
}
