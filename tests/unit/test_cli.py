"""The `tayori` command, run in-process against a SQLite instance in a temporary directory."""

from __future__ import annotations

import io
import json
import shutil
import stat
import sys
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tayori.auth.passwords import verify_password
from tayori.cli import CommandError, main, parse_since
from tayori.config.loader import CONFIG_ENV, load_settings
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.storage.factory import Stores, open_stores
from tayori.storage.records import MessageSummary, NewMessage, SpecialUse

DOMAIN = "example.test"


class FakeStdin(io.StringIO):
    """stdin with the answers typed in advance, a terminal or a pipe."""

    def __init__(self, text: str = "", *, tty: bool = False) -> None:
        super().__init__(text)
        self._tty = tty

    def isatty(self) -> bool:
        return self._tty


@dataclass
class Result:
    status: int
    out: str
    err: str


Tayori = Callable[..., Result]


@pytest.fixture(autouse=True)
def _no_config_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Tayori:
    """`run(*argv, stdin=..., tty=...)`: main() with the given stdin, output captured."""

    def call(*argv: str, stdin: str = "", tty: bool = False) -> Result:
        monkeypatch.setattr(sys, "stdin", FakeStdin(stdin, tty=tty))
        status = main(list(argv))
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return call


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One initialised instance per module, copied per test (init costs a migration)."""
    data = tmp_path_factory.mktemp("template") / "var"
    status = main(["init", "--data-dir", str(data), "--domain", DOMAIN, "--hostname", "mx.test"])
    assert status == 0
    return data


@pytest.fixture
def config(template: Path, tmp_path: Path) -> Path:
    data = tmp_path / "var"
    shutil.copytree(template, data)
    return data / "tayori.toml"


@pytest.fixture
def tayori(run: Tayori, config: Path) -> Tayori:
    """`run` with `--config` of a fresh instance hosting example.test."""
    return lambda *argv, **kwargs: run("--config", str(config), *argv, **kwargs)


@pytest.fixture
def stores(config: Path) -> Iterator[Stores]:
    settings = load_settings(config)
    opened = open_stores(settings.storage.url, settings.server.data_dir)
    yield opened
    opened.close()


def add_user(tayori: Tayori, address: str, *extra: str, password: str = "s3cret") -> Result:
    return tayori("user", "add", address, "--password-stdin", *extra, stdin=password + "\n")


def deliver(stores: Stores, address: str, body: bytes) -> str:
    """Put one message in an account's INBOX as delivery would."""
    account = stores.metadata.get_account(address)
    assert account is not None
    ref = stores.blobs.put([body])
    outcome = Outcome(
        Direction.INBOUND, "a@sender.test", address, OutcomeKind.DELIVERED, "delivered"
    )
    stores.metadata.append_messages(
        [
            NewMessage(
                account_id=account.id,
                mailbox=SpecialUse.INBOX,
                blob_ref=ref,
                size=len(body),
                internal_date=datetime.now(UTC),
                summary=MessageSummary(subject="hello"),
                on_delivered=outcome,
                on_over_quota=outcome,
            )
        ]
    )
    return ref


# --- init -------------------------------------------------------------------------------------


def test_init_lays_out_the_data_dir(run: Tayori, tmp_path: Path) -> None:
    data = tmp_path / "new"
    result = run("init", "--data-dir", str(data), "--domain", "Example.JP", "--demo")
    assert result.status == 0, result.err
    config = data / "tayori.toml"
    assert config.is_file()
    assert (data / "tayori.db").is_file()
    assert (data / "tls" / "cert.pem").is_file()
    assert stat.S_IMODE((data / "tls" / "key.pem").stat().st_mode) == 0o600
    assert stat.S_IMODE(config.stat().st_mode) == 0o600
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert tomllib.loads(config.read_text())  # valid TOML, every key documented inside
    settings = load_settings(config)
    assert settings.server.data_dir == data
    assert settings.tls.cert == data / "tls" / "cert.pem"
    # Where the webmail will be is said next to how to start the server.
    assert f"open http://{settings.listen.http}/ in a browser" in result.out
    # The demo passwords are printed once and work.
    passwords = {}
    for line in result.out.splitlines():
        words = line.split()
        if len(words) == 2 and words[0].endswith("@example.jp"):
            passwords[words[0]] = words[1]
    assert sorted(passwords) == ["alice@example.jp", "bob@example.jp"]
    opened = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        assert [d.name for d in opened.metadata.list_domains()] == ["example.jp"]
        for address, password in passwords.items():
            account = opened.metadata.get_account(address)
            assert account is not None
            assert verify_password(account.password_hash, password)
    finally:
        opened.close()
    assert "tayori serve --config" in result.out


def test_init_demo_without_domain_uses_example_test(run: Tayori, tmp_path: Path) -> None:
    result = run("init", "--data-dir", str(tmp_path / "d"), "--demo")
    assert result.status == 0, result.err
    assert "alice@example.test" in result.out


def test_init_without_domain_says_to_add_one(run: Tayori, tmp_path: Path) -> None:
    result = run("init", "--data-dir", str(tmp_path / "d"))
    assert result.status == 0, result.err
    assert "domain add YOUR.DOMAIN" in result.out


def test_init_refuses_to_overwrite(run: Tayori, config: Path) -> None:
    before = config.read_text()
    result = run("init", "--data-dir", str(config.parent))
    assert result.status == 1
    assert "exists already; init never overwrites a config" in result.err
    assert config.read_text() == before


def test_init_bad_domain_writes_nothing(run: Tayori, tmp_path: Path) -> None:
    result = run("init", "--data-dir", str(tmp_path / "d"), "--domain", "not a domain")
    assert result.status == 1
    assert result.err.startswith("error: 'not a domain' is not")
    assert not (tmp_path / "d").exists()


def test_init_bad_hostname(run: Tayori, tmp_path: Path) -> None:
    result = run("init", "--data-dir", str(tmp_path / "d"), "--hostname", "bad host")
    assert result.status == 1
    assert "--hostname: " in result.err
    assert not (tmp_path / "d").exists()


def test_init_takes_no_config_option(run: Tayori, tmp_path: Path) -> None:
    result = run("--config", str(tmp_path / "x.toml"), "init", "--data-dir", str(tmp_path))
    assert result.status == 1
    assert "choose where with --data-dir" in result.err


def test_failed_init_leaves_a_new_dir_absent(
    run: Tayori, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(url: str, data_dir: Path) -> None:
        (data_dir / "tayori.db").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("tayori.storage.factory.migrate", broken)
    result = run("init", "--data-dir", str(tmp_path / "d"))
    assert result.status == 1
    assert "No space left on device" in result.err
    assert not (tmp_path / "d").exists()


def test_failed_init_in_an_existing_dir_removes_only_what_it_made(
    run: Tayori, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(url: str, data_dir: Path) -> None:
        (data_dir / "tayori.db").write_text("half")
        raise OSError(28, "No space left on device")

    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setattr("tayori.storage.factory.migrate", broken)
    assert run("init", "--data-dir", str(tmp_path)).status == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


# --- config, serve, migrate, docs -------------------------------------------------------------


def test_config_check_ok(tayori: Tayori, config: Path) -> None:
    result = tayori("config", "check")
    assert (result.status, result.out) == (0, f"ok: {config}\n")


def test_config_check_lists_every_problem(run: Tayori, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[limits]\nmax_message_size = "fifty"\nmax_recipents = 5\n')
    result = run("config", "check", "--config", str(bad))  # --config after the subcommand
    assert result.status == 1
    assert 'limits.max_message_size = "fifty": not a size' in result.err
    assert "limits.max_recipents = 5: unknown key; did you mean limits.max_recipients?" in (
        result.err
    )


def test_config_from_the_environment(
    run: Tayori, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CONFIG_ENV, str(config))
    assert run("config", "check").out == f"ok: {config}\n"


def test_missing_default_config(
    run: Tayori, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = run("domain", "list")
    assert result.status == 2
    assert "config file tayori.toml not found" in result.err


def test_serve_refuses_a_bad_config(run: Tayori, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[listen]\nsmtp = "127.0.0.1"\n')
    result = run("serve", "--config", str(bad))
    assert result.status == 2
    assert 'listen.smtp = "127.0.0.1": the port is missing' in result.err


def test_serve_runs_the_app_with_the_settings(
    tayori: Tayori, config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = []
    monkeypatch.setattr("tayori.app.serve", lambda settings: seen.append(settings) or 7)
    assert tayori("serve").status == 7
    assert seen[0].source == config


def test_migrate_is_idempotent(tayori: Tayori) -> None:
    result = tayori("migrate")
    assert result.status == 0
    assert result.out.startswith("database is at the latest schema: sqlite:///")


def test_docs_write_then_check(run: Tayori, tmp_path: Path) -> None:
    assert run("docs", "--check", str(tmp_path)).status == 1
    assert run("docs", "--write", str(tmp_path)).status == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.md", "reason-codes.md"]
    assert run("docs", "--check", str(tmp_path)).status == 0
    (tmp_path / "config.md").write_text("old")
    result = run("docs", "--check", str(tmp_path))
    assert result.status == 1
    assert "stale: " in result.err
    assert "config.md" in result.err
    assert "reason-codes.md" not in result.err


def test_usage_errors_exit_2(run: Tayori) -> None:
    assert run().status == 2
    assert run("user").status == 2
    assert run("docs").status == 2
    assert run("--help").status == 0


# --- the admin's day --------------------------------------------------------------------------


def test_domains_users_aliases_outcomes(tayori: Tayori, stores: Stores) -> None:
    assert tayori("domain", "add", "Other.Test").out == "added domain other.test\n"
    assert tayori("domain", "list").out == "example.test\nother.test\n"

    result = add_user(tayori, "Carol@Example.test", "--quota", "1MB")
    assert (result.status, result.out) == (0, "added carol@example.test (1.0 MB)\n")
    account = stores.metadata.get_account("carol@example.test")
    assert account is not None
    assert verify_password(account.password_hash, "s3cret")
    assert add_user(tayori, "dave@other.test").status == 0

    ref = deliver(stores, "carol@example.test", b"x" * 250_000)
    listing = tayori("user", "list").out.splitlines()
    assert listing[0].split() == ["ADDRESS", "USED", "QUOTA", "USE%", "STATUS", "FLAG"]
    assert listing[1].split() == [
        "carol@example.test",
        "250.0",
        "KB",
        "1.0",
        "MB",
        "25.0%",
        "active",
    ]
    assert listing[2].split() == ["dave@other.test", "0", "B", "unlimited", "-", "active"]
    only = tayori("user", "list", "--domain", "other.test").out
    assert "dave@other.test" in only
    assert "carol" not in only

    assert tayori("user", "quota", "carol@example.test", "2MB").out == (
        "quota of carol@example.test: 2.0 MB\n"
    )
    assert "12.5%" in tayori("user", "list").out
    assert tayori("user", "quota", "carol@example.test", "unlimited").status == 0
    assert stores.metadata.get_account("carol@example.test").quota_bytes == 0  # type: ignore[union-attr]

    result = tayori("user", "passwd", "carol@example.test", "--password-stdin", stdin="n3w\n")
    assert result.status == 0
    account = stores.metadata.get_account("carol@example.test")
    assert account is not None
    assert verify_password(account.password_hash, "n3w")

    result = tayori("alias", "add", "team@example.test", "carol@example.test", "dave@other.test")
    assert result.out == "team@example.test -> carol@example.test, dave@other.test\n"
    assert add_user(tayori, "eve@example.test").status == 0
    assert tayori("alias", "add", "info@example.test", "eve@example.test").status == 0
    assert tayori("alias", "list", "--domain", "example.test").out.splitlines() == [
        "info@example.test -> eve@example.test",
        "team@example.test -> carol@example.test, dave@other.test",
    ]
    result = tayori("alias", "remove", "team@example.test", "dave@other.test")
    assert result.out == "removed dave@other.test from alias team@example.test\n"
    assert tayori("alias", "remove", "info@example.test").status == 0
    assert tayori("alias", "list").out == "team@example.test -> carol@example.test\n"

    result = tayori("outcomes", "--json", "--account", "dave@other.test")
    assert (result.status, result.out) == (0, "")

    result = tayori("user", "remove", "carol@example.test", "--yes")
    assert result.out == "removed carol@example.test and 1 message(s)\n"
    assert stores.metadata.get_account("carol@example.test") is None
    with pytest.raises(Exception):  # noqa: B017 - the blob is gone, however the store says so
        stores.blobs.open(ref).read()
    # The alias lost its last target with the account.
    assert tayori("alias", "list").out == "no aliases\n"


def test_outcomes_json_and_table(tayori: Tayori, stores: Stores) -> None:
    assert add_user(tayori, "carol@example.test").status == 0
    account = stores.metadata.get_account("carol@example.test")
    assert account is not None
    now = datetime.now(UTC)
    stores.metadata.record_outcomes(
        [
            Outcome(
                Direction.INBOUND,
                "old@sender.test",
                "carol@example.test",
                OutcomeKind.DELIVERED,
                "delivered",
                reply="250 2.0.0 Ok",
                account_id=account.id,
                subject="old",
                time=now - timedelta(days=3),
            ),
            Outcome(
                Direction.INBOUND,
                "",
                "nobody@example.test",
                OutcomeKind.REJECTED,
                "rcpt.unknown",
                reply="550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
                detail="nobody@example.test",
                message_id="<m1@sender.test>",
                subject="件名テスト",
                size=1234,
                remote_ip="192.0.2.7",
                remote_host="mx.sender.test",
                time=now - timedelta(hours=1),
            ),
        ]
    )
    lines = tayori("outcomes", "--json").out.splitlines()
    assert len(lines) == 2
    newest = json.loads(lines[0])
    assert newest["time"].endswith("Z")
    assert datetime.fromisoformat(newest["time"]) == (now - timedelta(hours=1)).replace(
        microsecond=datetime.fromisoformat(newest["time"]).microsecond
    )
    assert {key: newest[key] for key in newest if key not in ("id", "time")} == {
        "direction": "in",
        "sender": "",
        "recipient": "nobody@example.test",
        "message_id": "<m1@sender.test>",
        "subject": "件名テスト",
        "outcome": "rejected",
        "reason": "rcpt.unknown",
        "reply": "550 5.1.1 <nobody@example.test>: Recipient address rejected: User unknown",
        "size": 1234,
        "remote_ip": "192.0.2.7",
        "remote_host": "mx.sender.test",
        "detail": "nobody@example.test",
    }
    assert json.loads(lines[1])["subject"] == "old"

    recent = tayori("outcomes", "--json", "--since", "2h").out.splitlines()
    assert [json.loads(line)["reason"] for line in recent] == ["rcpt.unknown"]
    mine = tayori("outcomes", "--json", "--account", "carol@example.test").out.splitlines()
    assert [json.loads(line)["subject"] for line in mine] == ["old"]
    assert len(tayori("outcomes", "--json", "--limit", "1").out.splitlines()) == 1

    table = tayori("outcomes").out.splitlines()
    assert table[0].split()[:4] == ["TIME", "(UTC)", "DIR", "OUTCOME"]
    assert "rcpt.unknown" in table[1]
    assert "<>" in table[1]
    assert "件名テスト" in table[1]
    assert tayori("outcomes", "--since", "30m").out == "no outcomes in that time\n"


# --- errors -----------------------------------------------------------------------------------


def test_user_in_unknown_domain(tayori: Tayori) -> None:
    result = add_user(tayori, "bob@unknown.test")
    assert result.status == 1
    assert result.err == (
        "error: domain unknown.test is not hosted here; add it with "
        "`tayori domain add unknown.test`\n"
    )


def test_duplicate_user(tayori: Tayori) -> None:
    assert add_user(tayori, "carol@example.test").status == 0
    result = add_user(tayori, "CAROL@example.test")
    assert result.status == 1
    assert "carol@example.test exists already" in result.err


def test_bad_quota(tayori: Tayori) -> None:
    result = add_user(tayori, "carol@example.test", "--quota", "lots")
    assert result.status == 1
    assert "quota: 'lots' is not a size; write e.g." in result.err
    assert tayori("user", "list").out == "no accounts\n"


def test_bad_address(tayori: Tayori) -> None:
    result = add_user(tayori, "carol@example..test")
    assert result.status == 1
    assert result.err.startswith("error: 'example..test' is not a domain name")
    result = tayori("alias", "add", "team@example.test", "nobody")
    assert result.status == 1
    assert "'nobody' is not a mail address" in result.err


def test_empty_password_refused(tayori: Tayori) -> None:
    result = add_user(tayori, "carol@example.test", password="")
    assert result.status == 1
    assert "empty password" in result.err
    assert tayori("user", "list").out == "no accounts\n"


def test_password_needs_a_terminal_or_stdin(tayori: Tayori) -> None:
    result = tayori("user", "add", "carol@example.test")
    assert result.status == 1
    assert "--password-stdin" in result.err


def test_password_asked_twice_on_a_terminal(
    tayori: Tayori, stores: Stores, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["first", "second", "same", "same"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    result = tayori("user", "add", "carol@example.test", tty=True)
    assert result.status == 1
    assert "the two passwords differ" in result.err
    assert tayori("user", "add", "carol@example.test", tty=True).status == 0
    account = stores.metadata.get_account("carol@example.test")
    assert account is not None
    assert verify_password(account.password_hash, "same")


def test_remove_without_yes_needs_a_terminal(tayori: Tayori) -> None:
    assert add_user(tayori, "carol@example.test").status == 0
    result = tayori("user", "remove", "carol@example.test")
    assert result.status == 1
    assert "without confirmation; add --yes" in result.err
    assert "carol@example.test" in tayori("user", "list").out


def test_remove_asks_on_a_terminal(tayori: Tayori) -> None:
    assert add_user(tayori, "carol@example.test").status == 0
    result = tayori("user", "remove", "carol@example.test", stdin="n\n", tty=True)
    assert result.status == 1
    assert result.out.endswith("nothing was removed\n")
    assert "carol@example.test" in tayori("user", "list").out
    result = tayori("user", "remove", "carol@example.test", stdin="y\n", tty=True)
    assert result.status == 0
    assert tayori("user", "list").out == "no accounts\n"


def test_unknown_account(tayori: Tayori) -> None:
    for argv in (
        ("user", "passwd", "zed@example.test", "--password-stdin"),
        ("user", "quota", "zed@example.test", "1GB"),
        ("user", "remove", "zed@example.test", "--yes"),
        ("outcomes", "--account", "zed@example.test"),
    ):
        result = tayori(*argv, stdin="pw\n")
        assert result.status == 1, argv
        assert "no account zed@example.test" in result.err


def test_domain_errors(tayori: Tayori) -> None:
    result = tayori("domain", "add", "example.test")
    assert (result.status, result.err) == (1, "error: domain example.test is hosted here already\n")
    assert add_user(tayori, "carol@example.test").status == 0
    result = tayori("domain", "remove", "example.test")
    assert result.status == 1
    assert result.err.startswith("error: ")
    assert tayori("domain", "remove", "nowhere.test").status == 1
    assert tayori("domain", "add", "localhost").status == 1


def test_alias_errors(tayori: Tayori) -> None:
    result = tayori("alias", "add", "team@example.test", "ghost@example.test")
    assert result.status == 1
    assert "ghost@example.test is not an account here" in result.err
    assert tayori("alias", "remove", "team@example.test").status == 1


def test_bad_since(tayori: Tayori) -> None:
    result = tayori("outcomes", "--since", "yesterday")
    assert result.status == 1
    assert "--since 'yesterday' is not a time" in result.err


def test_unmigrated_database(run: Tayori, config: Path) -> None:
    (config.parent / "tayori.db").unlink()
    result = run("--config", str(config), "domain", "list")
    assert result.status == 1
    assert "run `tayori migrate`" in result.err


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", datetime(2024, 5, 1, 11, 30, tzinfo=UTC)),
        ("2h", datetime(2024, 5, 1, 10, 0, tzinfo=UTC)),
        ("3d", datetime(2024, 4, 28, 12, 0, tzinfo=UTC)),
        ("1w", datetime(2024, 4, 24, 12, 0, tzinfo=UTC)),
        ("45s", datetime(2024, 5, 1, 11, 59, 15, tzinfo=UTC)),
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
        ("2024-04-30T09:30", datetime(2024, 4, 30, 9, 30, tzinfo=UTC)),
        ("2024-04-30T18:30+09:00", datetime(2024, 4, 30, 9, 30, tzinfo=UTC)),
        ("2024-04-30T09:30Z", datetime(2024, 4, 30, 9, 30, tzinfo=UTC)),
    ],
)
def test_parse_since(text: str, expected: datetime) -> None:
    assert parse_since(text, now=datetime(2024, 5, 1, 12, 0, tzinfo=UTC)) == expected


def test_parse_since_rejects() -> None:
    with pytest.raises(CommandError, match="not a time"):
        parse_since("2 fortnights")
