"""The webmail in a real Chromium (Debian's, driven by Playwright): sign-in, reading Japanese
mail, downloads, hostile HTML, the quota banner, accessibility basics. Screenshots of the
main pages go to the `artefacts` directory."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest

from tayori.storage.records import SpecialUse
from tests.web.conftest import LiveWeb, browser_login
from tests.web.japanese import encode_cp50220, encoded_word, rfc2231_name

pytestmark = pytest.mark.browser


@pytest.fixture
def storage_url() -> str:
    """SQLite: the browser does not care which store served the page, and test_e2e_serve
    reads through `tayori serve` on both stores."""
    return ""


ISO_SUBJECT = "①髙橋さんの会議資料"
ISO_BODY = "髙橋です。①の件、資料を添付します。"
ATTACHMENT_NAME = "①髙橋_資料.txt"
ATTACHMENT_BYTES = "髙橋①の添付ファイル\r\n".encode("cp932") + bytes(range(256))


def iso_2022_jp_message() -> bytes:
    """A message as Japanese mail programs send it: CP50220 (ISO-2022-JP with the NEC/IBM
    extensions, so ① and 髙 survive) in the subject, the body and the RFC 2231 file name."""
    body = encode_cp50220(ISO_BODY)
    attachment = base64.encodebytes(ATTACHMENT_BYTES).replace(b"\n", b"\r\n")
    return (
        (
            f"From: {encoded_word('髙橋')} <takahashi@remote.test>\r\n"
            "To: taro@example.test\r\n"
            f"Subject: {encoded_word(ISO_SUBJECT)}\r\n"
            "Date: Fri, 27 Nov 2026 10:00:00 +0900\r\n"
            "Message-ID: <iso@remote.test>\r\n"
            "MIME-Version: 1.0\r\n"
            'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n'
            "--b1\r\n"
            "Content-Type: text/plain; charset=ISO-2022-JP\r\n"
            "Content-Transfer-Encoding: 7bit\r\n\r\n"
        ).encode()
        + body
        + (
            "\r\n--b1\r\n"
            "Content-Type: application/octet-stream\r\n"
            "Content-Transfer-Encoding: base64\r\n"
            "Content-Disposition: attachment;\r\n"
            f" filename*={rfc2231_name(ATTACHMENT_NAME)}\r\n\r\n"
        ).encode()
        + attachment
        + b"--b1--\r\n"
    )


def test_login_and_read_japanese(
    live_web: LiveWeb, page: Any, artefacts: Path, tmp_path: Path
) -> None:
    env = live_web.env
    stored = env.put(iso_2022_jp_message())
    browser_login(page, live_web.url, env.address, env.password)
    assert page.locator("main").count() == 1
    page.screenshot(path=str(artefacts / "inbox.png"), full_page=True)
    assert ISO_SUBJECT in page.content()
    page.click(f'a[href="/message/{stored.id}"]')
    page.wait_for_load_state()
    assert page.locator("#subject").inner_text() == ISO_SUBJECT
    assert ISO_BODY in page.locator("#body-text").inner_text()
    assert "髙橋" in page.locator("#from").inner_text()
    link = page.locator("a.download")
    assert link.inner_text() == ATTACHMENT_NAME
    page.screenshot(path=str(artefacts / "message.png"), full_page=True)
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == ATTACHMENT_NAME
    saved = tmp_path / "saved"
    download.save_as(saved)
    assert saved.read_bytes() == ATTACHMENT_BYTES
    assert page.dialogs == [] and page.blocked_requests == []


def test_quota_banner_at_100_percent(live_web: LiveWeb, page: Any, artefacts: Path) -> None:
    env = live_web.env
    env.stores.metadata.set_quota(env.address, 1000)
    env.put(b"Subject: big\r\n\r\n" + b"x" * 2000 + b"\r\n")
    browser_login(page, live_web.url, env.address, env.password)
    banner = page.locator("#quota-banner")
    assert banner.is_visible()
    text = banner.inner_text()
    assert "メールボックスがいっぱいです" in text and "ごみ箱" in text
    assert page.locator("#quota.full").count() == 1
    page.screenshot(path=str(artefacts / "quota-full.png"), full_page=True)


def test_every_input_has_a_label(live_web: LiveWeb, page: Any) -> None:
    env = live_web.env
    stored = env.put(b"Subject: hello\r\nFrom: a@remote.test\r\n\r\nhi\r\n")
    page.goto(f"{live_web.url}/login")
    assert page.locator("main").count() == 1
    assert page.locator("label[for=username]").count() == 1
    assert page.locator("label[for=password]").count() == 1
    browser_login(page, live_web.url, env.address, env.password)
    inbox = env.stores.metadata.get_mailbox(env.account.id, SpecialUse.INBOX)
    paths = [f"/folder/{inbox.id}", "/sessions", "/search?text=hello", f"/message/{stored.id}"]
    for path in [*paths]:
        page.goto(live_web.url + path)
        assert page.locator("main").count() == 1, path
        unlabelled = page.evaluate(
            """() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea')]
                 .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                 .map(e => e.outerHTML)"""
        )
        assert unlabelled == [], (path, unlabelled)


def test_select_all_and_mark_read(live_web: LiveWeb, page: Any, artefacts: Path) -> None:
    env = live_web.env
    for number in range(3):
        env.put(f"Subject: note {number}\r\nFrom: a@remote.test\r\n\r\nbody\r\n".encode())
    browser_login(page, live_web.url, env.address, env.password)
    inbox_link = page.locator("ul.folders a").first
    assert "3" in inbox_link.inner_text()
    page.check("#select-all")  # the one script: ticks every message's box
    assert page.locator('input[name="ids"]:checked').count() == 3
    page.click('button[value="read"]')
    page.wait_for_load_state()
    assert page.locator("#notice").inner_text().strip() == "3 通を既読にしました。"
    assert page.locator("ul.folders a").first.locator(".count").count() == 0
    assert page.locator("tr.unread").count() == 0
    page.keyboard.press("Tab")  # the first stop is the skip link
    assert page.evaluate("document.activeElement.className") == "skip"
    page.screenshot(path=str(artefacts / "folder.png"), full_page=True)


def test_spam_and_back_then_delete_permanently(
    live_web: LiveWeb, page: Any, artefacts: Path
) -> None:
    env = live_web.env
    stored = env.put(b"Subject: cheap watches\r\nFrom: s@remote.test\r\n\r\nbuy now\r\n")
    browser_login(page, live_web.url, env.address, env.password)
    page.goto(f"{live_web.url}/message/{stored.id}")
    page.click("#spam")  # moves to Junk and trains the filter
    page.wait_for_load_state()
    junk = env.stores.metadata.get_mailbox(env.account.id, SpecialUse.JUNK)
    (moved,) = env.stores.metadata.list_messages(junk.id)
    page.goto(f"{live_web.url}/message/{moved.id}")
    page.click("#not-spam")
    page.wait_for_load_state()
    inbox = env.stores.metadata.get_mailbox(env.account.id, SpecialUse.INBOX)
    (back,) = env.stores.metadata.list_messages(inbox.id)
    assert env.stores.metadata.list_messages(junk.id) == []
    page.goto(f"{live_web.url}/message/{back.id}")
    page.click("#delete-permanently")
    page.wait_for_load_state()
    assert "元に戻せません" in page.locator("main").inner_text()
    page.screenshot(path=str(artefacts / "confirm-delete.png"), full_page=True)
    page.click("#confirm-delete")
    page.wait_for_load_state()
    assert "1 通を完全に削除しました。" in page.locator("#notice").inner_text()
    assert env.stores.metadata.list_messages(inbox.id) == []


# WCAG 2.x contrast of every visible text against its effective background: 4.5:1, or 3:1
# for large text (24px, or 18.66px bold). Backgrounds are walked up to the first opaque one.
_LOW_CONTRAST = """() => {
  const parse = c => { const m = c.match(/rgba?\\(([^)]+)\\)/); if (!m) return null;
    const p = m[1].split(',').map(Number);
    return {r: p[0], g: p[1], b: p[2], a: p.length > 3 ? p[3] : 1}; };
  const lum = c => { const f = v => { v /= 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(c.r) + 0.7152 * f(c.g) + 0.0722 * f(c.b); };
  const background = el => { for (let e = el; e; e = e.parentElement) {
      const c = parse(getComputedStyle(e).backgroundColor); if (c && c.a > 0.5) return c; }
    return {r: 255, g: 255, b: 255, a: 1}; };
  const low = [];
  for (const el of document.querySelectorAll('body *')) {
    if (!el.offsetParent && getComputedStyle(el).position !== 'fixed') continue;
    const text = [...el.childNodes].filter(n => n.nodeType === 3)
      .map(n => n.textContent.trim()).join('');
    if (!text) continue;
    const style = getComputedStyle(el);
    if (style.visibility === 'hidden' || el.closest('.visually-hidden')) continue;
    const fg = parse(style.color), bg = background(el);
    if (!fg) continue;
    const [a, b] = [lum(fg), lum(bg)];
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    const size = parseFloat(style.fontSize), bold = parseInt(style.fontWeight) >= 700;
    const need = (size >= 24 || (bold && size >= 18.66)) ? 3 : 4.5;
    if (ratio < need)
      low.push(`${el.tagName}.${el.className} "${text.slice(0, 30)}" ${ratio.toFixed(2)}`);
  }
  return low;
}"""


def test_text_contrast_on_the_main_pages(live_web: LiveWeb, page: Any) -> None:
    env = live_web.env
    env.stores.metadata.set_quota(env.address, 10_000)
    stored = env.put(b"Subject: hello\r\nFrom: a@remote.test\r\n\r\nhi\r\n" + b"x" * 9_000)
    env.put(b"Subject: unread one\r\nFrom: b@remote.test\r\n\r\nhi\r\n")
    page.goto(f"{live_web.url}/login")
    assert page.evaluate(_LOW_CONTRAST) == [], "/login"
    browser_login(page, live_web.url, env.address, env.password)
    inbox = env.stores.metadata.get_mailbox(env.account.id, SpecialUse.INBOX)
    for path in (
        f"/folder/{inbox.id}",  # quota above 90 %: the warning colours too
        f"/message/{stored.id}",
        "/compose",
        "/settings",
        "/folders",
        "/history",
        "/doctor",
    ):
        page.goto(live_web.url + path)
        assert page.evaluate(_LOW_CONTRAST) == [], path
