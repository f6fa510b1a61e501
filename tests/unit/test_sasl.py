"""SASL PLAIN decoding: the valid forms and a clear error for everything else."""

from __future__ import annotations

import base64

import pytest

from tayori.protocols.sasl import PlainCredentials, SaslError, decode_plain, encode_plain


def b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def test_plain_without_authzid() -> None:
    assert decode_plain(b64(b"\0alice@example.jp\0s3cret pass")) == PlainCredentials(
        "alice@example.jp", "s3cret pass"
    )


def test_plain_with_matching_authzid_and_surrounding_space() -> None:
    response = " " + b64(b"Alice@example.jp\0alice@example.jp\0pw") + " "
    assert decode_plain(response).authcid == "alice@example.jp"


def test_utf8_passwords() -> None:
    assert decode_plain(encode_plain("a@example.jp", "パスワード")).password == "パスワード"


def test_password_is_not_in_repr() -> None:
    assert "hunter2" not in repr(decode_plain(encode_plain("a@example.jp", "hunter2")))


@pytest.mark.parametrize(
    ("response", "message"),
    [
        ("not base64!", "not valid base64"),
        ("YQ", "not valid base64"),
        ("=", "empty one"),
        (b64(b"\0a@example.jp\0\xff"), "not valid UTF-8"),
        (b64(b"a@example.jp\0pw"), "authzid NUL authcid NUL password"),
        (b64(b"\0a\0b\0c"), "authzid NUL authcid NUL password"),
        (b64(b"\0\0pw"), "empty login name"),
        (b64(b"\0a@example.jp\0"), "empty password"),
        (b64(b"bob@example.jp\0alice@example.jp\0pw"), "Authorization identity"),
    ],
)
def test_bad_responses(response: str, message: str) -> None:
    with pytest.raises(SaslError, match=message):
        decode_plain(response)
