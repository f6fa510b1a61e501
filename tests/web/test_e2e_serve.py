"""The webmail as `tayori serve` runs it: mail delivered over SMTP to a real instance (on
SQLite and PostgreSQL), then read and downloaded in Chromium on `[listen] http`."""

from __future__ import annotations

import smtplib
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import conftest as e2e
from tests.e2e.conftest import Instance, free_port
from tests.web.conftest import browser_login
from tests.web.test_browser import (
    ATTACHMENT_BYTES,
    ATTACHMENT_NAME,
    ISO_BODY,
    ISO_SUBJECT,
    iso_2022_jp_message,
)

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

# The e2e layer's fixtures, used here as they are (pytest finds fixtures by module name).
backend = e2e.backend
dns_server = e2e.dns_server
make_instance = e2e.make_instance


@pytest.fixture
def web_instance(make_instance: Any) -> Iterator[tuple[Instance, str]]:
    """An instance with http on a loopback port (the e2e default turns http off)."""
    instance: Instance = make_instance()
    port = free_port()
    text = instance.config.read_text()
    assert 'http = ""\n' in text
    instance.config.write_text(text.replace('http = ""\n', f'http = "127.0.0.1:{port}"\n', 1))
    instance.add_user("alice@example.test")
    instance.start()
    assert any(line.split() == ["http", f"127.0.0.1:{port}"] for line in instance.output), (
        instance.output
    )
    yield instance, f"http://127.0.0.1:{port}"
    if instance.process is not None:
        assert instance.stop() == 0, instance.log()


def test_smtp_in_browser_out(
    web_instance: tuple[Instance, str], page: Any, tmp_path: Path, artefacts: Path
) -> None:
    instance, url = web_instance
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        assert (
            client.sendmail("takahashi@remote.test", ["alice@example.test"], iso_2022_jp_message())
            == {}
        )
    # Plain HTTP on loopback: a cookie without Secure, headers present.
    with urllib.request.urlopen(f"{url}/login", timeout=10) as response:
        assert response.headers["X-Frame-Options"] == "DENY"
    browser_login(page, url, "alice@example.test", instance.passwords["alice@example.test"])
    page.click(f"text={ISO_SUBJECT}")
    page.wait_for_load_state()
    assert page.locator("#subject").inner_text() == ISO_SUBJECT
    assert ISO_BODY in page.locator("#body-text").inner_text()
    page.screenshot(path=str(artefacts / "e2e-message.png"), full_page=True)
    with page.expect_download() as info:
        page.click(f"text={ATTACHMENT_NAME}")
    download = info.value
    assert download.suggested_filename == ATTACHMENT_NAME
    saved = tmp_path / "download"
    download.save_as(saved)
    assert saved.read_bytes() == ATTACHMENT_BYTES
    assert page.dialogs == [] and page.blocked_requests == []
