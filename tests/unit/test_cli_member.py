"""`tayori user two-step-off`: the admin's way back in for a member who lost their phone."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from tayori.cli import main
from tayori.config.loader import CONFIG_ENV, load_settings
from tayori.storage.factory import open_stores


def test_two_step_off(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CONFIG_ENV, raising=False)
    data = tmp_path / "var"
    assert (
        main(["init", "--data-dir", str(data), "--domain", "example.test", "--hostname", "mx.test"])
        == 0
    )
    config = str(data / "tayori.toml")
    monkeypatch.setattr(sys, "stdin", io.StringIO("s3cret\n"))
    assert main(["--config", config, "user", "add", "a@example.test", "--password-stdin"]) == 0
    settings = load_settings(Path(config))
    stores = open_stores(settings.storage.url, settings.server.data_dir)
    try:
        account = stores.metadata.get_account("a@example.test")
        assert account is not None
        stores.member.begin_totp(account.id, "JBSWY3DPEHPK3PXP")
        stores.member.enable_totp(account.id, 1)
        capsys.readouterr()
        assert main(["--config", config, "user", "two-step-off", "a@example.test"]) == 0
        assert "turned two-step login off" in capsys.readouterr().out
        assert stores.member.get_totp(account.id) is None
        assert main(["--config", config, "user", "two-step-off", "a@example.test"]) == 0
        assert "was not on" in capsys.readouterr().out
        assert main(["--config", config, "user", "two-step-off", "nobody@example.test"]) != 0
    finally:
        stores.close()
