"""The spam token store: the SQL store on SQLite and PostgreSQL, and the in-memory one,
behave the same (same counts, same ledger rules)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tayori.spam.classifier import TokenCounts
from tayori.spam.store import (
    MemoryTokenStore,
    SqlTokenStore,
    TokenStore,
    Training,
    message_digest,
)
from tayori.spam.tokens import tokenize
from tayori.storage.engine import create_store_engine
from tayori.storage.factory import Stores


@pytest.fixture(params=["sql", "memory"])
def token_store(
    request: pytest.FixtureRequest, stores: Stores, backend_url: str
) -> Iterator[tuple[TokenStore, int]]:
    """A token store and the id of an existing account (per-account rows need one)."""
    stores.metadata.add_domain("example.test")
    account = stores.metadata.add_account("member@example.test", "x", 0)
    if request.param == "memory":
        yield MemoryTokenStore(), account.id
        return
    engine = create_store_engine(backend_url)
    try:
        yield SqlTokenStore(engine), account.id
    finally:
        engine.dispose()


def item(name: str, is_spam: bool, *tokens: str) -> Training:
    return Training(message_digest(name.encode()), is_spam, frozenset(tokens))


def test_learn_and_lookup(token_store: tuple[TokenStore, int]) -> None:
    store, _ = token_store
    assert store.lookup({"a"}, None) == (TokenCounts(), {})
    learnt = store.learn(
        [item("1", True, "a", "b"), item("2", True, "a"), item("3", False, "b", "c")], None
    )
    assert learnt == 3
    totals, counts = store.lookup({"a", "b", "c", "d"}, None)
    assert totals == TokenCounts(2, 1)
    assert counts == {"a": TokenCounts(2, 0), "b": TokenCounts(1, 1), "c": TokenCounts(0, 1)}


def test_ledger_prevents_double_counting(token_store: tuple[TokenStore, int]) -> None:
    store, _ = token_store
    assert store.learn([item("1", True, "a")], None) == 1
    assert store.learn([item("1", True, "a")], None) == 0
    assert store.learn([item("2", True, "a"), item("2", True, "a")], None) == 1
    assert store.lookup({"a"}, None) == (TokenCounts(2, 0), {"a": TokenCounts(2, 0)})


def test_relearning_moves_the_message(token_store: tuple[TokenStore, int]) -> None:
    store, _ = token_store
    store.learn([item("1", True, "a"), item("2", True, "a")], None)
    assert store.learn([item("1", False, "a")], None) == 1
    assert store.lookup({"a"}, None) == (TokenCounts(1, 1), {"a": TokenCounts(1, 1)})
    # Within one batch: the last word counts, once.
    assert store.learn([item("3", True, "b"), item("3", False, "b")], None) == 2
    assert store.lookup({"b"}, None) == (TokenCounts(1, 2), {"b": TokenCounts(0, 1)})
    assert store.learn([item("3", False, "b")], None) == 0


def test_account_counts_add_to_the_global_ones(token_store: tuple[TokenStore, int]) -> None:
    store, account_id = token_store
    store.learn([item("1", True, "a")], None)
    store.learn([item("1", False, "a"), item("2", False, "b")], account_id)
    assert store.lookup({"a", "b"}, None) == (TokenCounts(1, 0), {"a": TokenCounts(1, 0)})
    assert store.lookup({"a", "b"}, account_id) == (
        TokenCounts(1, 2),
        {"a": TokenCounts(1, 1), "b": TokenCounts(0, 1)},
    )
    # The account's ledger is its own: the same message learnt again there is a no-op.
    assert store.learn([item("1", False, "a")], account_id) == 0


def test_many_tokens_and_messages(token_store: tuple[TokenStore, int]) -> None:
    """More rows than one IN list or multi-row INSERT holds (they are chunked)."""
    store, _ = token_store
    tokens = [f"t{i}" for i in range(1200)]
    starts = range(0, 1200, 100)
    items = [item(str(i), n % 2 == 0, *tokens[i : i + 700]) for n, i in enumerate(starts)]
    items += [item(f"m{i}", False, "x") for i in range(700)]
    assert store.learn(items, None) == len(items)
    totals, counts = store.lookup(tokens, None)
    assert totals == TokenCounts(6, 706)
    assert len(counts) == 1200
    assert counts["t650"] == TokenCounts(4, 3)


def test_long_and_unicode_tokens_round_trip(token_store: tuple[TokenStore, int]) -> None:
    store, _ = token_store
    tokens = ("無料", "subject:今す", "x" * 60, "quote'\"\\", "emoji:😀", "tab\tx", "\u2028")
    store.learn([item("1", True, *tokens)], None)
    assert set(store.lookup(set(tokens), None)[1]) == set(tokens)


def test_a_message_with_nul_in_its_headers_is_learnt_and_looked_up(
    token_store: tuple[TokenStore, int],
) -> None:
    """PostgreSQL refuses NUL in text and json_each cuts at it: the tokens never have one."""
    store, account_id = token_store
    raw = (
        b"From: a@b.example\r\nMessage-ID: <x@ho\x00st.example>\r\n"
        b'Content-Type: text/plain; charset="us\x00ascii"\r\n\r\nhello there\r\n'
    )
    tokens = tokenize(raw)
    assert "x:charset:usascii" in tokens
    store.learn([Training(message_digest(raw), True, frozenset(tokens))], account_id)
    totals, counts = store.lookup(tokens, account_id)
    assert totals == TokenCounts(1, 0)
    assert counts["x:charset:usascii"] == TokenCounts(1, 0)


def test_cached_counts_follow_learning_by_another_process(stores: Stores, backend_url: str) -> None:
    """The SQL store caches global counts per process: learning through another store object
    on the same database (another node, the webmail, `tayori spam train`) is seen by the
    next look-up, globally and for an account's own counts."""
    stores.metadata.add_domain("example.test")
    account = stores.metadata.add_account("member@example.test", "x", 0).id
    engine = create_store_engine(backend_url)
    try:
        reader, writer = SqlTokenStore(engine), SqlTokenStore(engine)
        writer.learn([item("m1", True, "cheap", "pills")], None)
        assert reader.lookup(["cheap", "meeting"], None) == (
            TokenCounts(1, 0),
            {"cheap": TokenCounts(1, 0)},
        )
        assert reader.lookup(["cheap", "meeting"], account)[1] == {"cheap": TokenCounts(1, 0)}
        writer.learn([item("h1", False, "meeting", "cheap")], None)  # a token once absent
        assert reader.lookup(["cheap", "meeting"], None) == (
            TokenCounts(1, 1),
            {"cheap": TokenCounts(1, 1), "meeting": TokenCounts(0, 1)},
        )
        writer.learn([item("m2", True, "meeting")], account)  # the member's own "spam"
        totals, found = reader.lookup(["meeting"], account)
        assert totals == TokenCounts(2, 1)
        assert found == {"meeting": TokenCounts(1, 1)}
        writer.learn([item("m1", False, "cheap", "pills")], None)  # relearnt as ham
        assert reader.lookup(["pills"], None) == (TokenCounts(0, 2), {"pills": TokenCounts(0, 1)})
    finally:
        engine.dispose()
