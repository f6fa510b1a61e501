"""Compose, reply and settings in a real Chromium against the whole service (`tayori serve`
in a subprocess, with its SMTP, POP3 and web listeners on loopback, the test DNS server and a
remote SMTP sink): what a member does in the browser has its effect on real mail.

- compose with an attachment to a local and a remote address: the local member downloads it
  over POP3, the remote server (sink) receives it, and the copy is in Sent;
- reply from the message view's link: In-Reply-To, References, "Re:" and \\Answered;
- reject list and forwarding changed in the settings pages, then mail delivered over SMTP;
- two-step login (TOTP) in the browser, and an app password that works for POP3 while the
  account password no longer does.
"""

from __future__ import annotations

import email
import poplib
import smtplib
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest

from tayori.auth import totp
from tayori.testing.dns_server import DnsServer
from tayori.testing.smtp_sink import SmtpSink
from tests.conftest import temporary_pg_database
from tests.e2e.conftest import Instance, base_zone, free_port
from tests.e2e.mail import pop3_download
from tests.e2e.test_sending import ThreadedSink, eventually
from tests.web.conftest import browser_login

pytestmark = [pytest.mark.e2e, pytest.mark.browser]

ALICE = "alice@example.test"
BOB = "bob@example.test"
ATTACHMENT = ("①髙橋_見積書.pdf", b"%PDF-1.4\n" + bytes(range(256)) * 40)


class Served:
    def __init__(self, instance: Instance, sink: SmtpSink, web_port: int) -> None:
        self.instance = instance
        self.sink = sink
        self.url = f"http://127.0.0.1:{web_port}"

    def password(self, address: str) -> str:
        return self.instance.passwords[address]

    def pop3(self, address: str, password: str | None = None) -> list[bytes]:
        port = self.instance.ports["pop3"]
        return pop3_download(port, address, password or self.password(address))

    def smtp(self, sender: str, recipient: str, subject: str) -> None:
        mail = EmailMessage()
        mail["From"] = sender
        mail["To"] = recipient
        mail["Subject"] = subject
        mail["Message-ID"] = f"<{time.monotonic_ns()}@remote.test>"
        mail.set_content("こんにちは\n")
        with smtplib.SMTP("127.0.0.1", self.instance.ports["smtp"], timeout=30) as client:
            client.ehlo("mx.remote.test")
            client.sendmail(sender, [recipient], mail.as_bytes())


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def storage(request: pytest.FixtureRequest) -> Iterator[str]:
    if request.param == "sqlite":
        yield ""
    else:
        with temporary_pg_database("tayori_web_e2e") as url:
            yield url


@pytest.fixture
def served(tmp_path: Path, storage: str) -> Iterator[Served]:
    threaded = ThreadedSink()
    web_port = free_port()
    with DnsServer(base_zone()) as dns:
        instance = Instance(
            tmp_path / "instance",
            storage,
            dns,
            f"\n[outbound]\nport = {threaded.sink.port}\n",
        )
        # The e2e instance turns the web listener off; this test needs it.
        config = instance.config.read_text()
        instance.config.write_text(config.replace('http = ""', f'http = "127.0.0.1:{web_port}"'))
        instance.add_user(ALICE)
        instance.add_user(BOB)
        instance.start()
        try:
            yield Served(instance, threaded.sink, web_port)
        finally:
            instance.stop()
            threaded.close()


def sign_in(page: Any, served: Served, address: str) -> None:
    browser_login(page, served.url, address, served.password(address))
    assert "/login" not in page.url, page.content()[:2000]


def parsed(raw: bytes) -> Any:
    return email.message_from_bytes(raw, policy=default_policy)


def test_compose_send_local_and_remote_then_reply(
    served: Served, page: Any, tmp_path: Path, artefacts: Path
) -> None:
    sign_in(page, served, ALICE)
    page.click("text=メール作成")  # the layout's Compose link
    page.wait_for_selector("#compose-form")
    assert page.locator("#attachment-limit").inner_text().startswith("添付ファイルは合計")
    page.fill("#to", f"Bob <{BOB}>, friend@remote.test")
    page.fill("#subject", "見積書の送付 ①")
    page.fill("#body", "髙橋様\n見積書をお送りします。")
    name, data = ATTACHMENT
    page.set_input_files(
        "#attachments", files=[{"name": name, "mimeType": "application/pdf", "buffer": data}]
    )
    page.screenshot(path=str(artefacts / "compose.png"), full_page=True)
    page.click("#send")
    try:
        page.wait_for_selector("#sent-notice", timeout=10000)
    except Exception:
        print("URL", page.url, page.content()[:5000], served.instance.log())
        raise
    assert "/compose/sent" in page.url

    # The local recipient downloads it over POP3, attachment bytes intact.
    [received] = served.pop3(BOB)
    message = parsed(received)
    assert message["subject"] == "見積書の送付 ①"
    [part] = [p for p in message.iter_attachments()]
    assert part.get_filename() == name and part.get_content() == data
    # The remote recipient's server gets it through the queue.
    eventually(lambda: len(served.sink.transactions) == 1, "the remote server to get it")
    [remote] = served.sink.transactions
    assert remote.mail_from == ALICE and remote.rcpt_tos == ("friend@remote.test",)
    # The Sent folder shows the copy.
    page.goto(served.url + "/")
    page.click("nav.side >> text=送信済み")
    assert page.locator("text=見積書の送付 ①").count() >= 1

    # Bob replies from his inbox.
    page.context.clear_cookies()
    sign_in(page, served, BOB)
    page.click("text=見積書の送付 ①")
    message_id = page.url.rstrip("/").rsplit("/", 1)[1].split("?")[0]
    page.goto(f"{served.url}/compose?reply={message_id}")
    assert page.input_value("#to") == ALICE
    assert page.input_value("#subject") == "Re: 見積書の送付 ①"
    assert "> 見積書をお送りします。" in page.input_value("#body")
    page.fill("#body", "受け取りました。\n" + page.input_value("#body"))
    page.click("#send")
    page.wait_for_selector("#sent-notice")
    [reply] = served.pop3(ALICE)
    answer = parsed(reply)
    original_id = message["message-id"]
    assert answer["subject"] == "Re: 見積書の送付 ①"
    assert answer["in-reply-to"] == original_id and original_id in answer["references"]
    assert "受け取りました。" in answer.get_content()


def test_reject_list_and_forwarding_take_effect(served: Served, page: Any, artefacts: Path) -> None:
    sign_in(page, served, ALICE)
    page.goto(served.url + "/settings/spam")
    page.fill("#reject-pattern", "spammer@remote.test")
    page.select_option("#reject-action", "reject")
    page.click("#add-reject")
    page.wait_for_selector("#settings-done")
    assert page.locator("#reject-rules").inner_text().count("spammer@remote.test") == 1
    page.fill("#reject-pattern", "not a pattern!")
    page.click("#add-reject")
    assert "アドレスでもドメインでもありません" in page.locator("#settings-error").inner_text()
    page.screenshot(path=str(artefacts / "settings-spam.png"), full_page=True)

    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        served.smtp("spammer@remote.test", ALICE, "買ってください")
    code, text = refused.value.recipients[ALICE]
    assert code == 550 and b"reject" in text  # refused at RCPT: the sender is told
    served.smtp("friend@remote.test", ALICE, "普通のメール")  # others still arrive

    page.goto(served.url + "/settings/forwarding")
    page.fill("#forward-address", "alice.other@remote.test")
    page.click("#add-forward")
    page.wait_for_selector("#settings-done")
    assert "alice.other@remote.test" in page.locator("#forward-targets").inner_text()
    page.screenshot(path=str(artefacts / "settings-forwarding.png"), full_page=True)
    served.smtp("friend@remote.test", ALICE, "転送されるメール")
    eventually(
        lambda: any(t.rcpt_tos == ("alice.other@remote.test",) for t in served.sink.transactions),
        "the forwarded copy to reach the forwarding address",
    )
    subjects = [parsed(raw)["subject"] for raw in served.pop3(ALICE)]
    assert subjects == [
        "普通のメール",
        "転送されるメール",
    ]  # kept a copy; the refused one is not here


def test_two_step_login_and_app_password_for_pop3(
    served: Served, page: Any, artefacts: Path
) -> None:
    sign_in(page, served, ALICE)
    page.goto(served.url + "/settings/security")
    page.click("#totp-begin")
    page.wait_for_selector("#totp-secret")
    qr_width = page.locator('img[src="/settings/totp/qr.svg"]').evaluate(
        "i => i.complete ? i.naturalWidth"
        " : new Promise(done => i.addEventListener('load', () => done(i.naturalWidth)))"
    )
    assert qr_width > 0  # the QR code is drawn here, not by another site
    secret = page.inner_text("#totp-secret").replace(" ", "")
    page.screenshot(path=str(artefacts / "settings-totp.png"), full_page=True)
    step = totp.step_at(time.time())
    page.fill("#totp-code", totp.code_at(secret, step))
    page.click("#totp-confirm")
    page.wait_for_selector("#settings-done")
    page.fill("#app-password-name", "Thunderbird")
    page.click("#create-app-password")
    app_password = page.inner_text("#new-app-password")

    # POP3: the account password no longer works, the app password does.
    with pytest.raises(poplib.error_proto):
        served.pop3(ALICE)
    assert served.pop3(ALICE, app_password) == []

    # Signing in to the webmail now asks for a code.
    page.context.clear_cookies()
    browser_login(page, served.url, ALICE, served.password(ALICE))
    assert page.url.endswith("/login/totp")
    page.fill("#code", totp.code_at(secret, step - 5))
    page.click("button[type=submit] >> nth=0")
    assert "コードが正しくありません" in page.inner_text("#totp-error")
    # A step after the enrolment code's (a code is never accepted twice), and not in the past
    # however slowly this ran.
    page.fill("#code", totp.code_at(secret, max(step + 1, totp.step_at(time.time()))))
    page.click("button[type=submit] >> nth=0")
    page.wait_for_load_state()
    assert "/login" not in page.url and "/folder/" in page.url


def test_drafts_are_saved_automatically_and_go_when_sent(served: Served, page: Any) -> None:
    sign_in(page, served, ALICE)
    page.goto(served.url + "/compose")
    page.fill("#to", BOB)
    page.fill("#subject", "自動保存のテスト")
    page.fill("#body", "書きかけ")
    # Every 60 s in use; one second here (set after typing, so exactly one save happens).
    page.evaluate("document.getElementById('compose-form').setAttribute('data-autosave', '1')")
    page.wait_for_selector("#autosave-status:not(:empty)")
    draft_id = page.input_value('input[name="draft_id"]')
    assert draft_id.isdigit()
    page.goto(f"{served.url}/compose?draft={draft_id}")
    assert page.input_value("#subject") == "自動保存のテスト"
    assert page.input_value("#body") == "書きかけ"
    page.click("#send")
    page.wait_for_selector("#sent-notice")
    page.goto(f"{served.url}/compose?draft={draft_id}")
    assert page.locator("#compose-error").count() == 1  # the draft is gone once sent
    [received] = served.pop3(BOB)
    assert parsed(received)["subject"] == "自動保存のテスト"
