"""`tayori trace`: the admin's message trace across accounts, and "what would happen" run
through the real inbound pipeline (loopback DNS, member rules, spam block) without
delivering or recording anything."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import Instance
from tests.e2e.test_doctor import ALICE, BOB, message, send

pytestmark = pytest.mark.e2e


def traced(instance: Instance, *args: str) -> list[dict[str, Any]]:
    text = instance.cli("trace", *args, "--json")
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def would(instance: Instance, *args: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(instance.cli("trace", *args, "--json"))
    return result


def test_trace_by_message_id_sender_recipient_and_client(instance: Instance) -> None:
    send(instance, message("first"))
    send(instance, message("second", sender="other@elsewhere.test"), sender="other@elsewhere.test")
    send(instance, message("third"), to=BOB)
    [first] = traced(instance, "--message-id", "first@remote.test")
    assert (first["recipient"], first["subject"], first["reason"]) == (ALICE, "first", "delivered")
    assert first["remote_ip"] == "127.0.0.1"
    assert "mailbox=INBOX uid=1" in first["detail"]  # private detail, for admins
    assert first["account_id"] is not None
    assert traced(instance, "--message-id", "<first@remote.test>") == [first]
    assert {t["subject"] for t in traced(instance, "--sender", "friend@remote.test")} == {
        "first",
        "third",
    }
    assert [t["subject"] for t in traced(instance, "--recipient", BOB)] == ["third"]
    assert len(traced(instance, "--ip", "127.0.0.1")) == 3
    assert traced(instance, "--ip", "192.0.2.1") == []
    text = instance.cli("trace", "--sender", "other@elsewhere.test")
    assert "client: mx.remote.test [127.0.0.1]" in text
    assert "detail: queue_id=" in text
    assert "--from and --to" in instance.cli("trace", check=False)


def test_what_would_happen_runs_every_step_and_stores_nothing(
    make_instance: Any, tmp_path: Path
) -> None:
    inst: Instance = make_instance('[inbound.dnsbl]\nzones = [{ zone = "bl.test" }]\n')
    inst.add_user(ALICE)
    inst.add_user(BOB)
    inst.cli("rules", "add", ALICE, "pest@remote.test")
    inst.cli("rules", "add", BOB, "remote.test", "--action", "junk")

    clean = would(inst, "--from", "friend@remote.test", "--to", ALICE, "--helo", "mx.remote.test")
    steps = {(s["stage"], s["step"]): s for s in clean["steps"]}
    assert steps[("connect", "dnsbl bl.test")]["action"] == "pass"
    assert steps[("connect", "fcrdns")]["action"] == "pass"
    assert steps[("mail", "sender_domain")]["action"] == "pass"
    assert steps[("rcpt", "recipient")]["detail"] == f"accounts: {ALICE}"
    [result] = clean["results"]
    assert (result["account"], result["result"], result["reason"]) == (ALICE, "INBOX", "delivered")

    refused = would(inst, "--from", "pest@remote.test", "--to", ALICE)
    assert refused["results"][0]["result"] == "refused"
    assert refused["results"][0]["reason"] == "rule.reject"
    assert refused["results"][0]["reply"].startswith("550 5.7.1")

    eml = tmp_path / "m.eml"
    eml.write_bytes(message("from a file"))
    junked = would(inst, "--from", "friend@remote.test", "--to", BOB, "--file", str(eml))
    assert (junked["results"][0]["result"], junked["results"][0]["reason"]) == (
        "Junk",
        "rule.junk",
    )

    text = inst.cli("trace", "--from", "pest@remote.test", "--to", ALICE)
    assert f"{ALICE}: refused (rule.reject) 550 5.7.1" in text

    unknown = would(inst, "--from", "friend@remote.test", "--to", "nobody@example.test")
    assert unknown["results"][0]["reason"] == "rcpt.unknown"

    inst.dns.zone.add("1.0.0.127.bl.test", "A", "127.0.0.2")
    listed = would(inst, "--from", "friend@remote.test", "--to", ALICE, "--ip", "127.0.0.1")
    assert steps_of(listed, "connect")[0]["action"] == "reject"
    assert listed["results"][0]["reason"] == "dnsbl.listed"
    assert "bl.test" in listed["results"][0]["reply"]

    text = inst.cli("trace", "--from", "pest@remote.test", "--to", ALICE)
    assert "nothing is stored or delivered" in text
    assert f"{ALICE}: refused (dnsbl.listed) 554 5.7.1" in text
    # Nothing recorded, nothing delivered: a trace is not a delivery.
    assert inst.outcomes() == []
    assert "0 B" in inst.cli("user", "list")


def steps_of(report: dict[str, Any], stage: str) -> list[dict[str, Any]]:
    return [step for step in report["steps"] if step["stage"] == stage]
