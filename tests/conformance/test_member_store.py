"""`MemberStore` on SQLite and PostgreSQL: preferences, image senders, TOTP state, app
passwords and recent correspondents, with the same answers on both."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tayori.core.address import AddressError
from tayori.core.errors import ConflictError, NotFoundError
from tayori.storage.factory import Stores
from tayori.storage.member_records import MemberLimits, MemberPreferences
from tayori.storage.records import Account
from tayori.storage.sql_member import SqlMemberStore
from tests.conformance.conftest import FakeClock


@pytest.fixture
def alice(stores: Stores) -> Account:
    stores.metadata.add_domain("example.test")
    return stores.metadata.add_account("alice@example.test", "hash", 0)


def test_preferences_default_then_change(stores: Stores, alice: Account) -> None:
    member = stores.member
    assert member.get_preferences(alice.id) == MemberPreferences()
    changed = member.set_preferences(
        alice.id, display_name="  山田   花子 ", signature="--\r\n花子", language="ja"
    )
    assert changed.display_name == "山田 花子"
    assert changed.signature == "--\n花子"
    assert changed.language == "ja"
    assert changed.time_zone == ""
    again = member.set_preferences(alice.id, time_zone="Asia/Tokyo", language="")
    assert again.display_name == "山田 花子"  # kept
    assert again.language == ""
    assert member.get_preferences(alice.id) == again


def test_preferences_validation(stores: Stores, alice: Account) -> None:
    with pytest.raises(ValueError, match="language"):
        stores.member.set_preferences(alice.id, language="fr")
    with pytest.raises(ValueError, match="display name"):
        stores.member.set_preferences(alice.id, display_name="x" * 201)
    with pytest.raises(ValueError, match="signature"):
        stores.member.set_preferences(alice.id, signature="x" * 4001)
    with pytest.raises(NotFoundError):
        stores.member.set_preferences(999_999, language="en")
    assert stores.member.get_preferences(alice.id) == MemberPreferences()


def test_image_senders(stores: Stores, alice: Account) -> None:
    member = stores.member
    member.add_image_sender(alice.id, "News@Shop.Example")
    prefs = member.add_image_sender(alice.id, "news@shop.example")  # twice is once
    assert prefs.image_senders == ("news@shop.example",)
    member.add_image_sender(alice.id, "a@b.example")
    assert member.get_preferences(alice.id).image_senders == ("a@b.example", "news@shop.example")
    with pytest.raises(AddressError):
        member.add_image_sender(alice.id, "not an address")
    assert member.remove_image_sender(alice.id, "A@B.example").image_senders == (
        "news@shop.example",
    )


def test_totp_lifecycle(stores: Stores, alice: Account) -> None:
    member = stores.member
    assert member.get_totp(alice.id) is None
    with pytest.raises(NotFoundError):
        member.enable_totp(alice.id, 100)
    member.begin_totp(alice.id, "JBSWY3DPEHPK3PXP")
    state = member.get_totp(alice.id)
    assert state is not None and state.secret == "JBSWY3DPEHPK3PXP" and not state.enabled
    assert member.get_preferences(alice.id).totp_enabled is False
    assert not member.use_totp_step(alice.id, 101)  # not on yet
    assert member.enable_totp(alice.id, 100)
    assert not member.enable_totp(alice.id, 100)
    assert member.get_preferences(alice.id).totp_enabled is True
    with pytest.raises(ConflictError):
        member.begin_totp(alice.id, "OTHERSECRET")
    assert not member.use_totp_step(alice.id, 100)  # the enrolment code cannot be replayed
    assert member.use_totp_step(alice.id, 101)
    assert not member.use_totp_step(alice.id, 101)
    assert not member.use_totp_step(alice.id, 99)
    member.disable_totp(alice.id)
    assert member.get_totp(alice.id) is None
    assert member.get_preferences(alice.id).totp_enabled is False


def test_app_passwords(stores: Stores, alice: Account, clock: FakeClock) -> None:
    member = stores.member
    first = member.add_app_password(alice.id, " Thunderbird  laptop ", "hash1")
    assert first.name == "Thunderbird laptop"
    assert first.created == clock.now and first.last_used is None
    second = member.add_app_password(alice.id, "phone", "hash2")
    with pytest.raises(ConflictError, match="already"):
        member.add_app_password(alice.id, "phone", "hash3")
    with pytest.raises(ValueError):
        member.add_app_password(alice.id, "   ", "hash3")
    assert member.list_app_passwords(alice.id) == [first, second]
    later = clock.now + timedelta(hours=1)
    member.touch_app_password(first.id, later)
    assert member.list_app_passwords(alice.id)[0].last_used == later
    with pytest.raises(NotFoundError):
        member.remove_app_password(alice.id + 1, first.id)  # not someone else's
    assert member.remove_app_password(alice.id, first.id).name == "Thunderbird laptop"
    assert [p.name for p in member.list_app_passwords(alice.id)] == ["phone"]


def test_app_password_limit(stores: Stores, alice: Account, backend_url: str) -> None:
    engine = stores.metadata._engine  # type: ignore[attr-defined]
    small = SqlMemberStore(engine, limits=MemberLimits(app_passwords=2))
    small.add_app_password(alice.id, "a", "h")
    small.add_app_password(alice.id, "b", "h")
    with pytest.raises(ConflictError, match="most allowed"):
        small.add_app_password(alice.id, "c", "h")


def test_correspondents(stores: Stores, alice: Account, clock: FakeClock) -> None:
    member = stores.member
    t0 = clock.now
    member.record_correspondents(
        alice.id,
        [("Bob@Example.org", "Bob Smith"), ("bad address", "x"), ("taro@example.jp", "山田 太郎")],
        t0,
    )
    member.record_correspondents(alice.id, [("bob@example.org", "")], t0 + timedelta(minutes=1))
    everyone = member.suggest_correspondents(alice.id, "")
    assert [(c.address, c.name, c.uses) for c in everyone] == [
        ("bob@example.org", "Bob Smith", 2),  # the name is kept when none is given
        ("taro@example.jp", "山田 太郎", 1),
    ]
    assert [c.address for c in member.suggest_correspondents(alice.id, "TA")] == ["taro@example.jp"]
    assert [c.address for c in member.suggest_correspondents(alice.id, "smi")] == [
        "bob@example.org"
    ]  # a word of the name
    assert [c.address for c in member.suggest_correspondents(alice.id, "山田")] == [
        "taro@example.jp"
    ]
    assert member.suggest_correspondents(alice.id, "%") == []  # no LIKE wildcards


def test_correspondents_pruned(stores: Stores, alice: Account, clock: FakeClock) -> None:
    engine = stores.metadata._engine  # type: ignore[attr-defined]
    small = SqlMemberStore(engine, limits=MemberLimits(correspondents=2))
    for minute, address in enumerate(["a@x.example", "b@x.example", "c@x.example"]):
        small.record_correspondents(
            alice.id, [(address, "")], clock.now + timedelta(minutes=minute)
        )
    assert [c.address for c in small.suggest_correspondents(alice.id, "")] == [
        "c@x.example",
        "b@x.example",
    ]


def test_removed_with_the_account(stores: Stores, alice: Account, clock: FakeClock) -> None:
    stores.member.set_preferences(alice.id, display_name="Alice")
    stores.member.add_image_sender(alice.id, "a@b.example")
    stores.member.add_app_password(alice.id, "phone", "h")
    stores.member.record_correspondents(alice.id, [("bob@example.org", "")], clock.now)
    stores.metadata.remove_account("alice@example.test")
    again = stores.metadata.add_account("alice@example.test", "hash", 0)
    assert stores.member.get_preferences(again.id) == MemberPreferences()
    assert stores.member.list_app_passwords(alice.id) == []
