"""`[inbound]` settings: failure actions, scores and `[inbound.dnsbl] zones` tables."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tayori.config.loader import InvalidConfigError, settings_from_mapping
from tayori.config.settings import CheckAction, DnsblZone, DnsSettings, InboundSettings
from tayori.core.errors import ConfigError
from tayori.dns.resolver import DnsPythonResolver
from tayori.pipeline.inbound import InboundPipeline
from tayori.pipeline.steps import Stage


def test_defaults_follow_the_issue() -> None:
    inbound = settings_from_mapping({}).inbound
    assert inbound.dnsbl.zones == []
    assert inbound.fcrdns_action is CheckAction.SCORE
    assert inbound.sender_domain_action is CheckAction.REJECT
    assert inbound.dmarc_reject_action is CheckAction.JUNK
    assert inbound.trusted_networks == []  # not even loopback


def _pipeline(networks: list[str]) -> InboundPipeline:
    settings = InboundSettings(trusted_networks=networks)
    resolver = DnsPythonResolver(DnsSettings())  # never asked: nothing is checked
    return InboundPipeline(resolver, settings, frozenset({"mx.example.test"}))


def test_trusted_networks_match_addresses_and_networks() -> None:
    pipeline = _pipeline(["192.0.2.0/24", "2001:db8::25", "198.51.100.7"])
    assert str(pipeline.trusted("192.0.2.200")) == "192.0.2.0/24"
    assert str(pipeline.trusted("::ffff:192.0.2.1")) == "192.0.2.0/24"  # IPv4-mapped
    assert str(pipeline.trusted("2001:db8::25")) == "2001:db8::25/128"
    assert pipeline.trusted("198.51.100.8") is None
    assert pipeline.trusted("127.0.0.1") is None
    assert pipeline.trusted("not-an-address") is None
    names = {step.name for step, _ in pipeline.steps(Stage.MAIL, "192.0.2.1")}
    assert names == {"sender_domain"}  # SPF would judge the relay
    assert pipeline.steps(Stage.CONNECT, "192.0.2.1") == []
    assert {step.name for step, _ in pipeline.steps(Stage.MAIL, "203.0.113.1")} == {
        "sender_domain",
        "spf",
    }


def test_a_bad_trusted_network_is_refused_with_its_name() -> None:
    # The loader refuses it (as `tayori config check` does) ...
    with pytest.raises(ConfigError, match=r'inbound.trusted_networks\[1\] = "mx1": not an'):
        settings_from_mapping({"inbound": {"trusted_networks": ["10.0.0.0/8", "mx1"]}})
    # ... and so does the pipeline, for settings built some other way.
    inbound = replace(InboundSettings(), trusted_networks=["10.0.0.0/8", "mx1"])
    with pytest.raises(ConfigError, match=r"inbound.trusted_networks: 'mx1' is not an address"):
        InboundPipeline(DnsPythonResolver(DnsSettings()), inbound, frozenset())


def test_zones_as_a_list_of_tables() -> None:
    settings = settings_from_mapping(
        {
            "inbound": {
                "fcrdns_action": "tempfail",
                "dnsbl": {
                    "zones": [
                        {"zone": "zen.example.org"},
                        {"zone": "bl.example.net", "action": "score", "weight": 2},
                    ]
                },
            }
        }
    )
    assert settings.inbound.fcrdns_action is CheckAction.TEMPFAIL
    assert settings.inbound.dnsbl.zones == [
        DnsblZone("zen.example.org", CheckAction.REJECT, 5.0),
        DnsblZone("bl.example.net", CheckAction.SCORE, 2.0),
    ]


def test_every_problem_is_named() -> None:
    with pytest.raises(InvalidConfigError) as error:
        settings_from_mapping(
            {
                "inbound": {
                    "spf_action": "explode",
                    "dkim_score": -1,
                    "dnsbl": {"zones": [{"weight": 1, "colour": "red"}, "zen.example.org"]},
                }
            }
        )
    problems = sorted(str(p) for p in error.value.problems)
    assert problems == [
        "inbound.dkim_score = -1: must be a finite number, not negative",
        'inbound.dnsbl.zones = [{ weight = 1, colour = "red" }, "zen.example.org"]: '
        "must be a list of tables, e.g. [{ … }]",
        'inbound.spf_action = "explode": must be one of reject, tempfail, junk, score, ignore',
    ]
    with pytest.raises(InvalidConfigError) as error:
        settings_from_mapping({"inbound": {"dnsbl": {"zones": [{"weight": 1, "colour": "red"}]}}})
    problems = sorted(str(p) for p in error.value.problems)
    assert problems == [
        'inbound.dnsbl.zones[0].colour = "red": unknown key in [inbound.dnsbl.zones[0]]',
        "inbound.dnsbl.zones[0].zone: is required",
    ]
