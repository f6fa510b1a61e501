"""`[inbound]` settings: failure actions, scores and `[inbound.dnsbl] zones` tables."""

from __future__ import annotations

import pytest

from tayori.config.loader import InvalidConfigError, settings_from_mapping
from tayori.config.settings import CheckAction, DnsblZone


def test_defaults_follow_the_issue() -> None:
    inbound = settings_from_mapping({}).inbound
    assert inbound.dnsbl.zones == []
    assert inbound.fcrdns_action is CheckAction.SCORE
    assert inbound.sender_domain_action is CheckAction.REJECT
    assert inbound.dmarc_reject_action is CheckAction.JUNK


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
