"""SASL PLAIN (RFC 4616) as POP3, SMTP AUTH and IMAP carry it: base64 of
`authzid NUL authcid NUL passwd`.

Only PLAIN is offered: passwords are stored as argon2 hashes, which rules out the
challenge-response mechanisms that need the clear password on the server, and PLAIN is only
accepted over TLS (or loopback), where it is as safe as the others.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

PLAIN = "PLAIN"

# Sent by the client instead of base64 to mean "an empty response" (RFC 4954, RFC 5034).
EMPTY_RESPONSE = "="
# Sent by the client to abandon the exchange.
CANCEL = "*"


class SaslError(ValueError):
    """The client's response cannot be used; the text is fit to send back to the client."""


@dataclass(frozen=True, slots=True)
class PlainCredentials:
    authcid: str
    """The login name (the member's address)."""
    password: str = field(repr=False)


def decode_plain(response: str) -> PlainCredentials:
    """Decode a PLAIN response (base64 text as the client sent it).

    The authorization identity must be empty or name the login itself: acting as another
    user (proxy authorization) is not something members can do here, and failing clearly
    beats silently logging in as someone else than asked.
    """
    text = response.strip()
    if text == EMPTY_RESPONSE:
        raise SaslError("PLAIN needs a response; an empty one was sent")
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as error:
        raise SaslError("The authentication response is not valid base64") from error
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SaslError("The authentication response is not valid UTF-8") from error
    parts = decoded.split("\0")
    if len(parts) != 3:
        raise SaslError("PLAIN response must be authzid NUL authcid NUL password")
    authzid, authcid, password = parts
    if not authcid:
        raise SaslError("PLAIN response has an empty login name")
    if not password:
        raise SaslError("PLAIN response has an empty password")
    if authzid and authzid.lower() != authcid.lower():
        raise SaslError("Authorization identity must be empty or the same as the login name")
    return PlainCredentials(authcid, password)


def encode_plain(authcid: str, password: str, authzid: str = "") -> str:
    """The base64 PLAIN response a client would send (for tests and our own clients)."""
    return base64.b64encode(f"{authzid}\0{authcid}\0{password}".encode()).decode("ascii")
