"""The mail doctor through `tayori serve`: each cause produced for real (over SMTP, with the
admin commands, the loopback DNS server and a remote sink), then `tayori doctor … --json`
must name it first, in Japanese and in English, with a link where the member can act."""

from __future__ import annotations

import json
import re
import smtplib
from collections.abc import Iterator
from typing import Any

import httpx2 as httpx
import pytest

from tayori.testing.smtp_sink import SmtpSink
from tests.e2e.conftest import Instance, free_port
from tests.e2e.test_sending import ThreadedSink, eventually
from tests.e2e.test_submission import submission

pytestmark = pytest.mark.e2e

ALICE = "alice@example.test"
BOB = "bob@example.test"


def message(subject: str = "hello", sender: str = "friend@remote.test", body: str = "Hi.") -> bytes:
    return (
        f"From: Friend <{sender}>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
        f"Message-ID: <{subject.replace(' ', '.')}@remote.test>\r\n\r\n{body}\r\n"
    ).encode()


def send(
    instance: Instance, data: bytes, sender: str = "friend@remote.test", to: str = ALICE
) -> None:
    with smtplib.SMTP("127.0.0.1", instance.ports["smtp"], timeout=30) as client:
        client.ehlo("mx.remote.test")
        client.sendmail(sender, [to], data)


def with_web(instance: Instance) -> Instance:
    """Turn the instance's webmail on (before it starts), to follow the findings' links."""
    port = free_port()
    config = instance.config.read_text().replace('http = ""', f'http = "127.0.0.1:{port}"')
    instance.config.write_text(config)
    instance.ports["http"] = port
    return instance


def follow(instance: Instance, link: str, user: str = ALICE) -> str:
    """Sign in to the webmail as the member and open the link: it must be a working page."""
    with httpx.Client(base_url=f"http://127.0.0.1:{instance.ports['http']}") as client:
        form = client.get("/login").text
        token = re.search(r'name="csrf_token" value="([^"]+)"', form)
        assert token is not None
        signed_in = client.post(
            "/login",
            data={
                "username": user,
                "password": instance.passwords[user],
                "csrf_token": token.group(1),
            },
        )
        assert signed_in.status_code in (200, 303), signed_in.text[:500]
        page = client.get(link, follow_redirects=True, headers={"accept-language": "en"})
        assert page.status_code == 200, (link, page.status_code)
        assert "/login" not in str(page.url)
        return page.text


@pytest.fixture
def instance(make_instance: Any) -> Iterator[Instance]:
    """alice and bob on an instance with the webmail on (this module's `instance`)."""
    inst: Instance = with_web(make_instance())
    inst.add_user(ALICE)
    inst.add_user(BOB)
    inst.start()
    yield inst
    if inst.process is not None:
        assert inst.stop() == 0, inst.log()


def doctor(instance: Instance, *args: str, lang: str = "en") -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(
        instance.cli("doctor", *args, "--json", "--lang", lang)
    )
    return found


def top_in_both_languages(instance: Instance, *args: str) -> tuple[dict[str, Any], str]:
    """The top finding in English, after checking the Japanese one names the same cause."""
    [en, ja] = [doctor(instance, *args, lang=lang) for lang in ("en", "ja")]
    assert en, "the doctor found nothing"
    assert ja[0]["reason"] == en[0]["reason"]
    assert ja[0]["link"] == en[0]["link"]
    assert ja[0]["summary"] != en[0]["summary"]
    assert any("\u3040" <= ch <= "\u30ff" for ch in ja[0]["summary"] + ja[0]["action"])
    for finding in en:
        assert set(finding) >= {"reason", "summary", "action", "evidence", "link"}
    return en[0], ja[0]["summary"]


def test_a_huge_message_in_the_inbox(make_instance: Any) -> None:
    inst: Instance = with_web(make_instance('[doctor]\nlarge_message_size = "100KB"\n'))
    inst.add_user(ALICE)
    inst.start()
    send(inst, message("small"))
    send(inst, message("huge", body="x" * 76 + "\r\n" * 0 + ("y" * 76 + "\r\n") * 3000))
    top, ja = top_in_both_languages(inst, ALICE)
    assert top["reason"] == "message.large"
    [fact] = top["evidence"]
    assert (fact["kind"], fact["subject"], fact["uid"]) == ("message", "huge", 2)
    assert top["link"] == f"/message/{fact['id']}"
    assert fact["size"] > 100_000
    assert "KB" in top["summary"] and "KB" in ja
    assert "huge" in follow(inst, top["link"])
    assert inst.stop() == 0


def test_a_malformed_message_in_the_inbox(instance: Instance) -> None:
    broken = (
        b"From: x@remote.test\r\nTo: alice@example.test\r\nSubject: broken\r\n"
        b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed\r\n\r\nno boundary at all\r\n"
    )
    send(instance, message("fine"))
    send(instance, broken)
    top, _ = top_in_both_languages(instance, ALICE, "--problem", "receive")
    assert top["reason"] == "message.malformed"
    [fact] = top["evidence"]
    assert "multipart-without-boundary" in fact["defects"]
    assert (fact["subject"], top["link"]) == ("broken", f"/message/{fact['id']}")
    assert "broken" in follow(instance, top["link"])


def test_a_full_mailbox_refused_the_senders_mail(make_instance: Any) -> None:
    inst: Instance = with_web(make_instance())
    inst.add_user(ALICE, quota="20KB")
    inst.start()
    send(inst, message("first", body="z" * 15_000))
    # Refused at RCPT (SIZE declared), with 552 5.2.2 "User quota might be exceeded".
    with pytest.raises(smtplib.SMTPRecipientsRefused) as refused:
        send(inst, message("second", body="z" * 15_000))
    assert refused.value.recipients[ALICE][0] == 552
    top, _ = top_in_both_languages(inst, ALICE, "--sender", "friend@remote.test")
    assert top["reason"] == "rcpt.over_quota"
    assert re.fullmatch(r"/folder/\d+\?sort=size&order=desc", top["link"])
    reasons = [f["reason"] for f in doctor(inst, ALICE, "--sender", "friend@remote.test")]
    assert "no_attempt" not in reasons  # it was attempted: the quota refused it
    assert "first" in follow(inst, top["link"])  # the inbox, largest first
    quota = top["evidence"][0]
    assert quota["kind"] == "quota"
    assert quota["refused_in_period"] == 1
    assert any(
        (e.get("reason"), e.get("sender")) == ("rcpt.over_quota", "friend@remote.test")
        for e in top["evidence"]
    )
    assert inst.stop() == 0


def test_the_members_reject_rule_refused_the_sender(instance: Instance) -> None:
    instance.cli("rules", "add", ALICE, "pest@remote.test")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("buy now", sender="pest@remote.test"), sender="pest@remote.test")
    top, _ = top_in_both_languages(instance, ALICE, "--sender", "pest@remote.test")
    assert top["reason"] == "rule.reject"
    assert top["link"] == "/settings/spam#reject-title"
    rule = top["evidence"][0]
    assert (rule["kind"], rule["pattern"], rule["scope"]) == ("rule", "pest@remote.test", "account")
    assert "pest@remote.test" in follow(instance, top["link"])
    # A rule is found for a sender whose mail has not come yet, too.
    [finding] = [
        f
        for f in doctor(instance, ALICE, "--sender", "pest@remote.test")
        if f["reason"] == "rule.reject"
    ]
    assert finding["link"] == "/settings/spam#reject-title"


def test_mail_filed_in_junk(instance: Instance) -> None:
    instance.dns.zone.add("_dmarc.bank.test", "TXT", "v=DMARC1; p=reject")
    forged = message("your account", sender="info@bank.test")
    send(instance, forged, sender="s@remote.test")
    top, _ = top_in_both_languages(instance, ALICE, "--subject", "your account")
    assert top["reason"] == "spam.junk"
    assert re.fullmatch(r"/message/\d+", top["link"])
    assert "DMARC" in top["summary"]
    assert "your account" in follow(instance, top["link"])


def test_sender_domain_that_does_not_exist(instance: Instance) -> None:
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("typo"), sender="someone@remote.tset")
    top, _ = top_in_both_languages(instance, ALICE, "--sender", "someone@remote.tset")
    assert top["reason"] == "sender.domain_unknown"
    assert top["link"].startswith("/history?")
    assert "someone@remote.tset" in follow(instance, top["link"])


def test_sending_server_on_a_blocklist(make_instance: Any) -> None:
    inst: Instance = with_web(make_instance('[inbound.dnsbl]\nzones = [{ zone = "bl.test" }]\n'))
    inst.dns.zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    inst.add_user(ALICE)
    inst.start()
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(inst, message("listed"))
    top, _ = top_in_both_languages(inst, ALICE, "--sender", "friend@remote.test")
    assert top["reason"] == "dnsbl.listed"
    assert "bl.test" in top["summary"]
    assert top["action"].startswith("Tell the sender")  # not "send from the webmail"
    assert top["link"].startswith("/history?")
    assert "bl.test" in follow(inst, top["link"])
    assert inst.stop() == 0


def test_no_attempt_from_the_sender_reached_us(instance: Instance) -> None:
    # The sender mistyped the address: refused as unknown, never the member's outcome.
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send(instance, message("lunch"), to="alcie@example.test")
    top, ja = top_in_both_languages(instance, ALICE, "--sender", "friend@remote.test")
    assert top["reason"] == "no_attempt"
    assert "friend@remote.test" in top["summary"] and "friend@remote.test" in ja
    assert "alcie@example.test" in top["summary"]
    assert top["link"] == "/doctor"
    assert "Mail sent to me" in follow(instance, top["link"])
    top, _ = top_in_both_languages(instance, ALICE, "--sender", "nobody@elsewhere.test")
    assert top["reason"] == "no_attempt"
    assert "alcie" not in top["summary"]


# --- sending -----------------------------------------------------------------------------------


@pytest.fixture
def remote() -> Iterator[SmtpSink]:
    threaded = ThreadedSink()
    yield threaded.sink
    threaded.close()


def test_remote_server_refuses_for_poor_reputation(make_instance: Any, remote: SmtpSink) -> None:
    remote.rcpt_default = "554 5.7.1 Service unavailable; sender has poor reputation"
    inst: Instance = with_web(make_instance(f"\n[outbound]\nport = {remote.port}\n"))
    inst.add_user(ALICE)
    inst.start()
    with submission(inst) as client:
        client.sendmail(
            ALICE, ["friend@remote.test"], b"From: alice@example.test\r\nSubject: hi\r\n\r\nx\r\n"
        )
    eventually(
        lambda: any(o["reason"] == "remote.rejected" for o in inst.outcomes()), "the refusal"
    )
    top, ja = top_in_both_languages(inst, ALICE, "--problem", "send")
    assert top["reason"] == "remote.rejected"
    assert "reputation" in top["summary"] and "poor reputation" in ja
    outcome = next(e for e in top["evidence"] if e["kind"] == "outcome")
    assert outcome["refusal"] == "reputation"
    assert outcome["remote_reply"].startswith("554 5.7.1")
    assert top["link"] == "/history?direction=out&outcome=remote.rejected"
    assert "friend@remote.test" in follow(inst, top["link"])
    assert inst.stop() == 0


def test_member_sends_from_a_blocklisted_network(make_instance: Any) -> None:
    inst: Instance = with_web(make_instance('[submission.dnsbl]\nzones = ["bl.test"]\n'))
    inst.dns.zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    inst.add_user(ALICE)
    inst.start()
    with submission(inst) as client, pytest.raises(smtplib.SMTPSenderRefused):
        client.sendmail(ALICE, ["friend@remote.test"], b"Subject: hi\r\n\r\nx\r\n")
    top, _ = top_in_both_languages(inst, ALICE, "--problem", "send")
    assert top["reason"] == "dnsbl.listed"
    assert top["link"] == "/compose"
    follow(inst, top["link"])
    network = top["evidence"][0]
    assert (network["kind"], network["ip"], network["zone"]) == ("network", "127.0.0.1", "bl.test")
    assert "bl.test" in top["summary"]
    assert inst.stop() == 0


def test_member_sender_address_has_a_typo_in_its_domain(instance: Instance) -> None:
    with submission(instance) as client, pytest.raises(smtplib.SMTPSenderRefused):
        client.sendmail("alice@example.tset", ["friend@remote.test"], b"Subject: x\r\n\r\nx\r\n")
    top, _ = top_in_both_languages(instance, ALICE, "--problem", "send")
    assert top["reason"] == "sender.domain_unknown"
    assert "example.tset" in top["summary"] or "example.tset" in top["action"]
    assert top["evidence"][0]["dns"] == "nxdomain"
    assert top["link"] == "/history?direction=out"
    assert "does not belong to the account you logged in as" in follow(instance, top["link"])


def test_sending_limit_hits(make_instance: Any) -> None:
    inst: Instance = with_web(make_instance("[submission]\nmessages_per_hour = 1\n"))
    inst.add_user(ALICE)
    inst.add_user(BOB)
    inst.start()
    with submission(inst) as client:
        client.sendmail(ALICE, [BOB], b"Subject: one\r\n\r\nx\r\n")
        with pytest.raises(smtplib.SMTPSenderRefused):
            client.sendmail(ALICE, [BOB], b"Subject: two\r\n\r\nx\r\n")
    top, _ = top_in_both_languages(inst, ALICE, "--problem", "send")
    assert top["reason"] == "rate.limited"
    assert top["evidence"][0]["count"] == 1
    assert top["link"] == "/settings/security#password-title"
    assert 'id="password-title"' in follow(inst, top["link"])
    assert inst.stop() == 0


def test_text_output_for_the_help_desk(instance: Instance) -> None:
    instance.cli("rules", "add", ALICE, "pest@remote.test")
    text = instance.cli("doctor", ALICE, "--sender", "pest@remote.test", "--lang", "ja")
    assert "[rule.reject]" in text
    assert "受信拒否設定" in text
    assert "/settings/spam#reject-title" in text
    nothing = instance.cli("doctor", BOB, "--lang", "en")
    assert nothing.strip() == "No problem found."


def test_mail_the_spam_block_filed_in_junk_shows_score_and_reasons(
    instance: Instance, tmp_path: Any
) -> None:
    spam, ham = tmp_path / "spam", tmp_path / "ham"
    spam.mkdir()
    ham.mkdir()
    for n in range(30):
        (spam / f"{n}.eml").write_bytes(
            message(f"cheap pills casino {n}", body=f"win money casino jackpot pills {n}")
        )
        (ham / f"{n}.eml").write_bytes(
            message(f"meeting agenda {n}", body=f"project schedule review notes {n}")
        )
    instance.cli("spam", "train", "--spam", str(spam), "--ham", str(ham))
    send(instance, message("casino jackpot", body="win money casino jackpot pills now"))
    [outcome] = instance.outcomes()
    assert (outcome["outcome"], outcome["reason"]) == ("junked", "spam.junk")
    top, ja = top_in_both_languages(instance, ALICE, "--sender", "friend@remote.test")
    assert top["reason"] == "spam.junk"
    assert "迷惑メールフォルダ" in ja
    spam_fact = top["evidence"][0]
    assert spam_fact["kind"] == "spam"
    assert spam_fact["score"] > 0.5
    assert "casino" in spam_fact["top_reasons"]
    assert re.fullmatch(r"/message/\d+", top["link"])
    assert "casino jackpot" in follow(instance, top["link"])


def test_mail_kept_here_that_forwarding_left_out(instance: Instance, tmp_path: Any) -> None:
    """A member who reads at the forwarding address misses what forwarding left out: mail
    from a sender on the forwarding's own reject list, and mail judged spam."""
    instance.cli("forward", "add", ALICE, "alice@elsewhere.test")
    instance.cli("rules", "add", ALICE, "club@remote.test", "--list", "forward")
    send(instance, message("club news", sender="club@remote.test"), sender="club@remote.test")
    [outcome] = instance.outcomes()
    assert (outcome["outcome"], outcome["reason"]) == ("delivered", "delivered")
    top, ja = top_in_both_languages(instance, ALICE, "--sender", "club@remote.test")
    assert top["reason"] == "forward.rule_skipped"
    assert top["link"] == "/settings/forwarding"
    assert "転送しない差出人" in ja + json.dumps(
        doctor(instance, ALICE, lang="ja"), ensure_ascii=False
    )
    rule = top["evidence"][0]
    assert (rule["kind"], rule["pattern"]) == ("rule", "club@remote.test")
    assert "club@remote.test" in follow(instance, top["link"])
    # The rule is found for a sender whose mail has not come yet too.
    instance.cli("rules", "add", ALICE, "*@quiet.test", "--list", "forward")
    [ahead] = [
        f
        for f in doctor(instance, ALICE, "--sender", "x@quiet.test")
        if f["reason"] == "forward.rule_skipped"
    ]
    assert ahead["evidence"][0]["pattern"] == "*@quiet.test"

    spam, ham = tmp_path / "spam", tmp_path / "ham"
    spam.mkdir()
    ham.mkdir()
    for n in range(30):
        (spam / f"{n}.eml").write_bytes(message(f"casino {n}", body=f"casino jackpot pills {n}"))
        (ham / f"{n}.eml").write_bytes(message(f"agenda {n}", body=f"project review notes {n}"))
    instance.cli("spam", "train", "--spam", str(spam), "--ham", str(ham))
    send(instance, message("casino jackpot", body="win casino jackpot pills now"))
    top, ja = top_in_both_languages(instance, ALICE, "--sender", "friend@remote.test")
    assert top["reason"] == "forward.spam_skipped"
    assert "転送" in ja and "迷惑メール" in ja
    assert top["evidence"][0]["kind"] == "spam"
    assert re.fullmatch(r"/message/\d+", top["link"])
    assert "casino jackpot" in follow(instance, top["link"])
