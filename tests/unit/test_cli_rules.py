"""`tayori rules …`, `tayori forward …` and `tayori spam-settings`, in-process on SQLite."""

from __future__ import annotations

from tayori.rules import RuleAction, RuleField, RuleList, RuleOwner, Sensitivity, SpamSettings
from tayori.storage.factory import Stores
from tests.unit import test_cli
from tests.unit.test_cli import DOMAIN, Tayori, add_user

# The instance and runner fixtures of test_cli, shared rather than copied (as test_cli_queue).
_no_config_from_env = test_cli._no_config_from_env
run = test_cli.run
template = test_cli.template
config = test_cli.config
tayori = test_cli.tayori
stores = test_cli.stores

ALICE = f"alice@{DOMAIN}"


def test_help_lists_the_commands(tayori: Tayori) -> None:
    top = tayori("--help")
    for name in ("rules", "forward", "spam-settings"):
        assert name in top.out
    assert "受信拒否設定" in tayori("rules", "--help").out
    assert ".example.com (with subdomains)" in tayori("rules", "add", "--help").out


def test_member_rules_add_list_remove(tayori: Tayori, stores: Stores) -> None:
    assert add_user(tayori, ALICE).status == 0
    empty = tayori("rules", "list", ALICE)
    assert empty.status == 0
    assert f"no rules for {ALICE}" in empty.out
    added = tayori("rules", "add", "Alice@Example.test", "Spam@Example.COM")
    assert added.status == 0, added.err
    assert "reject reject spam@example.com" in added.out
    junk = tayori("rules", "add", ALICE, ".ads.test", "--action", "junk", "--field", "from")
    assert junk.status == 0, junk.err
    safe = tayori("rules", "add", ALICE, "friend@x.test", "--list", "safe")
    assert "safe allow friend@x.test" in safe.out
    account = stores.metadata.get_account(ALICE)
    assert account is not None
    rules = stores.rules.list_rules(RuleOwner.account(account.id))
    assert [(r.list, r.action, r.field, r.pattern) for r in rules] == [
        (RuleList.REJECT, RuleAction.REJECT, RuleField.ANY, "spam@example.com"),
        (RuleList.REJECT, RuleAction.JUNK, RuleField.FROM, ".ads.test"),
        (RuleList.SAFE, RuleAction.ALLOW, RuleField.ANY, "friend@x.test"),
    ]
    listing = tayori("rules", "list", ALICE)
    assert "(from only)" in listing.out
    assert "friend@x.test" in listing.out
    only_safe = tayori("rules", "list", ALICE, "--list", "safe")
    assert "spam@example.com" not in only_safe.out
    removed = tayori("rules", "remove", ALICE, str(rules[0].id))
    assert removed.status == 0
    assert f"removed rule {rules[0].id}" in removed.out
    again = tayori("rules", "remove", ALICE, str(rules[0].id))
    assert again.status == 1
    assert "no rule" in again.err


def test_admin_lists(tayori: Tayori, stores: Stores) -> None:
    assert tayori("rules", "add", DOMAIN, "*@*.spam.test").status == 0
    assert tayori("rules", "add", "global", "bulk.test", "--action", "junk").status == 0
    assert "*@*.spam.test" in tayori("rules", "list", DOMAIN).out
    assert "bulk.test" in tayori("rules", "list", "GLOBAL").out
    assert len(stores.rules.list_rules(RuleOwner.everyone())) == 1
    unknown = tayori("rules", "list", "nowhere.test")
    assert unknown.status == 1
    assert "not hosted" in unknown.err


def test_clear_errors(tayori: Tayori) -> None:
    assert add_user(tayori, ALICE).status == 0
    bad = tayori("rules", "add", ALICE, "*@*")
    assert bad.status == 1
    assert "would match every sender" in bad.err
    nobody = tayori("rules", "add", f"nobody@{DOMAIN}", "x.test")
    assert nobody.status == 1
    assert "no account" in nobody.err
    wrong_list = tayori("rules", "add", "global", "x.test", "--list", "safe")
    assert wrong_list.status == 1
    assert "reject lists only" in wrong_list.err
    usage = tayori("rules", "add", ALICE, "x.test", "--action", "allow")
    assert usage.status == 2


def test_forwarding(tayori: Tayori, stores: Stores) -> None:
    assert add_user(tayori, ALICE).status == 0
    assert f"{ALICE} forwards nowhere" in tayori("forward", "list", ALICE).out
    added = tayori("forward", "add", ALICE, "Me@Elsewhere.test")
    assert added.status == 0, added.err
    assert "  me@elsewhere.test" in added.out
    assert "keep a copy here: yes" in added.out
    assert "forward mail judged spam: no" in added.out
    changed = tayori("forward", "set", ALICE, "--no-keep-copy", "--forward-spam")
    assert "keep a copy here: no" in changed.out
    assert "forward mail judged spam: yes" in changed.out
    itself = tayori("forward", "add", ALICE, ALICE)
    assert itself.status == 1
    assert "cannot forward to itself" in itself.err
    bad = tayori("forward", "add", ALICE, "not-an-address")
    assert bad.status == 1
    account = stores.metadata.get_account(ALICE)
    assert account is not None
    for _ in range(3):
        stores.rules.record_forward_result(account.id, "me@elsewhere.test", bounced=True)
    flagged = tayori("forward", "list", ALICE)
    assert "me@elsewhere.test  (keeps bouncing: check or remove it)" in flagged.out
    removed = tayori("forward", "remove", ALICE, "me@elsewhere.test")
    assert f"{ALICE} forwards nowhere" in removed.out
    forwarding = stores.rules.get_forwarding(account.id)
    assert (forwarding.targets, forwarding.keep_copy, forwarding.skip_spam) == ((), False, False)


def test_spam_settings(tayori: Tayori, stores: Stores) -> None:
    assert add_user(tayori, ALICE).status == 0
    shown = tayori("spam-settings", ALICE)
    assert shown.out.strip() == f"{ALICE}: spam block on, sensitivity standard"
    changed = tayori("spam-settings", ALICE, "--off", "--sensitivity", "high")
    assert changed.out.strip() == f"{ALICE}: spam block off, sensitivity high"
    account = stores.metadata.get_account(ALICE)
    assert account is not None
    assert stores.rules.get_spam_settings(account.id) == SpamSettings(False, Sensitivity.HIGH)
    assert "spam block on" in tayori("spam-settings", ALICE, "--on").out
    assert tayori("spam-settings", ALICE, "--on", "--off").status == 2
