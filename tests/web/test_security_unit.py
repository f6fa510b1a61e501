"""Pure pieces: who the client is behind proxies, file names for downloads, linkify,
settings checks, the headers middleware."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route
from starlette.testclient import TestClient

from tayori.config.settings import WebSettings
from tayori.core.errors import ConfigError
from tayori.web.context import check_web_settings
from tayori.web.security import PAGE_CSP, ClientInfo, SecurityHeaders
from tayori.web.services.mail import content_disposition, linkify


def request(peer: str, headers: dict[str, str] | None = None, scheme: str = "http") -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    return Request(
        {
            "type": "http",
            "method": "GET",
            "path": "/",
            "headers": raw,
            "client": (peer, 1234),
            "scheme": scheme,
            "server": ("mail.test", 80),
            "query_string": b"",
        }
    )


def test_forwarded_for_only_from_trusted_proxies() -> None:
    info = ClientInfo(["10.0.0.0/8"], "")
    spoofed = request("198.51.100.9", {"x-forwarded-for": "1.2.3.4"})
    assert info.ip(spoofed) == "198.51.100.9"
    proxied = request("10.1.1.1", {"x-forwarded-for": "1.2.3.4, 203.0.113.5, 10.2.2.2"})
    assert info.ip(proxied) == "203.0.113.5"
    assert not info.is_https(request("198.51.100.9", {"x-forwarded-proto": "https"}))
    assert info.is_https(request("10.1.1.1", {"x-forwarded-proto": "https"}))
    assert ClientInfo([], "https://mail.example.jp/").is_https(request("10.1.1.1"))


def test_content_disposition_rfc6266() -> None:
    value = content_disposition("attachment", '①髙"; x.txt')
    assert value.startswith('attachment; filename="')
    fallback = value.split('filename="')[1].split('"')[0]
    assert fallback.isascii() and '"' not in fallback
    assert unquote(value.split("filename*=UTF-8''")[1]) == '①髙"; x.txt'


def test_linkify_escapes_and_links() -> None:
    html = str(linkify('see https://a.example/x?y=1&z=2. and <b>"bold"</b> javascript:alert(1)'))
    assert '<a href="https://a.example/x?y=1&amp;z=2"' in html
    assert "&lt;b&gt;" in html and "<b>" not in html
    assert 'href="javascript' not in html


def test_settings_checked() -> None:
    check_web_settings(WebSettings())
    for bad in (
        WebSettings(time_zone="Mars/Olympus"),
        WebSettings(language="fr"),
        WebSettings(trusted_proxies=["not-a-network"]),
        WebSettings(public_url="mail.example.jp"),
    ):
        with pytest.raises(ConfigError):
            check_web_settings(bad)


def test_headers_middleware_keeps_an_endpoint_csp() -> None:
    async def page(_: Request) -> Response:
        return PlainTextResponse("x")

    async def framed(_: Request) -> Response:
        return PlainTextResponse(
            "x",
            headers={
                "content-security-policy": "default-src 'none'",
                "x-frame-options": "SAMEORIGIN",
            },
        )

    app = Starlette(routes=[Route("/", page), Route("/framed", framed)])
    with TestClient(SecurityHeaders(app)) as client:
        plain = client.get("/")
        assert plain.headers["content-security-policy"] == PAGE_CSP
        assert plain.headers["x-frame-options"] == "DENY"
        assert plain.headers["cache-control"] == "no-store"
        own = client.get("/framed")
        assert own.headers["content-security-policy"] == "default-src 'none'"
        assert own.headers["x-frame-options"] == "SAMEORIGIN"
        assert own.headers["x-content-type-options"] == "nosniff"
        assert own.headers["referrer-policy"] == "no-referrer"
