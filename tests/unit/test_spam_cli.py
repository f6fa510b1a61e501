"""`tayori spam train` and `tayori spam score`, in-process against a SQLite instance."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tayori.cli import main
from tayori.config.loader import CONFIG_ENV, load_settings
from tayori.spam import Sensitivity
from tayori.spam.cli import SENSITIVITIES
from tayori.storage.factory import open_stores


def mail(subject: str, body: str) -> bytes:
    return f"From: a@example.test\nSubject: {subject}\n\n{body}\n".encode()


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    data = tmp_path / "var"
    assert main(["init", "--data-dir", str(data), "--domain", "example.test"]) == 0
    return data / "tayori.toml"


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    """A directory of spam files and an mbox of ham."""
    spam = tmp_path / "spam"
    spam.mkdir()
    for i in range(5):
        (spam / f"{i}.eml").write_bytes(mail(f"cheap pills {i}", f"viagra discount {i}"))
    ham = tmp_path / "ham.mbox"
    ham.write_bytes(
        b"".join(
            b"From x@example.test Mon Jan  1 00:00:00 2024\n"
            + mail(f"minutes {i}", f"meeting agenda review {i}")
            + b"\n"
            for i in range(5)
        )
    )
    return spam, ham


def test_train_then_score(
    config: Path, corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    spam, ham = corpus
    args = ["--config", str(config), "spam", "train", "--spam", str(spam), "--ham", str(ham)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "learnt 10 of 10 messages (5 spam, 5 ham) for everyone" in out
    assert main(args) == 0
    assert "learnt 0 of 10" in capsys.readouterr().out

    probe = tmp_path / "probe.eml"
    probe.write_bytes(mail("cheap pills", "viagra discount"))
    assert main(["--config", str(config), "spam", "score", str(probe)]) == 0
    out = capsys.readouterr().out
    assert "verdict    spam (Junk) at sensitivity standard" in out
    assert "reasons    " in out


def test_train_for_an_account(
    config: Path, corpus: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    spam, _ = corpus
    base = ["--config", str(config), "spam", "train", "--spam", str(spam)]
    assert main([*base, "--account", "nobody@example.test"]) == 1
    assert "no account nobody@example.test" in capsys.readouterr().err
    settings = load_settings(config)
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        stores.metadata.add_account("m@example.test", "x", 0)
    finally:
        stores.close()
    assert main([*base, "--account", "M@example.test"]) == 0
    assert "learnt 5 of 5 messages (5 spam, 0 ham) for m@example.test" in capsys.readouterr().out


def test_sensitivity_choices_match_the_engine() -> None:
    assert tuple(level.value for level in Sensitivity) == SENSITIVITIES


def test_registering_the_commands_loads_nothing_heavy() -> None:
    code = (
        "import sys, tayori.cli; tayori.cli._build_parser(); "
        "print(sorted(m for m in ('tayori.spam.engine', 'rich') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_refuses_missing_input(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--config", str(config), "spam", "train"]) == 1
    assert "nothing to learn" in capsys.readouterr().err
    assert main(["--config", str(config), "spam", "train", "--ham", "/nonexistent"]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert main(["--config", str(config), "spam", "score", str(config.parent)]) == 1
    assert "is a directory" in capsys.readouterr().err


def test_training_from_an_older_tokenizer_is_pointed_out(
    config: Path, corpus: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Counts learnt before a tokenizer change make `spam score` and `spam train` say
    "retrain"; counts from the current tokenizer say nothing."""
    from tayori.spam.store import SqlTokenStore, Training, message_digest
    from tayori.spam.tokens import VERSION_TOKEN, tokenize
    from tayori.storage.engine import create_store_engine
    from tayori.storage.factory import storage_url

    probe = tmp_path / "probe.eml"
    probe.write_bytes(mail("cheap pills", "viagra discount"))
    spam, ham = corpus
    train = ["--config", str(config), "spam", "train", "--spam", str(spam), "--ham", str(ham)]
    assert main(train) == 0
    assert main(["--config", str(config), "spam", "score", str(probe)]) == 0
    assert "older tokenizer" not in capsys.readouterr().err

    settings = load_settings(config)
    engine = create_store_engine(storage_url(settings.storage.url, settings.server.data_dir))
    try:
        old = [
            Training(message_digest(raw), False, frozenset(tokenize(raw) - {VERSION_TOKEN}))
            for raw in (mail(f"old ham {i}", f"lunch plans {i}") for i in range(20))
        ]
        SqlTokenStore(engine).learn(old, None)
    finally:
        engine.dispose()
    assert main(["--config", str(config), "spam", "score", str(probe)]) == 0
    assert "67% of the learnt messages were learnt by an older tokenizer" in (
        capsys.readouterr().err
    )
