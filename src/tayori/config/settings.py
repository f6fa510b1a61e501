"""Every setting Tayori reads, with its default and the reason an admin would change it.

The dataclasses below are the single source of truth: the loader walks them to validate a
TOML file (naming key, value and reason on error), and `docs/config.md` is generated from
their field metadata, so a key cannot exist without documentation.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

MB = 1000 * 1000


def setting(
    default: Any,
    doc: str,
    *,
    factory: bool = False,
    minimum: int | None = None,
    maximum: int | None = None,
    required: bool = False,
) -> Any:
    """A documented field. `factory` for mutable defaults (lists). `minimum` overrides the
    loader's lower bound for a number (integers: 1, seconds: 0) where 0 has a meaning.
    `required`: a key every entry of a list of tables must give."""
    metadata: dict[str, Any] = {"doc": doc}
    if required:
        metadata["required"] = True
    if minimum is not None:
        metadata["minimum"] = minimum
    if maximum is not None:
        metadata["maximum"] = maximum
    if factory:
        return field(default_factory=default, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass(frozen=True, slots=True)
class HostPort:
    """A listening or connecting address written `host:port` (IPv6 as `[::1]:port`)."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


@dataclass(frozen=True, slots=True)
class ServerSettings:
    """Who this server is and where it keeps its files."""

    hostname: str = setting(
        "", "Name announced in SMTP greetings and Received headers. Empty: the machine's FQDN."
    )
    data_dir: Path = setting(
        Path(),
        "Directory for the database, message files and TLS files. Relative paths are "
        "taken from the config file's directory. Empty: the config file's directory.",
    )
    smtp_processes: int = setting(
        1,
        "Processes receiving inbound SMTP (MX) mail on the `[listen] smtp` address. Python "
        "runs one core per process: on a machine with more cores, set it to the number of "
        "cores (at most 16) for more mail per second. The main process accepts each MX "
        "connection and hands it to the process serving the fewest sessions; the extra "
        "processes receive MX mail only, while submission, POP3, the web and the outbound "
        "queue stay in the main process. `[limits]` connection limits are counted per process.",
        maximum=16,
    )


@dataclass(frozen=True, slots=True)
class ListenSettings:
    """Addresses to listen on, `host:port` each (IPv6 as `[::1]:port`).

    Without a `[listen]` table every listener takes its development default on 127.0.0.1.
    With one, only the listeners it names are started: leave a key out, or set it to `""`,
    to turn that listener off.
    """

    smtp: HostPort | None = setting(
        HostPort("127.0.0.1", 2525),
        "Inbound SMTP (MX) for mail from the Internet. Port 25 in production.",
    )
    submission: HostPort | None = setting(
        HostPort("127.0.0.1", 5870), "Submission with STARTTLS and login (port 587 in production)."
    )
    submissions: HostPort | None = setting(
        HostPort("127.0.0.1", 4650), "Submission over implicit TLS (port 465 in production)."
    )
    pop3: HostPort | None = setting(
        HostPort("127.0.0.1", 1100), "POP3 with STLS (port 110 in production)."
    )
    pop3s: HostPort | None = setting(
        HostPort("127.0.0.1", 9950), "POP3 over implicit TLS (port 995 in production)."
    )
    imap: HostPort | None = setting(
        HostPort("127.0.0.1", 1430), "IMAP with STARTTLS (port 143 in production)."
    )
    imaps: HostPort | None = setting(
        HostPort("127.0.0.1", 9930), "IMAP over implicit TLS (port 993 in production)."
    )
    http: HostPort | None = setting(
        HostPort("127.0.0.1", 8080), "Webmail, member settings and the admin pages."
    )


@dataclass(frozen=True, slots=True)
class TlsSettings:
    """Certificate for STARTTLS, STLS and the implicit-TLS ports."""

    cert: Path | None = setting(
        None, "PEM certificate chain. Empty: `tls/cert.pem` in the data dir if it exists."
    )
    key: Path | None = setting(
        None, "PEM private key. Empty: `tls/key.pem` in the data dir if it exists."
    )


@dataclass(frozen=True, slots=True)
class StorageSettings:
    """Where accounts, mailboxes, messages and outcomes are kept."""

    url: str = setting(
        "",
        "`sqlite:///PATH` (a relative PATH is taken from the data dir; messages as files in "
        "the data dir) or `postgresql://USER@HOST/DB` (messages in the database, so several "
        "nodes share one store). Empty: `sqlite:///DATA_DIR/tayori.db`.",
    )


@dataclass(frozen=True, slots=True)
class LimitsSettings:
    """Sizes, counts and timeouts that protect the service from clients."""

    max_message_size: int = setting(
        50 * MB,
        "Largest message accepted, in bytes or with a unit (`50MB`). Announced in EHLO SIZE.",
    )
    max_recipients: int = setting(100, "Recipients accepted in one SMTP transaction.")
    max_connections: int = setting(1000, "Connections open at once, all protocols together.")
    max_connections_per_ip: int = setting(
        20, "Connections open at once from one client address, per protocol."
    )
    smtp_command_timeout: float = setting(
        300.0, "Seconds an SMTP client may stay silent between commands (RFC 5321 4.5.3.2: 5 min)."
    )
    smtp_data_timeout: float = setting(
        600.0, "Seconds allowed to receive the DATA of one message (RFC 5321: 10 min per block)."
    )
    pop3_idle_timeout: float = setting(
        600.0, "Seconds a POP3 client may stay idle (RFC 1939: at least 10 minutes)."
    )


@dataclass(frozen=True, slots=True)
class DnsSettings:
    """How Tayori asks DNS (MX lookups, sender checks)."""

    nameservers: list[HostPort] = setting(
        list,
        "Resolvers to ask, `host:port` each (port 53 when left out). Empty: the system resolver.",
        factory=True,
    )
    timeout: float = setting(5.0, "Seconds to wait for one DNS answer before a temporary failure.")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    """Password logins: where plain text is allowed and how guessing is slowed."""

    allow_plaintext_on_loopback: bool = setting(
        True, "Accept passwords without TLS from 127.0.0.0/8 and ::1 (local tools, tests)."
    )
    allow_plaintext: bool = setting(
        False, "Accept passwords without TLS from anywhere. Leave off outside a lab."
    )
    failure_delay: float = setting(
        1.0, "Seconds to wait before answering a failed login (slows guessing)."
    )
    max_failures_per_account: int = setting(
        10,
        "Failed logins for one account within `failure_window` before it is locked out. "
        "0: never lock accounts out.",
        minimum=0,
    )
    max_failures_per_ip: int = setting(
        30,
        "Failed logins from one client address within `failure_window` before it is locked "
        "out. 0: never lock addresses out.",
        minimum=0,
    )
    failure_window: float = setting(900.0, "Seconds over which failed logins are counted.")
    lockout: float = setting(900.0, "Seconds a locked-out account or address is refused.")
    verified_password_ttl: float = setting(
        900.0,
        "Seconds a password that passed the (deliberately slow) argon2 check is remembered, so "
        "mail programs that log in every few minutes do not cost 0.1 s of CPU each time. Only "
        "successes are remembered, as a keyed SHA-256 in the server's memory (never on disk); "
        "wrong passwords always pay the full cost. Whoever can read the server's memory could "
        "test guesses against recently used passwords quickly. 0: remember nothing.",
        minimum=0,
    )


@dataclass(frozen=True, slots=True)
class SubmissionDnsblSettings:
    """DNS blocklists for the networks members send from (off unless zones are listed).

    A member on a listed network (often a hijacked home router or a hotel network) is told
    which list and how to send anyway: from the webmail, or the network's own mail server.
    """

    zones: list[str] = setting(
        list, 'Blocklist zones to ask, e.g. `["zen.example.org"]`. Empty: no check.', factory=True
    )


@dataclass(frozen=True, slots=True)
class SubmissionSettings:
    """Members sending from their mail programs: limits that keep a stolen password from
    getting the whole service blocklisted."""

    messages_per_hour: int = setting(
        200, "Messages one account may send in an hour. 0: no limit.", minimum=0
    )
    messages_per_day: int = setting(
        1000, "Messages one account may send in a day. 0: no limit.", minimum=0
    )
    recipients_per_message: int = setting(100, "Recipients in one message.")
    recipients_per_day: int = setting(
        2000, "Recipients one account may send to in a day. 0: no limit.", minimum=0
    )
    flag_after: int = setting(
        3, "Times in a day an account may hit a limit before it is flagged for the admins."
    )
    dnsbl: SubmissionDnsblSettings = field(default_factory=SubmissionDnsblSettings)


@dataclass(frozen=True, slots=True)
class OutboundSettings:
    """Delivery to other providers: the durable queue, retries and bounces."""

    port: int = setting(25, "Port of remote mail servers (tests point it at a sink on loopback).")
    transport: dict[str, HostPort] = setting(
        dict,
        'Next hop per recipient domain instead of its MX, `{"example.org" = "relay:25"}`; '
        "the key `*` sends everything through one smarthost. Empty: MX lookup.",
        factory=True,
    )
    retry_initial: float = setting(300.0, "Seconds before the first retry of a deferred recipient.")
    retry_max: float = setting(
        14400.0, "Longest wait between retries; waits double from `retry_initial` up to this."
    )
    max_lifetime: float = setting(
        432000.0, "Seconds a message may stay queued before it is bounced (default 5 days)."
    )
    delay_warning: float = setting(
        14400.0, 'Seconds after which the sender gets a "still trying" notice. 0: never.', minimum=0
    )
    concurrency_per_destination: int = setting(
        10, "Connections open at once to one destination (next hop)."
    )
    connect_timeout: float = setting(30.0, "Seconds to wait for a remote server to answer.")
    command_timeout: float = setting(
        300.0, "Seconds to wait for each reply of a remote server (RFC 5321 4.5.3.2)."
    )


class CheckAction(StrEnum):
    """What an inbound check's failure does: refuse (5xx), ask to retry later (4xx), file
    the message in Junk, only add to the spam score, or nothing but a note in the headers."""

    REJECT = "reject"
    TEMPFAIL = "tempfail"
    JUNK = "junk"
    SCORE = "score"
    IGNORE = "ignore"


@dataclass(frozen=True, slots=True)
class DnsblZone:
    """One blocklist: its zone, what a listing does, and its weight in the spam score."""

    zone: str = setting("", "The list's DNS zone, e.g. `zen.example.org`.", required=True)
    action: CheckAction = setting(CheckAction.REJECT, "What a listing does.")
    weight: float = setting(5.0, "Added to the spam score for a listing.")


@dataclass(frozen=True, slots=True)
class InboundDnsblSettings:
    """DNS blocklists asked about every connecting server (none unless listed). A listed
    client is refused at RCPT with `554 5.7.1 Service unavailable; client [IP] blocked using
    ZONE` by default."""

    zones: list[DnsblZone] = setting(
        list,
        'Lists to ask, e.g. `[{ zone = "zen.example.org", action = "reject", weight = 5.0 }]`. '
        "Empty: no check.",
        factory=True,
    )


@dataclass(frozen=True, slots=True)
class InboundSettings:
    """Checks on mail from the Internet: the connecting server, the sender, SPF, DKIM and
    DMARC. Each check's failure action is one of reject, tempfail, junk, score, ignore."""

    checks: bool = setting(True, "Run the checks below at all (off: only the recipient checks).")
    fcrdns_action: CheckAction = setting(
        CheckAction.SCORE,
        "Client without forward-confirmed reverse DNS. `tempfail` is the strict mode "
        "(`450 4.7.25`, as many large providers do).",
    )
    fcrdns_score: float = setting(1.0, "Spam score added when FCrDNS fails.")
    helo_action: CheckAction = setting(
        CheckAction.SCORE, "Invalid HELO name, or a client naming itself as this server."
    )
    helo_score: float = setting(1.0, "Spam score added for an invalid HELO.")
    sender_domain_action: CheckAction = setting(
        CheckAction.REJECT,
        "MAIL FROM domain without MX or address records, or with a null MX "
        "(`550 5.1.8`; `450 4.1.8` while DNS fails).",
    )
    sender_domain_score: float = setting(3.0, "Spam score added for an unknown sender domain.")
    spf_action: CheckAction = setting(
        CheckAction.SCORE,
        "SPF result `fail` (`-all`). Evaluated at MAIL FROM, so `reject` and `tempfail` "
        "refuse at RCPT, before the message is sent. `softfail` (`~all`) only ever adds half "
        "the score.",
    )
    spf_score: float = setting(2.0, "Spam score added for SPF `fail` (half for `softfail`).")
    dkim_action: CheckAction = setting(CheckAction.SCORE, "A DKIM signature that does not verify.")
    dkim_score: float = setting(1.0, "Spam score added for a failed DKIM signature.")
    dmarc_reject_action: CheckAction = setting(
        CheckAction.JUNK,
        "DMARC failure where the From: domain asks `p=reject`. Junk by default: forwarding "
        "and mailing lists break DMARC for real mail too, and Junk keeps it findable.",
    )
    dmarc_quarantine_action: CheckAction = setting(
        CheckAction.JUNK,
        "DMARC failure where the From: domain asks `p=quarantine`. A record with `pct=` "
        "below 100 has its policy applied to that share of failing mail only (chosen by "
        "Message-ID, so a retry gets the same answer); the rest gets the next weaker policy "
        "(`reject` → `quarantine` → `none`), noted in Authentication-Results.",
    )
    dmarc_score: float = setting(3.0, "Spam score added for a DMARC failure.")
    trusted_networks: list[str] = setting(
        list,
        "Addresses or networks (`192.0.2.0/24`, `2001:db8::/32`) of servers that relay mail "
        "to us on others' behalf: our own backup MX, a filtering front end. Mail from them "
        "skips DNSBL, FCrDNS and HELO, which would judge the relay rather than the sender, "
        "and SPF is checked for the host the relay names in the Received field it added "
        "(not at all when that field cannot be read: DMARC then rests on DKIM). The sender "
        "domain, DKIM, DMARC, members' rules and the spam block still apply; the outcome "
        "detail says `relay.trusted`. Empty: nobody, not even loopback.",
        factory=True,
    )
    dnsbl: InboundDnsblSettings = field(default_factory=InboundDnsblSettings)


# --- [spam] (issue 3, helper "forwarding") ---------------------------------------------
class SpamEngineKind(StrEnum):
    """The engine that scores inbound mail."""

    BUILTIN = "builtin"
    RSPAMD = "rspamd"


@dataclass(frozen=True, slots=True)
class SpamServiceSettings:
    """The spam block's service-wide settings (members choose on/off and sensitivity)."""

    junk_retention_days: int = setting(
        30,
        "Days a message is kept in a member's Junk folder; older ones are deleted (outcome "
        "`junk.expired`) every hour by `tayori serve` and by `tayori junk expire`. "
        "0: keep Junk for ever.",
        minimum=0,
    )
    # Engine choice (issue 3, helper "spam").
    engine: SpamEngineKind = setting(
        SpamEngineKind.BUILTIN,
        "Which engine scores mail: `builtin` (Tayori's own classifier) or `rspamd` (rspamd's "
        "HTTP API at `rspamd_url`; when it does not answer, the built-in engine scores "
        "instead and the fall-back is logged as `spam.rspamd_unreachable`). Learning always "
        "also trains the built-in engine.",
    )
    rspamd_url: str = setting(
        "http://127.0.0.1:11334",
        "rspamd's controller (`/checkv2` for scoring, `/learnspam` and `/learnham` for "
        'learning), with `engine = "rspamd"`.',
    )
    rspamd_timeout: float = setting(
        2.0,
        "Seconds to wait for rspamd before scoring with the built-in engine; rspamd is then "
        "left alone for 30 seconds.",
    )
    rspamd_password: str = setting(
        "",
        "Sent as rspamd's `Password` header when learning (the controller's "
        "`enable_password`); empty: none.",
    )


@dataclass(frozen=True, slots=True)
class HistorySettings:
    """How long outcomes (the delivery history members and admins read) are kept."""

    retention_days: int = setting(
        90,
        "Days an outcome is kept; older ones are deleted every hour by `tayori serve` and by "
        "`tayori history purge`. 0: keep them for ever.",
        minimum=0,
    )


@dataclass(frozen=True, slots=True)
class DoctorSettings:
    """The mail doctor (`tayori doctor`, the member's doctor page)."""

    large_message_size: int = setting(
        20 * MB,
        "Inbox messages at least this large are reported as likely to stall mail programs.",
    )


@dataclass(frozen=True, slots=True)
class WebSettings:
    """The webmail and JSON API served on `[listen] http`."""

    public_url: str = setting(
        "",
        "The address members type, e.g. `https://mail.example.jp/`. Empty: taken from each "
        "request. An `https://` URL marks session cookies Secure even behind a proxy that "
        "speaks plain HTTP to Tayori.",
    )
    trusted_proxies: list[str] = setting(
        list,
        "Addresses or networks (`10.0.0.0/8`) of reverse proxies whose `X-Forwarded-For` and "
        "`X-Forwarded-Proto` are believed. Empty: the connecting address is the client.",
        factory=True,
    )
    session_idle_timeout: float = setting(
        3600.0, "Seconds without a request after which a webmail session is signed out."
    )
    session_absolute_timeout: float = setting(
        7 * 86400.0, "Seconds after sign-in after which a session ends however active it is."
    )
    insecure_cookies_on_loopback: bool = setting(
        True,
        "Leave the Secure flag off session cookies for plain-HTTP requests from 127.0.0.0/8 "
        "and ::1 (local testing); everywhere else cookies are Secure.",
    )
    time_zone: str = setting(
        "Asia/Tokyo", "Time zone dates are shown in for members who have not chosen one."
    )
    language: str = setting(
        "ja",
        "Language for members who have not chosen one and whose browser asks for neither "
        "Japanese nor English (`ja` or `en`).",
    )
    page_size: int = setting(50, "Messages per page in a folder's message list.")
    large_message_size: int = setting(
        10 * MB, "Messages at least this large are marked in message lists."
    )


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    tls: TlsSettings = field(default_factory=TlsSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    limits: LimitsSettings = field(default_factory=LimitsSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    submission: SubmissionSettings = field(default_factory=SubmissionSettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    inbound: InboundSettings = field(default_factory=InboundSettings)
    spam: SpamServiceSettings = field(default_factory=SpamServiceSettings)
    web: WebSettings = field(default_factory=WebSettings)
    history: HistorySettings = field(default_factory=HistorySettings)
    doctor: DoctorSettings = field(default_factory=DoctorSettings)
    source: Path | None = None
    """The file these settings came from (not a key)."""
