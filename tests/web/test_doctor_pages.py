"""The delivery history and mail doctor pages: over HTTP (filters, privacy, the JSON API)
and in a real Chromium (the three entry points, findings with links that open the right
page)."""

from __future__ import annotations

import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from tayori.auth.passwords import hash_password
from tayori.config.settings import DoctorSettings, SubmissionDnsblSettings
from tayori.core.outcome import Direction, Outcome, OutcomeKind
from tayori.diagnostics.doctor import Doctor
from tayori.dns.resolver import DnsPythonResolver
from tayori.rules.model import NewRule, RuleList, RuleOwner
from tayori.testing.dns_server import DnsServer, Zone
from tayori.web.routes.doctor import EVIDENCE_LABELS
from tests.web.conftest import LiveWeb, WebEnv, browser_login, login

NOW = datetime.now(UTC)


def refused(env: WebEnv, **changes: Any) -> Outcome:
    base = Outcome(
        direction=Direction.INBOUND,
        sender="pest@remote.test",
        recipient=env.address,
        outcome=OutcomeKind.REJECTED,
        reason="rule.reject",
        reply="550 5.7.1 Message refused by the recipient's reject settings",
        detail="account rule 1 (pest@remote.test) matched envelope sender",
        account_id=env.account.id,
        remote_ip="192.0.2.77",
        remote_host="mx.pest.test",
        subject="",
        time=NOW - timedelta(hours=1),
    )
    return replace(base, **changes)


def big_message(subject: str) -> bytes:
    return (
        f"From: friend@remote.test\r\nTo: taro@example.test\r\nSubject: {subject}\r\n\r\n".encode()
        + b"x" * 76 * 3000
    )


def seed(env: WebEnv) -> None:
    """A member with history, a rule and a huge message; and another member's outcomes."""
    stores = env.stores
    stores.rules.add_rule(
        RuleOwner.account(env.account.id), NewRule(RuleList.REJECT, "pest@remote.test")
    )
    other = stores.metadata.add_account("hanako@example.test", hash_password("x" * 12), 0)
    stores.metadata.record_outcomes(
        [
            refused(env),
            refused(
                env,
                sender="x@nowhere.test",
                reason="sender.domain_unknown",
                reply="550 5.1.8 Sender address rejected: Domain not found",
                detail="nowhere.test: nxdomain",
                account_id=None,
                time=NOW - timedelta(days=3),
            ),
            refused(
                env,
                recipient="hanako@example.test",
                account_id=other.id,
                subject="hanako's secret",
                sender="secret@remote.test",
            ),
            refused(
                env,
                recipient="hanako@example.test",
                account_id=None,
                reason="dnsbl.listed",
                sender="secret2@remote.test",
            ),
        ]
    )
    env.put(b"From: friend@remote.test\r\nTo: taro@example.test\r\nSubject: welcome\r\n\r\nhi\r\n")
    env.put(big_message("huge attachment"))
    # The doctor's threshold, low for the test (the config key is [doctor] large_message_size).
    context = env.app.state.tayori
    env.app.state.tayori_doctor = Doctor(
        context.stores.metadata,
        context.stores.blobs,
        context.stores.rules,
        _NoDns(),
        DoctorSettings(large_message_size=100_000),
        context.settings.submission.dnsbl,
    )


class _NoDns:
    """The pages' checks here need no DNS; asking would be a test bug."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected DNS question: {name}")


def test_history_page_shows_the_members_own_rows_in_plain_words(
    client: TestClient, web_env: WebEnv
) -> None:
    seed(web_env)
    login(client, web_env)
    page = client.get("/history", headers={"accept-language": "en"})
    assert page.status_code == 200
    text = page.text
    assert "It matched your reject settings, so it was refused" in text
    assert 'href="/settings/spam#reject-title"' in text
    assert "The domain of the sender address does not exist in DNS" in text
    # Never another member's outcomes, never private detail.
    for secret in ("hanako", "secret@remote.test", "secret2@", "192.0.2.77", "mx.pest.test"):
        assert secret not in text
    assert "matched envelope sender" not in text
    filtered = client.get("/history?outcome=delivered", headers={"accept-language": "en"}).text
    assert "Delivered to the inbox." in filtered and "reject settings" not in filtered
    assert filtered.count('<a class="go" href="/message/') == 2
    empty = client.get("/history?direction=out", headers={"accept-language": "en"}).text
    assert "Nothing in your delivery history matches." in empty
    japanese = client.get("/history", headers={"accept-language": "ja"}).text
    assert "受信拒否設定に一致したため" in japanese


def test_history_and_doctor_api(client: TestClient, web_env: WebEnv) -> None:
    seed(web_env)
    login(client, web_env)
    rows = client.get("/api/v1/history?party=pest").json()["entries"]
    assert [row["reason"] for row in rows] == ["rule.reject"]
    assert not {"detail", "remote_ip", "reply"} & set(rows[0])
    findings = client.get("/api/v1/doctor?problem=missing&sender=pest@remote.test").json()
    assert findings[0]["reason"] == "rule.reject"
    assert findings[0]["link"] == "/settings/spam#reject-title"
    received = client.get("/api/v1/doctor?problem=receive").json()
    assert received[0]["reason"] == "message.large"


def test_doctor_page_without_a_question_offers_the_three_entry_points(
    client: TestClient, web_env: WebEnv
) -> None:
    login(client, web_env)
    text = client.get("/doctor", headers={"accept-language": "ja"}).text
    for question in (
        "メールを受信できない",
        "送ってもらったメールが届かない",
        "送ったメールが相手に届かない",
    ):
        assert question in text
    assert 'id="findings"' not in text


def test_doctor_page_shows_evidence_names_in_the_members_language(
    client: TestClient, web_env: WebEnv
) -> None:
    """The page labels each fact in Japanese or English; the JSON API keeps the names."""
    seed(web_env)
    login(client, web_env)
    query = "/doctor?problem=missing&sender=pest@remote.test"
    japanese = client.get(query, headers={"accept-language": "ja"}).text
    english = client.get(query, headers={"accept-language": "en"}).text
    fact = '<span class="fact" data-key="{key}"><span class="key">{label}</span>: {value}</span>'
    for key, ja, en, value in (
        ("sender", "送信者", "Sender", "pest@remote.test"),
        ("reason", "理由コード", "Reason code", "rule.reject"),
        ("pattern", "条件", "Pattern", "pest@remote.test"),
    ):
        assert fact.format(key=key, label=ja, value=value) in japanese
        assert fact.format(key=key, label=en, value=value) in english
    # Values that are our own words are translated too; the member's data is not.
    for key, label_ja, value_ja, label_en, value_en in (
        ("direction", "方向", "受信したメール", "Direction", "Mail to me"),
        ("outcome", "結果", "拒否", "Result", "Refused"),
        ("scope", "適用範囲", "あなた自身のルール", "Scope", "Your own rule"),
    ):
        assert fact.format(key=key, label=label_ja, value=value_ja) in japanese
        assert fact.format(key=key, label=label_en, value=value_en) in english
    assert (
        re.findall(
            r'data-key="(?:direction|outcome|scope)"><span class="key">[^<]*</span>: '
            r"(in|out|rejected|account)<",
            japanese + english,
        )
        == []
    )
    for text in (japanese, english):
        assert '<span class="key">sender</span>' not in text
        assert re.findall(r'<span class="key">([a-z_]+)</span>', text) == []
    findings = client.get("/api/v1/doctor?problem=missing&sender=pest@remote.test").json()
    evidence = findings[0]["evidence"]
    assert any(item.get("sender") == "pest@remote.test" for item in evidence), evidence
    assert {
        (item.get("direction"), item.get("outcome")) for item in evidence if "outcome" in item
    } == {("in", "rejected")}
    assert [name for item in evidence for name in item if not re.fullmatch("[a-z_]+", name)] == []


def test_every_evidence_name_the_doctor_gives_has_a_label(
    client: TestClient, web_env: WebEnv
) -> None:
    seed(web_env)
    # A mailbox 95% full that has refused mail: the quota finding and its facts too.
    metadata = web_env.stores.metadata
    account = metadata.get_account_by_id(web_env.account.id)
    assert account is not None and account.used_bytes > 0
    metadata.set_quota(web_env.address, account.used_bytes * 100 // 95)
    metadata.record_outcomes([refused(web_env, reason="rcpt.over_quota", sender="a@remote.test")])
    login(client, web_env)
    names: set[str] = set()
    for query in ("problem=receive", "problem=missing&sender=pest@remote.test", "problem=send"):
        for finding in client.get(f"/api/v1/doctor?{query}").json():
            for item in finding["evidence"]:
                names |= set(item) - {"kind"}
    assert {"sender", "reason", "threshold", "used", "quota", "last_refused"} <= names
    assert sorted(names - set(EVIDENCE_LABELS)) == []


@pytest.mark.browser
def test_history_and_doctor_in_the_browser(live_web: LiveWeb, page: Any, artefacts: Path) -> None:
    env = live_web.env
    seed(env)
    browser_login(page, live_web.url, env.address, env.password)

    page.click("text=配信履歴")
    page.wait_for_url("**/history")
    rows = page.locator("#history tbody tr")
    assert rows.count() == 4
    rejected = page.locator('#history tr[data-reason="rule.reject"]')
    assert "受信拒否設定に一致したため" in rejected.inner_text()
    page.screenshot(path=str(artefacts / "history.png"), full_page=True)
    page.click("details.search > summary")
    page.select_option("#h-outcome", "rejected")
    page.click("#history-apply")
    page.wait_for_load_state()
    assert page.locator("#history tbody tr").count() == 2
    page.locator('#history tr[data-reason="rule.reject"] a.go').click()
    page.wait_for_load_state()
    assert page.url.endswith("/settings/spam#reject-title")
    assert "pest@remote.test" in page.locator("main").inner_text()

    page.click("text=メール診断")
    page.wait_for_url("**/doctor")
    page.click("#check-receive")
    page.wait_for_load_state()
    first = page.locator("#findings li.finding").first
    assert first.get_attribute("data-reason") == "message.large"
    assert "大きなメール" in first.inner_text()
    page.screenshot(path=str(artefacts / "doctor.png"), full_page=True)
    first.locator("a.go").click()
    page.wait_for_load_state()
    assert "/message/" in page.url
    assert "huge attachment" in page.locator("main").inner_text()

    page.goto(f"{live_web.url}/doctor")
    page.fill("#d-sender", "pest@remote.test")
    page.click("#check-missing")
    page.wait_for_load_state()
    first = page.locator("#findings li.finding").first
    assert first.get_attribute("data-reason") == "rule.reject"
    page.click("#findings li.finding >> nth=0 >> summary")
    assert "pest@remote.test" in first.locator(".evidence").inner_text()
    assert page.blocked_requests == []


def test_doctor_uses_the_requests_network_for_the_blocklist_check(
    client: TestClient, web_env: WebEnv
) -> None:
    """The member's current network is the browser's address (here 127.0.0.1), asked of the
    submission blocklists through a real DNS server on loopback."""
    zone = Zone()
    zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    with DnsServer(zone) as dns:
        resolver = DnsPythonResolver(dns.settings())
        context = web_env.app.state.tayori
        web_env.app.state.tayori_doctor = Doctor(
            context.stores.metadata,
            context.stores.blobs,
            context.stores.rules,
            resolver,
            DoctorSettings(),
            SubmissionDnsblSettings(["bl.test"]),
        )
        login(client, web_env)
        findings = client.get("/api/v1/doctor?problem=send").json()
    assert findings[0]["reason"] == "dnsbl.listed"
    assert findings[0]["evidence"][0]["ip"] == "127.0.0.1"
    assert findings[0]["link"] == "/compose"
