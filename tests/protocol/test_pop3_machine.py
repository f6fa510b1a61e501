"""Transcripts against the sans-I/O POP3 machine, and properties of the message streamers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tayori.protocols.dotstuff import DotStuffer, TopFilter
from tayori.protocols.pop3 import (
    MAX_COMMAND_LINE,
    NEED_DATA,
    Action,
    Authenticate,
    Close,
    LoginDenial,
    MaildropEntry,
    Pop3Config,
    Pop3Machine,
    Send,
    StartTls,
    State,
    StreamMessage,
    Update,
)
from tayori.protocols.sasl import encode_plain

ENTRIES = [
    MaildropEntry(message_id=101, uid=1, size=120, blob_ref="b1"),
    MaildropEntry(message_id=102, uid=2, size=200, blob_ref="b2"),
    MaildropEntry(message_id=103, uid=0x1F, size=4000, blob_ref="b3"),
]
UIDVALIDITY = 0x65A1B2C3


def make(**overrides: object) -> Pop3Machine:
    values: dict[str, object] = {
        "hostname": "mail.example.jp",
        "stls_available": True,
        "tls_active": False,
        "plaintext_login_allowed": True,
    }
    values.update(overrides)
    return Pop3Machine(Pop3Config(**values))  # type: ignore[arg-type]


def act(machine: Pop3Machine, line: bytes | str) -> Action:
    """Send one command line, return the single action it causes."""
    data = line.encode() if isinstance(line, str) else line
    machine.receive_data(data + b"\r\n")
    action = machine.next_action()
    assert action is not NEED_DATA
    return action


def say(machine: Pop3Machine, line: bytes | str) -> str:
    """Send one command line, return the reply text (the command must be answered at once)."""
    action = act(machine, line)
    assert isinstance(action, Send), action
    return action.data.decode()


def logged_in(entries: list[MaildropEntry] | None = None) -> Pop3Machine:
    machine = make()
    assert say(machine, "USER alice@example.jp").startswith("+OK")
    assert isinstance(act(machine, "PASS secret"), Authenticate)
    machine.login_succeeded(
        "alice@example.jp", UIDVALIDITY, ENTRIES if entries is None else entries
    )
    return machine


# --- AUTHORIZATION ---------------------------------------------------------------------------


def test_greeting_names_the_host_and_has_no_apop_banner() -> None:
    assert make().greeting() == b"+OK mail.example.jp POP3 ready\r\n"


def test_capa_before_login_offers_login_and_stls() -> None:
    reply = say(make(), "CAPA")
    assert reply.startswith("+OK")
    assert reply.endswith("\r\n.\r\n")
    lines = reply.split("\r\n")[1:-2]
    assert lines == [
        "TOP",
        "UIDL",
        "RESP-CODES",
        "AUTH-RESP-CODE",
        "PIPELINING",
        "USER",
        "SASL PLAIN",
        "STLS",
        "IMPLEMENTATION Tayori",
    ]


def test_capa_hides_password_logins_when_they_would_be_refused() -> None:
    lines = say(make(plaintext_login_allowed=False), "capa").split("\r\n")
    assert "USER" not in lines
    assert "SASL PLAIN" not in lines
    assert "STLS" in lines


def test_capa_without_certificate_has_no_stls() -> None:
    assert "STLS" not in say(make(stls_available=False), "CAPA").split("\r\n")


def test_capa_after_login_lists_transaction_capabilities_only() -> None:
    lines = say(logged_in(), "CAPA").split("\r\n")
    assert "TOP" in lines
    assert "UIDL" in lines
    assert "USER" not in lines
    assert "STLS" not in lines


def test_user_pass_asks_the_server_to_authenticate() -> None:
    machine = make()
    assert say(machine, "USER alice@example.jp") == "+OK Send your password with PASS\r\n"
    action = act(machine, "PASS correct horse battery staple")
    assert action == Authenticate("alice@example.jp", "correct horse battery staple")
    assert "correct" not in repr(action)
    with pytest.raises(RuntimeError):
        machine.next_action()
    reply = machine.login_succeeded("alice@example.jp", UIDVALIDITY, ENTRIES)
    assert reply == Send(b"+OK Logged in; maildrop has 3 messages (4320 octets)\r\n")
    assert machine.state is State.TRANSACTION
    assert machine.username == "alice@example.jp"


def test_commands_are_case_insensitive() -> None:
    machine = make()
    assert say(machine, "user alice@example.jp").startswith("+OK")
    assert isinstance(act(machine, "pAsS pw"), Authenticate)


def test_pass_must_follow_user_immediately() -> None:
    machine = make()
    assert say(machine, "PASS pw") == "-ERR Send USER first\r\n"
    say(machine, "USER alice@example.jp")
    say(machine, "CAPA")
    assert say(machine, "PASS pw") == "-ERR Send USER first\r\n"


def test_user_and_pass_need_arguments() -> None:
    machine = make()
    assert say(machine, "USER").startswith("-ERR USER needs")
    say(machine, "USER a@example.jp")
    assert say(machine, "PASS").startswith("-ERR PASS needs")


def test_plain_text_login_is_refused_without_tls() -> None:
    machine = make(plaintext_login_allowed=False)
    refusal = "-ERR [AUTH] Plain-text login is refused without TLS; use STLS first\r\n"
    assert say(machine, "USER alice@example.jp") == refusal
    assert say(machine, "PASS pw") == refusal
    assert say(machine, "AUTH PLAIN " + encode_plain("a@example.jp", "pw")) == refusal
    assert say(make(plaintext_login_allowed=False, stls_available=False), "USER a").endswith(
        "connect to the POP3S port\r\n"
    )


def test_implicit_tls_allows_login_and_offers_no_stls() -> None:
    machine = make(plaintext_login_allowed=False, tls_active=True)
    assert "STLS" not in say(machine, "CAPA")
    assert say(machine, "STLS") == "-ERR TLS is already active\r\n"
    assert say(machine, "USER alice@example.jp").startswith("+OK")


def test_stls_discards_pipelined_plaintext_and_resets_the_session() -> None:
    machine = make(plaintext_login_allowed=False)
    say(machine, "USER alice@example.jp")
    machine.receive_data(b"STLS\r\nUSER mallory@example.jp\r\nPASS x\r\n")
    action = machine.next_action()
    assert action == StartTls(b"+OK Begin TLS negotiation\r\n")
    with pytest.raises(RuntimeError):
        machine.next_action()
    machine.tls_started()
    assert machine.tls_active
    assert machine.next_action() is NEED_DATA
    lines = say(machine, "CAPA").split("\r\n")
    assert "STLS" not in lines
    assert "USER" in lines
    assert say(machine, "PASS pw") == "-ERR Send USER first\r\n"
    assert say(machine, "STLS") == "-ERR TLS is already active\r\n"


def test_stls_without_certificate_is_refused() -> None:
    assert (
        say(make(stls_available=False), "STLS") == "-ERR STLS is not available on this server\r\n"
    )


def test_auth_plain_with_initial_response() -> None:
    machine = make()
    action = act(machine, "AUTH PLAIN " + encode_plain("alice@example.jp", "pw"))
    assert action == Authenticate("alice@example.jp", "pw")


def test_auth_plain_with_continuation_allows_long_responses() -> None:
    machine = make()
    assert say(machine, "AUTH plain") == "+ \r\n"
    password = "p" * 1000
    action = act(machine, encode_plain("alice@example.jp", password))
    assert action == Authenticate("alice@example.jp", password)


def test_auth_continuation_can_be_cancelled() -> None:
    machine = make()
    say(machine, "AUTH PLAIN")
    assert say(machine, "*") == "-ERR Authentication cancelled\r\n"
    assert say(machine, "NOOP").startswith("-ERR Log in first")


def test_auth_rejects_bad_responses_and_other_mechanisms() -> None:
    machine = make()
    assert (
        say(machine, "AUTH PLAIN !!!") == "-ERR The authentication response is not valid base64\r\n"
    )
    assert say(machine, "AUTH LOGIN") == (
        "-ERR Unsupported authentication mechanism; only PLAIN is offered\r\n"
    )
    assert say(machine, "AUTH CRAM-MD5").startswith("-ERR Unsupported")
    other = encode_plain("bob@example.jp", "pw", authzid="alice@example.jp")
    assert say(machine, "AUTH PLAIN " + other).startswith(
        "-ERR Authorization identity must be empty"
    )


def test_auth_without_arguments_lists_mechanisms() -> None:
    assert say(make(), "AUTH") == "+OK Mechanisms follow\r\nPLAIN\r\n.\r\n"


def test_sasl_line_limit_is_bounded() -> None:
    machine = make()
    say(machine, "AUTH PLAIN")
    assert say(machine, "A" * 9000).startswith("-ERR Line too long (the limit here is 8192 octets)")
    assert say(machine, "CAPA").startswith("+OK")


def test_bad_credentials_and_too_many_failures_close_the_connection() -> None:
    machine = make()
    for _ in range(2):
        say(machine, "USER a@example.jp")
        act(machine, "PASS wrong")
        assert machine.login_failed(LoginDenial.BAD_CREDENTIALS) == Send(
            b"-ERR [AUTH] Authentication failed\r\n"
        )
    say(machine, "USER a@example.jp")
    act(machine, "PASS wrong")
    assert machine.login_failed(LoginDenial.BAD_CREDENTIALS) == Close(
        b"-ERR [AUTH] Authentication failed\r\n"
    )
    assert machine.state is State.CLOSED


@pytest.mark.parametrize(
    ("denial", "retry_after", "reply"),
    [
        (
            LoginDenial.LOCKED_OUT,
            600.0,
            "-ERR [SYS/TEMP] Too many failed logins; try again in 10 minutes",
        ),
        (
            LoginDenial.LOCKED_OUT,
            1.0,
            "-ERR [SYS/TEMP] Too many failed logins; try again in 1 minute\r",
        ),
        (LoginDenial.LOCKED_OUT_PERMANENTLY, None, "-ERR [AUTH] This account is locked"),
        (LoginDenial.ACCOUNT_DISABLED, None, "-ERR [AUTH] This account is disabled"),
        (LoginDenial.IN_USE, None, "-ERR [IN-USE] Mailbox is locked by another POP3 session"),
        (LoginDenial.UNAVAILABLE, None, "-ERR [SYS/TEMP] The mail store is unavailable"),
    ],
)
def test_login_denials_carry_response_codes(
    denial: LoginDenial, retry_after: float | None, reply: str
) -> None:
    machine = make()
    say(machine, "USER a@example.jp")
    act(machine, "PASS pw")
    action = machine.login_failed(denial, retry_after)
    assert isinstance(action, Send)
    assert action.data.decode().startswith(reply)
    assert machine.state is State.AUTHORIZATION


def test_transaction_commands_need_login() -> None:
    machine = make()
    for command in ("STAT", "LIST", "RETR 1", "DELE 1", "NOOP", "RSET", "UIDL", "TOP 1 1"):
        assert say(machine, command) == "-ERR Log in first (USER and PASS, or AUTH PLAIN)\r\n"


def test_quit_before_login_closes() -> None:
    assert act(make(), "QUIT") == Close(b"+OK mail.example.jp POP3 server signing off\r\n")


# --- line handling ---------------------------------------------------------------------------


def test_unknown_and_empty_commands() -> None:
    machine = make()
    assert say(machine, "XYZZY") == "-ERR Unknown command: XYZZY\r\n"
    assert say(machine, "") == "-ERR Empty command line\r\n"
    assert say(machine, "\x01\x02") == "-ERR Unknown command\r\n"
    assert say(machine, b"USER \xff") == "-ERR Command line is not valid UTF-8\r\n"


def test_command_line_limit_is_255_octets_including_crlf() -> None:
    machine = make()
    longest = "USER " + "a" * (MAX_COMMAND_LINE - 2 - 5)
    assert say(machine, longest).startswith("+OK")
    assert say(machine, longest + "a").startswith(
        "-ERR Line too long (the limit here is 255 octets)"
    )
    # A line that arrives in pieces is dropped as a whole, then the session goes on.
    machine.receive_data(b"USER " + b"x" * 300)
    assert machine.next_action() is NEED_DATA
    machine.receive_data(b"y" * 5000)
    assert machine.next_action() is NEED_DATA
    machine.receive_data(b"z\r\nCAPA\r\n")
    action = machine.next_action()
    assert isinstance(action, Send)
    assert action.data.startswith(b"-ERR Line too long")
    action = machine.next_action()
    assert isinstance(action, Send)
    assert action.data.startswith(b"+OK Capability list follows")


def test_pipelined_commands_are_answered_in_order_and_bare_lf_is_accepted() -> None:
    machine = logged_in()
    machine.receive_data(b"STAT\r\nLIST 2\nNOOP\r\nDELE 1\r\nSTAT\r\n")
    replies = []
    while (action := machine.next_action()) is not NEED_DATA:
        assert isinstance(action, Send)
        replies.append(action.data)
    assert replies == [
        b"+OK 3 4320\r\n",
        b"+OK 2 200\r\n",
        b"+OK Still here\r\n",
        b"+OK Message 1 deleted\r\n",
        b"+OK 2 4200\r\n",
    ]


def test_partial_lines_wait_for_more_data() -> None:
    machine = logged_in()
    machine.receive_data(b"ST")
    assert machine.next_action() is NEED_DATA
    machine.receive_data(b"AT\r")
    assert machine.next_action() is NEED_DATA
    machine.receive_data(b"\n")
    assert machine.next_action() == Send(b"+OK 3 4320\r\n")


# --- TRANSACTION -----------------------------------------------------------------------------


def test_stat_list_and_uidl() -> None:
    machine = logged_in()
    assert say(machine, "STAT") == "+OK 3 4320\r\n"
    assert (
        say(machine, "LIST") == "+OK 3 messages (4320 octets)\r\n1 120\r\n2 200\r\n3 4000\r\n.\r\n"
    )
    assert say(machine, "LIST 3") == "+OK 3 4000\r\n"
    assert say(machine, "UIDL") == (
        "+OK Unique-id listing follows\r\n1 65a1b2c3.1\r\n2 65a1b2c3.2\r\n3 65a1b2c3.1f\r\n.\r\n"
    )
    assert say(machine, "UIDL 3") == "+OK 3 65a1b2c3.1f\r\n"


def test_uidl_is_printable_and_short_even_for_huge_numbers() -> None:
    machine = make()
    say(machine, "USER a@example.jp")
    act(machine, "PASS pw")
    machine.login_succeeded("a@example.jp", 2**64 - 1, [MaildropEntry(1, 2**64 - 1, 1, "r")])
    uid = say(machine, "UIDL 1").split()[2]
    assert len(uid) <= 70
    assert all(0x21 <= ord(char) <= 0x7E for char in uid)


def test_empty_maildrop() -> None:
    machine = logged_in([])
    assert say(machine, "STAT") == "+OK 0 0\r\n"
    assert say(machine, "LIST") == "+OK 0 messages (0 octets)\r\n.\r\n"
    assert say(machine, "RETR 1") == "-ERR No such message: 1 (the maildrop has 0)\r\n"


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        ("LIST x", "-ERR Not a message number: 'x'"),
        ("LIST -1", "-ERR Not a message number: '-1'"),
        ("LIST +1", "-ERR Not a message number: '+1'"),
        ("LIST ²", "-ERR Not a message number: '²'"),
        ("LIST 0", "-ERR No such message: 0 (the maildrop has 3)"),
        ("LIST 4", "-ERR No such message: 4 (the maildrop has 3)"),
        ("LIST 99999999999999999999", "-ERR No such message: 99999999999999999999"),
        ("LIST 1 2", "-ERR Too many arguments"),
        ("STAT 1", "-ERR Too many arguments"),
        ("RETR", "-ERR Missing message number"),
        ("DELE", "-ERR Missing message number"),
        ("TOP 1", "-ERR TOP needs a message number and a line count"),
        ("TOP 1 x", "-ERR Not a line count: 'x'"),
        ("TOP 1 -1", "-ERR Not a line count: '-1'"),
        ("TOP 9 1", "-ERR No such message: 9"),
        ("USER x", "-ERR USER is only allowed before login"),
        ("PASS x", "-ERR PASS is only allowed before login"),
        ("AUTH PLAIN", "-ERR AUTH is only allowed before login"),
        ("STLS", "-ERR STLS is only allowed before login"),
    ],
)
def test_bad_arguments_get_clear_errors(command: str, reply: str) -> None:
    assert say(logged_in(), command).startswith(reply)


def test_retr_and_top_stream_the_message() -> None:
    machine = logged_in()
    retr = act(machine, "RETR 2")
    assert retr == StreamMessage(
        2,
        ENTRIES[1],
        None,
        b"+OK 200 octets\r\n",
        b"-ERR [SYS/TEMP] The message could not be read; try again later\r\n",
    )
    top = act(machine, "top 3 0")
    assert isinstance(top, StreamMessage)
    assert top.entry == ENTRIES[2]
    assert top.top_lines == 0
    assert top.header == b"+OK Top of message follows\r\n"


def test_dele_rset_and_deleted_messages() -> None:
    machine = logged_in()
    assert say(machine, "DELE 2") == "+OK Message 2 deleted\r\n"
    assert say(machine, "DELE 2") == "-ERR Message 2 is already deleted\r\n"
    for command in ("RETR 2", "LIST 2", "UIDL 2", "TOP 2 1"):
        assert say(machine, command) == "-ERR Message 2 is already deleted\r\n"
    assert say(machine, "LIST") == "+OK 2 messages (4120 octets)\r\n1 120\r\n3 4000\r\n.\r\n"
    assert say(machine, "STAT") == "+OK 2 4120\r\n"
    assert say(machine, "RSET") == "+OK Maildrop has 3 messages (4320 octets)\r\n"
    assert say(machine, "LIST 2") == "+OK 2 200\r\n"


def test_quit_without_deletions_closes_without_update() -> None:
    machine = logged_in()
    say(machine, "DELE 1")
    say(machine, "RSET")
    assert act(machine, "QUIT") == Close(b"+OK mail.example.jp POP3 server signing off\r\n")


def test_quit_after_dele_enters_update() -> None:
    machine = logged_in()
    say(machine, "DELE 3")
    say(machine, "DELE 1")
    action = act(machine, "QUIT")
    assert action == Update((ENTRIES[0], ENTRIES[2]))
    assert machine.state is State.UPDATE
    with pytest.raises(RuntimeError):
        machine.next_action()
    assert machine.update_finished(True, 2) == Close(
        b"+OK mail.example.jp POP3 server signing off (2 deleted)\r\n"
    )
    assert machine.state is State.CLOSED


def test_failed_update_says_nothing_was_deleted() -> None:
    machine = logged_in()
    say(machine, "DELE 1")
    act(machine, "QUIT")
    close = machine.update_finished(False)
    assert close.reply.startswith(b"-ERR [SYS/TEMP] Could not delete the marked messages")


def test_results_without_a_request_are_programming_errors() -> None:
    machine = make()
    with pytest.raises(RuntimeError):
        machine.login_succeeded("a", 1, [])
    with pytest.raises(RuntimeError):
        machine.tls_started()
    with pytest.raises(RuntimeError):
        machine.update_finished(True)


# --- dot-stuffing and TOP ------------------------------------------------------------------


def stuff(message: bytes, cuts: list[int]) -> bytes:
    stuffer = DotStuffer()
    return b"".join(stuffer.feed(chunk) for chunk in split(message, cuts)) + stuffer.finish()


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({min(cut, len(data)) for cut in cuts})
    chunks, start = [], 0
    for point in [*points, len(data)]:
        chunks.append(data[start:point])
        start = point
    return chunks


def unstuff(response: bytes) -> bytes:
    """What a client makes of a multi-line response body: split at LF, stop at ".",
    drop one leading "." from the other lines. The terminator must be the very end."""
    out: list[bytes] = []
    lines = response.split(b"\n")
    assert lines[-1] == b"", "the response must end with a line end"
    for index, line in enumerate(lines[:-1]):
        if line in (b".\r", b"."):
            assert line == b".\r"
            assert index == len(lines) - 2, "terminator before the end of the message"
            return b"".join(out)
        out.append((line[1:] if line.startswith(b".") else line) + b"\n")
    raise AssertionError("no terminator")


def expected_body(message: bytes) -> bytes:
    return message if message in (b"",) or message.endswith(b"\r\n") else message + b"\r\n"


MESSAGE_PARTS = st.sampled_from(
    [
        b"\r\n",
        b"\n",
        b"\r",
        b".",
        b"..",
        b"a",
        b"Subject: x",
        b"\x00",
        b"\xff\xfe",
        b" ",
        b"\r\n.\r\n",
        b"\r\n\r\n",
        b".\r\n",
        b"\n.\n",
        b"From: a\r\n",
    ]
)
MESSAGES = st.one_of(st.lists(MESSAGE_PARTS, max_size=40).map(b"".join), st.binary(max_size=300))
CUTS = st.lists(st.integers(min_value=0, max_value=400), max_size=12)


@given(message=MESSAGES, cuts=CUTS)
@settings(max_examples=400, deadline=None)
def test_unstuff_of_stuff_is_the_message(message: bytes, cuts: list[int]) -> None:
    assert unstuff(stuff(message, cuts)) == expected_body(message)


@given(message=MESSAGES, cuts=CUTS)
@settings(max_examples=200, deadline=None)
def test_stuffing_does_not_depend_on_chunk_boundaries(message: bytes, cuts: list[int]) -> None:
    assert stuff(message, cuts) == stuff(message, [])


def test_stuffing_examples() -> None:
    assert stuff(b"", []) == b".\r\n"
    assert stuff(b"a\r\n", []) == b"a\r\n.\r\n"
    assert stuff(b"a", []) == b"a\r\n.\r\n"
    assert stuff(b"a\r", []) == b"a\r\r\n.\r\n"
    assert stuff(b".\r\n..x\r\n.", [1, 2, 3, 4]) == b"..\r\n...x\r\n..\r\n.\r\n"
    assert stuff(b"a\r\n.b\r\n", [3]) == b"a\r\n..b\r\n.\r\n"  # cut right before the dot


def top_reference(message: bytes, lines: int) -> bytes:
    """TOP by the book, on the whole message at once."""
    parts = message.split(b"\n")
    head = [part + b"\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    for index, line in enumerate(head):
        if line in (b"\n", b"\r\n"):
            return b"".join(head[: index + 1 + lines])
    return message


def top(message: bytes, lines: int, cuts: list[int]) -> bytes:
    top_filter = TopFilter(lines)
    out: list[bytes] = []
    for chunk in split(message, cuts):
        out.append(top_filter.feed(chunk))
        if top_filter.done:
            break
    return b"".join(out)


@given(message=MESSAGES, lines=st.integers(min_value=0, max_value=8), cuts=CUTS)
@settings(max_examples=400, deadline=None)
def test_top_matches_the_reference(message: bytes, lines: int, cuts: list[int]) -> None:
    assert top(message, lines, cuts) == top_reference(message, lines)


def test_top_examples() -> None:
    message = b"From: a\r\nSubject: b\r\n\r\nline1\r\n.line2\r\nline3\r\n"
    assert top(message, 0, []) == b"From: a\r\nSubject: b\r\n\r\n"
    assert top(message, 2, [1, 5, 22, 23]) == b"From: a\r\nSubject: b\r\n\r\nline1\r\n.line2\r\n"
    assert top(message, 100, []) == message
    # No blank line: it is all header.
    assert top(b"From: a\r\nSubject: b", 1, []) == b"From: a\r\nSubject: b"
    # A CR alone on a line is not a blank line; CR CR LF neither.
    assert top(b"A: b\r\n\r\r\nbody\r\n\r\nx\r\ny\r\n", 1, [7]) == (
        b"A: b\r\n\r\r\nbody\r\n\r\nx\r\n"
    )
    with pytest.raises(ValueError):
        TopFilter(-1)


def test_top_and_stuffing_handle_lines_longer_than_any_chunk() -> None:
    long_header = b"X-Long: " + b"h" * 300_000 + b"\r\n"
    long_body_line = b"." + b"\x00\xff" * 200_000 + b"\r\n"
    message = long_header + b"\r\n" + long_body_line + b"second\r\n" + b".third\r\n"
    cuts = list(range(0, len(message), 4096))
    assert top(message, 1, cuts) == long_header + b"\r\n" + long_body_line
    assert unstuff(stuff(message, cuts)) == message


TRANSACTION_LINES = st.sampled_from(
    [b"STAT", b"LIST", b"LIST 2", b"UIDL 1", b"DELE 1", b"RSET", b"NOOP", b"bogus", b"", b"x" * 300]
)


@given(lines=st.lists(TRANSACTION_LINES, max_size=12), cuts=CUTS)
@settings(max_examples=100, deadline=None)
def test_replies_do_not_depend_on_how_input_is_split(lines: list[bytes], cuts: list[int]) -> None:
    def replies(chunks: list[bytes]) -> list[Action]:
        machine = logged_in()
        out: list[Action] = []
        for chunk in chunks:
            machine.receive_data(chunk)
            while (action := machine.next_action()) is not NEED_DATA:
                out.append(action)
        return out

    data = b"".join(line + b"\r\n" for line in lines)
    assert replies(split(data, cuts)) == replies([data])
    assert len(replies([data])) == len(lines)
