"""Hostile HTML rendered by a real Chromium: the tricky corpus's XSS set and our own.

For every message: open it in the webmail (which frames the sanitised body), then check that
no dialog opened, that no request left for a host other than loopback (every such request is
aborted and recorded by the `page` fixture), and that the body document carries the strict
CSP. The "show images" check shows the detector works: after the member asks for images, the
tracking pixel's request is seen (and still stopped at the test's edge).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest

from tests.web.conftest import LiveWeb, browser_login

pytestmark = pytest.mark.browser

OWN = {
    "script": '<script>alert("script")</script><p>text</p>',
    "img-onerror": '<img src=x onerror="alert(1)">',
    "svg-onload": '<svg onload="alert(2)"><circle r="5"/></svg>',
    "js-url": '<a id="l" href="javascript:alert(3)">click</a>',
    "iframe-srcdoc": '<iframe srcdoc="<script>alert(4)</script>"></iframe>',
    "meta-refresh": '<meta http-equiv="refresh" content="0;url=https://evil.example/r">',
    "base-href": '<base href="https://evil.example/"><a href="x">rel</a>',
    "stylesheet": '<link rel="stylesheet" href="https://evil.example/x.css">',
    "css-import": "<style>@import url(https://evil.example/i.css); body{color:red}</style>",
    "css-url": '<div style="background:url(https://evil.example/bg.png)">bg</div>',
    "form": '<form action="https://evil.example/f"><input name=a><button>go</button></form>',
    "object": '<object data="https://evil.example/o.swf"></object><embed src="https://evil.example/e">',
    "tracking-pixel": '<img src="https://evil.example/pixel.gif" width=1 height=1>',
    "srcset": '<img srcset="https://evil.example/s.png 1x">',
    "video-poster": '<video poster="https://evil.example/p.png"></video>',
    "mxss": '<noscript><p title="</noscript><img src=x onerror=alert(5)>"></noscript>',
    "data-html": '<a href="data:text/html,<script>alert(6)</script>">d</a>',
    "xlink": '<svg><a xlink:href="javascript:alert(7)"><text y="20">x</text></a></svg>',
}


def html_message(name: str, html: str) -> bytes:
    return (
        "From: \"<img src=x onerror=alert('from')>\" <evil@remote.test>\r\n"
        "To: taro@example.test\r\n"
        f"Subject: <script>alert('subject')</script> {name}\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="xx"\r\n\r\n'
        "--xx\r\nContent-Type: text/html; charset=utf-8\r\n\r\n"
        f"<html><body>{html}</body></html>\r\n"
        "--xx\r\nContent-Type: text/html\r\n"
        "Content-Disposition: attachment; filename=\"<img src=x onerror=alert('f')>.html\"\r\n\r\n"
        "<script>alert('attachment')</script>\r\n--xx--\r\n"
    ).encode()


def corpus_xss(corpus_dir: Path) -> list[Path]:
    root = corpus_dir / "tricky"
    with (root / "MANIFEST.tsv").open(encoding="utf-8") as stream:
        rows = list(csv.DictReader(stream, delimiter="\t"))
    found = []
    for row in rows:
        path = root / row["relpath"]
        hostile = "xss:" in row["exercises"] and row["kind"] == "message"
        if hostile and path.is_file() and path.stat().st_size <= 3_000_000:
            found.append(path)
    return found


def open_and_check(page: Any, base: str, message_id: int) -> None:
    response = page.goto(f"{base}/message/{message_id}")
    assert response is not None and response.status == 200
    frame = page.locator("#body-frame")
    if frame.count():
        frame.wait_for(state="attached")
        page.wait_for_load_state("load")
    body = page.request.get(f"{base}/message/{message_id}/body")
    assert "default-src 'none'" in body.headers["content-security-policy"]
    assert "<script" not in body.text().lower()


@pytest.fixture
def storage_url() -> str:
    """The browser does not care which store served the page: SQLite only, to keep it fast."""
    return ""


def test_own_hostile_html(live_web: LiveWeb, page: Any, artefacts: Path) -> None:
    env = live_web.env
    ids = {name: env.put(html_message(name, html)).id for name, html in OWN.items()}
    browser_login(page, live_web.url, env.address, env.password)
    for name, message_id in ids.items():
        open_and_check(page, live_web.url, message_id)
        if name == "js-url":
            page.frame_locator("#body-frame").locator("a").first.click(timeout=2000)
        assert page.dialogs == [], name
        assert page.blocked_requests == [], (name, page.blocked_requests)
    page.goto(f"{live_web.url}/message/{ids['script']}")
    page.screenshot(path=str(artefacts / "hostile.png"), full_page=True)


def test_show_images_is_what_loads_remote_images(live_web: LiveWeb, page: Any) -> None:
    env = live_web.env
    message_id = env.put(html_message("pixel", OWN["tracking-pixel"])).id
    browser_login(page, live_web.url, env.address, env.password)
    page.goto(f"{live_web.url}/message/{message_id}")
    page.wait_for_load_state("load")
    assert page.blocked_requests == []
    page.click("#show-images")
    page.wait_for_load_state("load")
    page.wait_for_timeout(300)  # the framed document's image request
    assert page.blocked_requests == ["https://evil.example/pixel.gif"]
    assert page.dialogs == []


def test_corpus_xss_set(live_web: LiveWeb, page: Any, corpus_dir: Path) -> None:
    env = live_web.env
    paths = corpus_xss(corpus_dir)
    assert len(paths) >= 20, "the corpus's XSS set went missing"
    ids = [(path, env.put(path.read_bytes()).id) for path in paths]
    browser_login(page, live_web.url, env.address, env.password)
    for path, message_id in ids:
        open_and_check(page, live_web.url, message_id)
        assert page.dialogs == [], path
        assert page.blocked_requests == [], (path, page.blocked_requests)
