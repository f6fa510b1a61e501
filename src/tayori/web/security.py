"""Response headers every page gets, who the client is behind a proxy, and CSRF checks.

The page CSP allows scripts and styles from our own origin only: no inline script, no
`eval`, no third-party host. A message's HTML is never part of a page: it is served by its
own endpoint under a much stricter CSP (`BODY_CSP`) inside `<iframe sandbox>`, so even if
the sanitiser missed something, nothing in it could run or reach our pages' cookies.
"""

from __future__ import annotations

import hmac
import ipaddress
from collections.abc import Sequence

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

PAGE_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; frame-src 'self'; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
BODY_CSP = (
    "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src 'none'; "
    "form-action 'none'; base-uri 'none'; frame-ancestors 'self'; sandbox allow-popups "
    "allow-popups-to-escape-sandbox"
)
"""For a sanitised message body: inline styles are the only thing a mail's HTML may use;
images only as data: (remote ones are replaced by the sanitiser until "show images")."""
BODY_CSP_IMAGES = BODY_CSP.replace("img-src data:", "img-src data: https: http:")
"""The same after the member clicked "show images": remote images, nothing else."""
PREVIEW_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"
"""An image attachment opened in the browser: shown, nothing else loads or runs."""
PDF_PREVIEW_CSP = "default-src 'none'; object-src 'self'"
"""A PDF opened in the browser's own viewer, which refuses to run in a sandboxed document;
the viewer has no access to our pages."""

_COMMON = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=(), payment=()"),
)
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SecurityHeaders:
    """ASGI middleware: adds the headers to every response, keeping a stricter CSP (and
    X-Frame-Options) that an endpoint set itself, e.g. a message body's."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                if b"x-frame-options" not in present:
                    headers.append((b"x-frame-options", b"DENY"))
                if b"cache-control" not in present:
                    # Mail is private: never kept by a shared cache or the back button.
                    headers.append((b"cache-control", b"no-store"))
                headers.extend(item for item in _COMMON if item[0] not in present)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _networks(trusted: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(item, strict=False) for item in trusted]


class ClientInfo:
    """The client's address and scheme: the peer's, or what a trusted proxy says."""

    def __init__(self, trusted_proxies: Sequence[str], public_url: str) -> None:
        self._trusted = _networks(trusted_proxies)
        self._public_https = public_url.lower().startswith("https://")

    def _is_trusted(self, ip: str) -> bool:
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in network for network in self._trusted)

    def ip(self, request: Request) -> str:
        peer = request.client.host if request.client else ""
        if not self._is_trusted(peer):
            return peer
        forwarded = request.headers.get("x-forwarded-for", "")
        # Walk from the right: the last address no trusted proxy added is the client.
        for hop in reversed([item.strip() for item in forwarded.split(",") if item.strip()]):
            if not self._is_trusted(hop):
                return hop
        return peer

    def is_https(self, request: Request) -> bool:
        if request.url.scheme == "https" or self._public_https:
            return True
        peer = request.client.host if request.client else ""
        if self._is_trusted(peer):
            return request.headers.get("x-forwarded-proto", "").lower() == "https"
        return False


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip).is_loopback
    except ValueError:
        return False


def tokens_match(expected: str, given: str | None) -> bool:
    """Constant-time comparison; an empty expected token never matches."""
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def same_origin(request: Request, public_url: str) -> bool:
    """False when the browser says the request comes from another site (Sec-Fetch-Site or
    Origin); requests without them (old browsers, other clients) are left to the token."""
    # Fetch metadata first: browsers send it on every request and a page cannot forge it.
    if request.headers.get("sec-fetch-site", "").lower() in ("cross-site", "same-site"):
        return False
    origin = request.headers.get("origin")
    # "null" is what browsers send for our own forms too, because every page says
    # Referrer-Policy: no-referrer; the token then decides.
    if origin is None or origin == "null":
        return True
    allowed = {f"{request.url.scheme}://{request.headers.get('host', '')}".lower()}
    if public_url:
        allowed.add(public_url.rstrip("/").lower())
    forwarded = request.headers.get("x-forwarded-host")
    if forwarded:
        allowed.add(f"https://{forwarded}".lower())
    return origin.rstrip("/").lower() in allowed
