"""Fixtures for the webmail: real stores (SQLite and PostgreSQL), the app in-process (for
HTTP-level tests) or served by uvicorn on a loopback port (for the browser), and Debian's
Chromium driven by Playwright.

Reusable by other web test modules:
- `web_env`: a `WebEnv` with stores, an account (`env.address`, `env.password`), the app, and
  `env.put(raw, mailbox=..., flags=...)` to file a message directly.
- `client`: a Starlette TestClient for `web_env.app` (cookies kept), `login(client, env)`.
- `live_web`: the same app served on 127.0.0.1:PORT in a thread; `live_web.url`.
- `browser`: a Playwright Browser on /usr/bin/chromium (skips outside CI when absent);
  `page` = a new page whose requests to any host but loopback are blocked and recorded
  (`page.blocked_requests`), with dialogs recorded (`page.dialogs`).
- `artefacts`: a directory for screenshots (TAYORI_ARTEFACTS or pytest's tmp dir).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tayori.auth.authenticator import Authenticator
from tayori.auth.passwords import hash_password
from tayori.auth.throttle import LoginThrottle
from tayori.config.loader import settings_from_mapping
from tayori.config.settings import Settings
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.delivery.summary import summarise
from tayori.storage.factory import Stores, migrate, open_stores
from tayori.storage.records import Account, NewMessage, SpecialUse, StoredMessage
from tests.conftest import IN_CI, temporary_pg_database

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
DOMAIN = "example.test"
PASSWORD = "correct horse battery staple"


def index_for(raw: bytes) -> Any:
    """The search index delivery stores with a message (when the mailbox store has it)."""
    from tayori.delivery.indexing import message_index

    return message_index(raw)


@dataclass
class WebEnv:
    settings: Settings
    stores: Stores
    account: Account
    address: str
    password: str
    app: Any = None
    now: list[datetime] = field(default_factory=list)

    def clock(self) -> datetime:
        return self.now[0] if self.now else datetime.now(UTC)

    def put(
        self,
        raw: bytes,
        mailbox: SpecialUse = SpecialUse.INBOX,
        flags: frozenset[str] = frozenset(),
        when: datetime | None = None,
        account: Account | None = None,
    ) -> StoredMessage:
        """File a message as delivery does (blob first, then the metadata with its index)."""
        account = account or self.account
        raw = re.sub(rb"\r?\n", b"\r\n", raw)
        ref = self.stores.blobs.put([raw])
        summary = summarise(raw)
        outcome = Outcome(
            direction=Direction.INBOUND,
            sender="sender@remote.test",
            recipient=account.address,
            outcome=OutcomeKind.DELIVERED,
            reason="delivered",
            account_id=account.id,
        )
        item = NewMessage(
            account_id=account.id,
            mailbox=mailbox,
            blob_ref=ref,
            size=len(raw),
            internal_date=when or datetime.now(UTC),
            summary=summary,
            on_delivered=outcome,
            on_over_quota=replace(outcome, outcome=OutcomeKind.REJECTED),
            flags=flags,
            enforce_quota=False,
        )
        index = index_for(raw)
        if index is not None:
            item = replace(item, index=index)
        (result,) = self.stores.metadata.append_messages([item])
        stored = self.stores.metadata.get_message_by_uid(result.mailbox_id, result.uid)
        assert stored is not None
        return stored

    def refresh(self) -> Account:
        account = self.stores.metadata.get_account_by_id(self.account.id)
        assert account is not None
        self.account = account
        return account


def make_settings(data_dir: Path, url: str, web: dict[str, Any] | None = None) -> Settings:
    return settings_from_mapping(
        {
            "server": {"hostname": "mx.example.test", "data_dir": str(data_dir)},
            "storage": {"url": url},
            "auth": {"failure_delay": 0.0},
            "web": web or {},
        }
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
    else:
        with temporary_pg_database("tayori_web") as url:
            yield url


@pytest.fixture
def web_settings() -> dict[str, Any]:
    """Override to change `[web]` keys for a module's tests."""
    return {}


@pytest.fixture
def web_env(tmp_path: Path, storage_url: str, web_settings: dict[str, Any]) -> Iterator[WebEnv]:
    from tayori.web import WebContext, create_app

    data = tmp_path / "data"
    data.mkdir()
    settings = make_settings(data, storage_url, web_settings)
    migrate(settings.storage.url, data)
    stores = open_stores(settings.storage.url, data)
    try:
        stores.metadata.add_domain(DOMAIN)
        address = f"taro@{DOMAIN}"
        account = stores.metadata.add_account(address, hash_password(PASSWORD), 50_000_000)
        env = WebEnv(settings, stores, account, address, PASSWORD)
        authenticator = Authenticator(stores.metadata, LoginThrottle(settings.auth), settings.auth)
        context = WebContext(
            settings=settings, stores=stores, authenticator=authenticator, clock=env.clock
        )
        env.app = create_app(context)
        yield env
    finally:
        stores.close()


@pytest.fixture
def client(web_env: WebEnv) -> Iterator[TestClient]:
    # base_url on loopback: the session cookie is not Secure there, as in local testing.
    with TestClient(web_env.app, base_url="http://127.0.0.1", client=("127.0.0.1", 50000)) as c:
        yield c


def csrf_from(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match is not None, "no csrf_token field in the page"
    return match.group(1)


def login(client: TestClient, env: WebEnv, password: str | None = None) -> Any:
    page = client.get("/login")
    return client.post(
        "/login",
        data={
            "username": env.address,
            "password": env.password if password is None else password,
            "csrf_token": csrf_from(page.text),
        },
        follow_redirects=False,
    )


# --- live server and browser ---------------------------------------------------------------


@dataclass
class LiveWeb:
    url: str
    env: WebEnv


@pytest.fixture
def live_web(web_env: WebEnv) -> Iterator[LiveWeb]:
    """The app on a real loopback socket (uvicorn, as `tayori serve` runs it) in a thread."""
    from tayori.web.server import WebServer

    server = WebServer(web_env.app.state.tayori)
    server.app = web_env.app
    loop = asyncio.new_event_loop()
    started = threading.Event()
    stop = asyncio.Event()
    failure: list[BaseException] = []

    async def run() -> None:
        try:
            await server.start("127.0.0.1", 0)
        except BaseException as error:
            failure.append(error)
            started.set()
            return
        started.set()
        await stop.wait()
        await server.stop()

    thread = threading.Thread(target=loop.run_until_complete, args=(run(),), daemon=True)
    thread.start()
    started.wait(30)
    if failure:
        raise failure[0]
    port = server.sockets[0].getsockname()[1]
    try:
        yield LiveWeb(f"http://127.0.0.1:{port}", web_env)
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(30)
        loop.close()


def _chromium_missing() -> str | None:
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} not installed (scripts/install-test-deps.sh installs it)"
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install -e '.[test]')"
    return None


@pytest.fixture
def browser() -> Iterator[Any]:
    """Per test: Playwright's sync API runs an event loop in this thread while it is open, and
    `asyncio.run` in a later non-browser test would fail inside it."""
    reason = _chromium_missing()
    if reason is not None:
        if IN_CI:
            pytest.fail(f"CI=true requires the browser: {reason}")
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


LOOPBACK = re.compile(r"^[a-z]+://(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(/|$)")


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context and page: requests to non-loopback hosts are aborted and
    recorded in `page.blocked_requests`, dialogs in `page.dialogs`, console messages in
    `page.console`."""
    context = browser.new_context(locale="ja-JP", timezone_id="Asia/Tokyo")
    new_page = context.new_page()
    blocked: list[str] = []
    dialogs: list[str] = []
    console: list[str] = []

    def route(route: Any) -> None:
        url = route.request.url
        if url.startswith(("data:", "about:", "blob:")) or LOOPBACK.match(url):
            route.continue_()
        else:
            blocked.append(url)
            route.abort()

    context.route("**/*", route)

    def on_dialog(dialog: Any) -> None:
        dialogs.append(dialog.message)
        dialog.dismiss()

    new_page.on("dialog", on_dialog)
    new_page.on("console", lambda message: console.append(message.text))
    new_page.blocked_requests = blocked
    new_page.dialogs = dialogs
    new_page.console = console
    try:
        yield new_page
    finally:
        context.close()


@pytest.fixture
def artefacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: $TAYORI_ARTEFACTS/web, else a pytest temporary directory."""
    root = os.environ.get("TAYORI_ARTEFACTS")
    path = Path(root) / "web" if root else tmp_path_factory.mktemp("web-artefacts")
    path.mkdir(parents=True, exist_ok=True)
    return path


def browser_login(page: Any, base: str, address: str, password: str) -> None:
    page.goto(f"{base}/login")
    page.fill('input[name="username"]', address)
    page.fill('input[name="password"]', password)
    page.click('button[type="submit"]')
    page.wait_for_load_state()


def shutil_which(name: str) -> str | None:
    return shutil.which(name)


LoginFn = Callable[[Any, str, str, str], None]
