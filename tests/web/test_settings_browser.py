"""Accessibility basics of the compose and settings pages in Chromium (one `<main>`, every
control labelled, reachable by keyboard), the attachment-size check before sending, and
screenshots of each page as test artefacts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import LiveWeb, browser_login

pytestmark = pytest.mark.browser

PAGES = {
    "compose": "/compose",
    "settings": "/settings",
    "settings-spam": "/settings/spam",
    "settings-forwarding": "/settings/forwarding",
    "settings-security": "/settings/security",
}

UNLABELLED = """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
    .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
    .map(e => e.outerHTML)"""


def test_pages_are_labelled_and_keyboard_reachable(
    live_web: LiveWeb, page: Any, artefacts: Path
) -> None:
    env = live_web.env
    env.stores.member.add_image_sender(env.account.id, "news@remote.test")
    browser_login(page, live_web.url, env.address, env.password)
    for name, path in PAGES.items():
        page.goto(live_web.url + path)
        assert page.locator("main").count() == 1, path
        assert page.evaluate(UNLABELLED) == [], path
        assert page.locator("h1").count() == 1, path
        page.screenshot(path=str(artefacts / f"{name}.png"), full_page=True)
    page.goto(live_web.url + "/settings")
    page.get_by_role("button", name="news@remote.test を削除").click()
    page.wait_for_url("**/settings?done=images-removed")
    assert "news@remote.test" not in page.locator("#image-senders").inner_text()
    assert page.locator("#settings-done").is_visible()
    page.goto(live_web.url + "/settings/security")
    page.click("#totp-begin")
    assert page.evaluate(UNLABELLED) == []
    assert page.locator("img[alt]").count() == 1  # the QR code has a text alternative
    page.goto(live_web.url + "/compose")
    page.focus("#to")
    for _ in range(40):  # the send button is reachable from the To field by Tab
        if page.evaluate("document.activeElement.id") == "save-draft":
            break
        page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.id") == "save-draft"


def test_attachment_total_checked_before_sending(live_web: LiveWeb, page: Any) -> None:
    env = live_web.env
    browser_login(page, live_web.url, env.address, env.password)
    page.goto(live_web.url + "/compose")
    assert int(page.get_attribute("#compose-form", "data-limit") or "0") > 1_000_000
    # The real limit is tens of MB; a small one shows the same check without the upload.
    page.evaluate("document.getElementById('compose-form').setAttribute('data-limit', '1000')")
    assert page.is_hidden("#attachment-total")
    small = {"name": "small.txt", "mimeType": "text/plain", "buffer": b"x" * 500}
    page.set_input_files("#attachments", files=[small])
    assert page.is_hidden("#attachment-total")
    big = {"name": "big.bin", "mimeType": "application/octet-stream", "buffer": b"x" * 1001}
    page.set_input_files("#attachments", files=[small, big])
    assert page.is_visible("#attachment-total")
    assert "合計" in page.inner_text("#attachment-total")
