"""The config loader: every key typed, every problem named with key, value and reason."""

from __future__ import annotations

import contextlib
import io
import json
import socket
import tomllib
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from tayori.config.loader import (
    CONFIG_ENV,
    InvalidConfigError,
    Kind,
    config_path,
    load_settings,
    parse_hostport,
    section_fields,
    sections,
    settings_from_mapping,
)
from tayori.config.reference import render_config_file
from tayori.config.settings import HostPort, Settings
from tayori.core.errors import ConfigError


def write(directory: Path, text: str, name: str = "tayori.toml") -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(data: dict[str, Any], source: Path) -> list[str]:
    with pytest.raises(InvalidConfigError) as caught:
        settings_from_mapping(data, source)
    return [str(problem) for problem in caught.value.problems]


@pytest.fixture
def source(tmp_path: Path) -> Path:
    """A config file path in an existing directory (the file itself need not exist)."""
    return tmp_path / "tayori.toml"


# --- a good config -------------------------------------------------------------------------


GOOD = """
[server]
hostname = "mx1.example.jp"
data_dir = "data"

[listen]
smtp = "0.0.0.0:25"
pop3 = "[::1]:110"
pop3s = ""

[storage]
url = "sqlite:///mail.db"

[limits]
max_message_size = "20MB"
max_recipients = 50
smtp_command_timeout = 120

[dns]
nameservers = ["127.0.0.1:5353", "192.0.2.53", "[2001:db8::53]:53"]
timeout = 0.5

[auth]
allow_plaintext = true
failure_delay = 0
"""


def test_good_config(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    settings = load_settings(write(tmp_path, GOOD))
    assert settings.source == tmp_path / "tayori.toml"
    assert settings.server.hostname == "mx1.example.jp"
    assert settings.server.data_dir == tmp_path / "data"
    assert settings.listen.smtp == HostPort("0.0.0.0", 25)
    assert settings.listen.pop3 == HostPort("::1", 110)
    assert str(settings.listen.pop3) == "[::1]:110"
    assert settings.listen.pop3s is None
    # A [listen] table names the listeners to run: the others are off.
    assert settings.listen.submission is None
    assert settings.listen.http is None
    assert settings.storage.url == f"sqlite:///{tmp_path / 'data' / 'mail.db'}"
    assert settings.limits.max_message_size == 20_000_000
    assert settings.limits.max_recipients == 50
    assert settings.limits.smtp_command_timeout == 120.0
    assert isinstance(settings.limits.smtp_command_timeout, float)
    assert settings.limits.smtp_data_timeout == 600.0  # default
    assert settings.dns.nameservers == [
        HostPort("127.0.0.1", 5353),
        HostPort("192.0.2.53", 53),
        HostPort("2001:db8::53", 53),
    ]
    assert settings.dns.timeout == 0.5
    assert settings.auth.allow_plaintext is True
    assert settings.auth.failure_delay == 0.0


def test_empty_config_takes_every_default(source: Path) -> None:
    settings = settings_from_mapping({}, source)
    defaults = Settings()
    assert settings.listen == defaults.listen
    assert settings.limits == defaults.limits
    assert settings.dns == defaults.dns
    assert settings.auth == defaults.auth
    assert settings.server.data_dir == source.parent
    assert settings.server.hostname == socket.getfqdn()
    assert settings.storage.url == f"sqlite:///{source.parent / 'tayori.db'}"
    assert settings.tls.cert is None
    assert settings.tls.key is None


def test_the_file_init_writes_loads_to_the_defaults(source: Path) -> None:
    settings = settings_from_mapping(tomllib.loads(render_config_file()), source)
    assert settings.listen == Settings().listen
    assert settings.limits == Settings().limits


def test_init_values_are_written_uncommented(source: Path) -> None:
    text = render_config_file({"server": {"hostname": "mx.example.jp"}})
    assert 'hostname = "mx.example.jp"' in text.splitlines()
    assert settings_from_mapping(tomllib.loads(text), source).server.hostname == "mx.example.jp"


def test_every_field_has_a_doc_and_a_readable_type() -> None:
    for _name, cls in sections():
        for item, kind in section_fields(cls):
            assert item.metadata.get("doc"), item.name
            assert isinstance(kind, Kind)


def test_zero_where_the_key_gives_it_a_meaning(source: Path) -> None:
    settings = settings_from_mapping({"auth": {"max_failures_per_account": 0}}, source)
    assert settings.auth.max_failures_per_account == 0
    (problem,) = problems_of({"auth": {"max_failures_per_ip": -1}}, source)
    assert problem == "auth.max_failures_per_ip = -1: must be at least 0"


def test_size_keys_take_plain_bytes_too(source: Path) -> None:
    settings = settings_from_mapping({"limits": {"max_message_size": 1048576}}, source)
    assert settings.limits.max_message_size == 1048576


# --- paths ------------------------------------------------------------------------------------


def test_data_dir_is_taken_from_the_config_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "etc").mkdir()
    (tmp_path / "var").mkdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    path = write(tmp_path / "etc", '[server]\ndata_dir = "../var"\n')
    settings = load_settings(path)
    assert settings.server.data_dir == tmp_path / "var"
    assert settings.storage.url == f"sqlite:///{tmp_path / 'var' / 'tayori.db'}"


def test_absolute_data_dir(tmp_path: Path) -> None:
    target = tmp_path / "abs"
    target.mkdir()
    settings = settings_from_mapping({"server": {"data_dir": str(target)}}, None)
    assert settings.server.data_dir == target


def test_without_a_file_relative_paths_follow_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert settings_from_mapping({}, None).server.data_dir == tmp_path


def test_tls_defaults_to_the_files_in_the_data_dir(source: Path) -> None:
    tls = source.parent / "tls"
    tls.mkdir()
    (tls / "cert.pem").write_text("cert")
    (tls / "key.pem").write_text("key")
    settings = settings_from_mapping({}, source)
    assert settings.tls.cert == tls / "cert.pem"
    assert settings.tls.key == tls / "key.pem"


def test_relative_tls_paths_are_taken_from_the_data_dir(source: Path) -> None:
    data = source.parent / "data"
    (data / "certs").mkdir(parents=True)
    (data / "certs" / "c.pem").write_text("cert")
    (data / "certs" / "k.pem").write_text("key")
    settings = settings_from_mapping(
        {"server": {"data_dir": "data"}, "tls": {"cert": "certs/c.pem", "key": "certs/k.pem"}},
        source,
    )
    assert settings.tls.cert == data / "certs" / "c.pem"
    assert settings.tls.key == data / "certs" / "k.pem"


def test_postgres_url_is_kept(source: Path) -> None:
    url = "postgresql://tayori@db.example.jp/tayori"
    assert settings_from_mapping({"storage": {"url": url}}, source).storage.url == url


# --- every kind of problem ----------------------------------------------------------------------


def test_bad_size_names_key_value_and_reason(source: Path) -> None:
    assert problems_of({"limits": {"max_message_size": "fifty"}}, source) == [
        'limits.max_message_size = "fifty": not a size; write e.g. '
        "1048576, 500KB, 50MB, 1GB or 2GiB"
    ]


@pytest.mark.parametrize(
    ("section", "key", "value", "reason"),
    [
        ("limits", "max_recipients", "100", "must be a whole number"),
        ("limits", "max_recipients", 1.5, "must be a whole number"),
        ("limits", "max_recipients", True, "must be a whole number"),
        ("limits", "max_recipients", 0, "must be at least 1"),
        ("limits", "max_message_size", 0, "must be at least 1 byte"),
        ("limits", "max_message_size", True, "not a size"),
        ("limits", "smtp_command_timeout", 0, "a timeout must be more than 0 seconds"),
        ("limits", "smtp_data_timeout", -1, "a timeout must be more than 0 seconds"),
        ("limits", "pop3_idle_timeout", "10m", "must be a number of seconds"),
        ("limits", "pop3_idle_timeout", float("inf"), "must be a finite number"),
        ("auth", "failure_delay", -0.5, "cannot be negative"),
        ("auth", "allow_plaintext", "yes", "must be true or false"),
        ("auth", "allow_plaintext", 1, "must be true or false"),
        ("server", "hostname", 42, "must be a string"),
        ("server", "hostname", "bad host!", "neither an IP address nor a host name"),
        ("listen", "smtp", 25, "must be a string"),
        ("listen", "smtp", "127.0.0.1", "the port is missing"),
        ("listen", "smtp", "127.0.0.1:0", "the port must be a number from 1 to 65535"),
        ("listen", "smtp", "127.0.0.1:65536", "the port must be a number from 1 to 65535"),
        ("listen", "smtp", "127.0.0.1:smtp", "the port must be a number from 1 to 65535"),
        ("listen", "smtp", ":25", "the host is missing"),
        ("listen", "smtp", "::1:25", "put IPv6 addresses in brackets"),
        ("listen", "smtp", "[::1:25", "missing ']'"),
        ("listen", "smtp", "[mail]:25", "is not an IPv6 address"),
        ("listen", "smtp", "[::1]25", "unexpected '25' after ']'"),
        ("listen", "smtp", "300.1.1.1:25", "is not an IPv4 address"),
        ("listen", "smtp", "bad_host:25", "neither an IP address nor a host name"),
        ("dns", "nameservers", "127.0.0.1:53", "must be a list"),
        ("storage", "url", "mysql://db/tayori", "unsupported store"),
        ("storage", "url", "sqlite://", "must name a SQLite file"),
    ],
)
def test_bad_values(source: Path, section: str, key: str, value: Any, reason: str) -> None:
    (problem,) = problems_of({section: {key: value}}, source)
    assert problem.startswith(f"{section}.{key} = ")
    assert reason in problem


def test_bad_list_items_are_named_by_index(source: Path) -> None:
    problems = problems_of({"dns": {"nameservers": ["127.0.0.1:53", 53, "x:99999"]}}, source)
    assert problems == [
        'dns.nameservers[1] = 53: must be a string "host:port"',
        "dns.nameservers[2] = \"x:99999\": the port must be a number from 1 to 65535, not '99999'",
    ]


def test_unknown_key_suggests_the_close_one(source: Path) -> None:
    assert problems_of({"limits": {"max_mesage_size": "10MB"}}, source) == [
        'limits.max_mesage_size = "10MB": unknown key; did you mean limits.max_message_size?'
    ]


def test_key_in_the_wrong_section_points_to_the_right_one(source: Path) -> None:
    (problem,) = problems_of({"server": {"max_message_size": 10}}, source)
    assert problem == (
        "server.max_message_size = 10: unknown key in [server]; "
        "did you mean limits.max_message_size?"
    )


def test_unknown_key_without_suggestion(source: Path) -> None:
    assert problems_of({"server": {"colour": "blue"}}, source) == [
        'server.colour = "blue": unknown key in [server]'
    ]


def test_unknown_section_suggests_the_close_one(source: Path) -> None:
    (problem,) = problems_of({"limit": {"max_recipients": 5}}, source)
    assert problem == "limit: unknown section [limit]; did you mean [limits]?"


def test_unknown_section_lists_the_sections(source: Path) -> None:
    # Not close to any section name, so that no "did you mean" replaces the list.
    (problem,) = problems_of({"frobnicator": {}}, source)
    assert "unknown section [frobnicator]" in problem
    assert "[server]" in problem
    assert "[limits]" in problem


def test_top_level_key_points_to_its_section(source: Path) -> None:
    assert problems_of({"hostname": "mx.example.jp"}, source) == [
        'hostname = "mx.example.jp": keys belong in a section; did you mean server.hostname?'
    ]


def test_section_that_is_not_a_table(source: Path) -> None:
    (problem,) = problems_of({"server": "mx.example.jp"}, source)
    assert problem == 'server = "mx.example.jp": must be a table: write [server] on its own line'


def test_two_listeners_on_one_address(source: Path) -> None:
    (problem,) = problems_of(
        {"listen": {"smtp": "127.0.0.1:2525", "pop3": "127.0.0.1:2525"}}, source
    )
    assert problem == (
        'listen.pop3 = "127.0.0.1:2525": listen.smtp uses 127.0.0.1:2525 already; '
        "each listener needs its own host:port"
    )


def test_wildcard_listener_clashes_with_a_specific_one(source: Path) -> None:
    (problem,) = problems_of({"listen": {"smtp": "0.0.0.0:25", "pop3": "192.0.2.1:25"}}, source)
    assert problem.startswith('listen.pop3 = "192.0.2.1:25": listen.smtp uses 0.0.0.0:25')


def test_same_port_on_different_addresses_is_fine(source: Path) -> None:
    settings = settings_from_mapping(
        {"listen": {"smtp": "127.0.0.1:25", "pop3": "127.0.0.2:25"}}, source
    )
    assert settings.listen.pop3 == HostPort("127.0.0.2", 25)


def test_tls_cert_without_key(source: Path) -> None:
    (source.parent / "cert.pem").write_text("cert")
    (problem,) = problems_of({"tls": {"cert": "cert.pem"}}, source)
    assert problem.startswith("tls.key: tls.cert is set but tls.key is not")
    assert "set both or neither" in problem


def test_tls_files_must_exist(source: Path) -> None:
    problems = problems_of({"tls": {"cert": "nope.pem", "key": "/no/such/key.pem"}}, source)
    assert problems == [
        f'tls.cert = "nope.pem": file {source.parent / "nope.pem"} not found',
        'tls.key = "/no/such/key.pem": file /no/such/key.pem not found',
    ]


def test_missing_data_dir_says_how_to_create_it(source: Path) -> None:
    (problem,) = problems_of({"server": {"data_dir": "nope"}}, source)
    assert problem.startswith('server.data_dir = "nope": directory ')
    assert "tayori init --data-dir" in problem


def test_data_dir_that_is_a_file(source: Path) -> None:
    (source.parent / "afile").write_text("")
    (problem,) = problems_of({"server": {"data_dir": "afile"}}, source)
    assert "is not a directory" in problem


def test_every_problem_is_reported_at_once(source: Path) -> None:
    problems = problems_of(
        {
            "limits": {"max_message_size": "fifty", "max_recipients": 0, "typo": 1},
            "listen": {"smtp": "nowhere"},
            "bogus": {},
        },
        source,
    )
    assert len(problems) == 5


def test_error_text_lists_every_problem_with_the_file(source: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(
            {"limits": {"max_message_size": "fifty", "max_recipients": 0}}, source
        )
    text = str(caught.value)
    assert text.splitlines()[0] == f"{source}: 2 problems:"
    assert '  limits.max_message_size = "fifty": not a size' in text
    assert "  limits.max_recipients = 0: must be at least 1" in text


def test_storage_url_password_is_not_echoed(source: Path) -> None:
    (problem,) = problems_of({"storage": {"url": "mysql://u:secret@db/x"}}, source)
    assert "secret" not in problem


# --- reading the file -------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found; create one with `tayori init`"):
        load_settings(tmp_path / "nope.toml")


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "[server]\nhostname = mx\n")
    with pytest.raises(ConfigError, match=r"not valid TOML: .*line 2"):
        load_settings(path)


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "tayori.toml"
    path.write_bytes(b'[server]\nhostname = "\xff"\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(path)


def test_a_directory_is_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path)


def test_config_path_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    assert config_path(None) == Path("tayori.toml")
    monkeypatch.setenv(CONFIG_ENV, "/etc/tayori/tayori.toml")
    assert config_path(None) == Path("/etc/tayori/tayori.toml")
    assert config_path("given.toml") == Path("given.toml")


# --- host:port ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:25", HostPort("127.0.0.1", 25)),
        ("localhost:2525", HostPort("localhost", 2525)),
        ("mail.example.jp.:587", HostPort("mail.example.jp", 587)),
        ("[::]:993", HostPort("::", 993)),
        ("[2001:db8::1]:65535", HostPort("2001:db8::1", 65535)),
        (" 0.0.0.0:1 ", HostPort("0.0.0.0", 1)),
    ],
)
def test_parse_hostport(text: str, expected: HostPort) -> None:
    assert parse_hostport(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("192.0.2.1", HostPort("192.0.2.1", 53)), ("::1", HostPort("::1", 53))],
)
def test_parse_hostport_default_port(text: str, expected: HostPort) -> None:
    assert parse_hostport(text, default_port=53) == expected


def test_nested_tables_lists_and_transport_map(source: Path) -> None:
    data = tomllib.loads(
        "[submission]\nmessages_per_hour = 5\n"
        '[submission.dnsbl]\nzones = ["bl.example.test"]\n'
        '[outbound]\ntransport = { "*" = "127.0.0.1:2626", "Example.ORG" = "[::1]:25" }\n'
    )
    settings = settings_from_mapping(data, source)
    assert settings.submission.messages_per_hour == 5
    assert settings.submission.dnsbl.zones == ["bl.example.test"]
    assert settings.outbound.transport == {
        "*": HostPort("127.0.0.1", 2626),
        "example.org": HostPort("::1", 25),
    }


def test_nested_table_problems_are_named_by_dotted_key(source: Path) -> None:
    assert problems_of(
        {
            "submission": {"dnsbl": {"zonez": ["x"]}},
            "outbound": {"transport": {"bad host": "x", "ok.example": 25}},
        },
        source,
    ) == [
        'submission.dnsbl.zonez = ["x"]: unknown key; did you mean submission.dnsbl.zones?',
        "outbound.transport.bad host = \"x\": 'bad host' is neither an IP address nor a host name",
        'outbound.transport.ok.example = 25: must be a string "host:port"',
    ]
    assert problems_of({"submission": {"dnsbl": "zen"}}, source) == [
        'submission.dnsbl = "zen": must be a table: write [submission.dnsbl]'
    ]


# --- address lists that serve parses at start-up --------------------------------------------


@pytest.mark.parametrize(
    ("section", "key"), [("inbound", "trusted_networks"), ("web", "trusted_proxies")]
)
def test_bad_network_entries_are_named_by_index(source: Path, section: str, key: str) -> None:
    good = ["192.0.2.25", "192.0.2.0/24", "2001:db8::/32", "10.1.2.3/8"]
    problems = problems_of({section: {key: [*good, "mx.example.jp", "192.0.2.0/33"]}}, source)
    assert problems == [
        f'{section}.{key}[4] = "mx.example.jp": not an address or network; write an address '
        "or a network, e.g. 192.0.2.25, 192.0.2.0/24 or 2001:db8::/32",
        f'{section}.{key}[5] = "192.0.2.0/33": not an address or network; write an address '
        "or a network, e.g. 192.0.2.25, 192.0.2.0/24 or 2001:db8::/32",
    ]
    settings = settings_from_mapping({section: {key: good}}, source)
    assert getattr(getattr(settings, section), key) == good


def test_network_entries_are_read_as_serve_reads_them(source: Path) -> None:
    """The inbound pipeline strips spaces around an entry, the web layer does not: the check
    refuses exactly what `serve` would refuse."""
    from tayori.pipeline.inbound import trusted_networks
    from tayori.web.context import check_web_settings

    spaced = [" 192.0.2.25 "]
    settings = settings_from_mapping({"inbound": {"trusted_networks": spaced}}, source)
    assert [str(n) for n in trusted_networks(settings.inbound.trusted_networks)] == [
        "192.0.2.25/32"
    ]
    (problem,) = problems_of({"web": {"trusted_proxies": spaced}}, source)
    assert problem.startswith('web.trusted_proxies[0] = " 192.0.2.25 ": not an address')
    with pytest.raises(ConfigError, match=r"web\.trusted_proxies"):
        check_web_settings(replace(settings.web, trusted_proxies=spaced))


def test_config_check_lists_bad_networks_with_other_problems(tmp_path: Path) -> None:
    from tayori.cli import main

    path = write(
        tmp_path,
        '[inbound]\ntrusted_networks = ["192.0.2.0/24", "backup-mx"]\n\n'
        '[web]\ntrusted_proxies = ["10.0.0.0/8", "10.0.0.300"]\n\n'
        "[limits]\nmax_recipients = 0\n",
    )
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main(["config", "check", "--config", str(path)]) == 1
    text = out.getvalue()
    assert text.splitlines()[0] == f"{path}: 3 problems:"
    assert '  inbound.trusted_networks[1] = "backup-mx": not an address or network' in text
    assert '  web.trusted_proxies[1] = "10.0.0.300": not an address or network' in text


# --- [web] values serve checks at start-up ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        (
            "time_zone",
            "Mars/Olympus",
            "not a known time zone; write a name from the time zone database, e.g. "
            "Asia/Tokyo or UTC (the case matters)",
        ),
        ("time_zone", "asia/tokyo", "not a known time zone"),
        ("time_zone", "../etc/passwd", "not a known time zone"),
        ("time_zone", "", "not a known time zone"),
        ("language", "fr", 'must be "ja" or "en"'),
        ("language", "JA", 'must be "ja" or "en"'),
        ("language", "", 'must be "ja" or "en"'),
        (
            "public_url",
            "mail.example.jp",
            "must start with https:// (or http://), e.g. https://mail.example.jp/",
        ),
        ("public_url", "ftp://mail.example.jp/", "must start with https://"),
    ],
)
def test_bad_web_values_are_named_with_key_value_and_reason(
    source: Path, key: str, value: str, reason: str
) -> None:
    (problem,) = problems_of({"web": {key: value}}, source)
    assert problem.startswith(f"web.{key} = {json.dumps(value)}: {reason}")


def test_good_web_values_pass(source: Path) -> None:
    settings = settings_from_mapping(
        {"web": {"time_zone": "Europe/London", "language": "en", "public_url": "http://x.test/"}},
        source,
    )
    assert (settings.web.time_zone, settings.web.language) == ("Europe/London", "en")
    assert settings_from_mapping({"web": {"public_url": ""}}, source).web.public_url == ""


def test_every_bad_web_value_is_reported_at_once(source: Path) -> None:
    problems = problems_of(
        {"web": {"time_zone": "Tokyo", "language": "de", "public_url": "mail.example.jp"}},
        source,
    )
    assert [problem.partition(" = ")[0] for problem in problems] == [
        "web.time_zone",
        "web.language",
        "web.public_url",
    ]


@pytest.mark.parametrize(
    ("key", "value", "bad"),
    [
        ("time_zone", "Asia/Tokyo", False),
        ("time_zone", "UTC", False),
        ("time_zone", "Asia", True),
        ("time_zone", "Asia/Tokyo ", True),
        ("time_zone", "/usr/share/zoneinfo/UTC", True),
        ("time_zone", "", True),
        ("language", "en", False),
        ("language", "ja ", True),
        ("language", "ja-JP", True),
        ("public_url", "", False),
        ("public_url", "https://mail.example.jp/", False),
        ("public_url", "HTTPS://mail.example.jp/", True),
        ("public_url", "//mail.example.jp/", True),
    ],
)
def test_web_values_are_refused_exactly_when_serve_refuses_them(
    source: Path, key: str, value: str, bad: bool
) -> None:
    """`tayori config check` and `serve` agree on every value, good or bad."""
    from tayori.config.settings import WebSettings
    from tayori.web.context import check_web_settings

    try:
        check_web_settings(replace(WebSettings(), **{key: value}))
    except ConfigError as error:
        assert f"web.{key}" in str(error)
        refused = True
    else:
        refused = False
    assert refused is bad
    if refused:
        (problem,) = problems_of({"web": {key: value}}, source)
        assert problem.startswith(f"web.{key} = ")
    else:
        settings = settings_from_mapping({"web": {key: value}}, source)
        assert getattr(settings.web, key) == value


def test_config_check_lists_bad_web_values(tmp_path: Path) -> None:
    from tayori.cli import main

    path = write(tmp_path, '[web]\ntime_zone = "JST"\nlanguage = "jp"\n')
    out = io.StringIO()
    with contextlib.redirect_stderr(out):
        assert main(["config", "check", "--config", str(path)]) == 1
    lines = out.getvalue().splitlines()
    assert lines[0] == f"{path}: 2 problems:"
    assert lines[1].startswith('  web.time_zone = "JST": not a known time zone')
    assert lines[2] == '  web.language = "jp": must be "ja" or "en"'
