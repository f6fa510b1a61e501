"""HELO/EHLO sanity: a syntactically valid name or address literal, and not pretending to
be us (our own name or one of our addresses) when the client is somebody else."""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Collection
from dataclasses import dataclass

from tayori.core.reasons import reason
from tayori.pipeline.steps import Client, Failure, Stage

_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")


def helo_problem(helo: str, client_ip: str, own_names: Collection[str]) -> str:
    """Why `helo` is not acceptable, or an empty string."""
    text = helo.strip()
    if not text:
        return "empty HELO"
    if text.startswith("[") and text.endswith("]"):
        literal = text[1:-1]
        literal = literal[5:] if literal.lower().startswith("ipv6:") else literal
        try:
            address = ipaddress.ip_address(literal)
        except ValueError:
            return f"invalid address literal {text!r}"
        if str(address) in own_names and str(address) != client_ip:
            return f"HELO with our own address {text}"
        return ""
    name = text.rstrip(".").lower()
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return f"invalid host name {text!r}"
    if name in own_names:
        return f"HELO with our own name {name}"
    return ""


@dataclass(frozen=True, slots=True)
class HeloCheck:
    own_names: frozenset[str]
    """Our host name(s) lower case, and the addresses we listen on."""
    name: str = "helo"
    stage: Stage = Stage.HELO

    async def check(self, client: Client) -> Failure | None:
        problem = helo_problem(client.helo, client.ip, self.own_names)
        if not problem:
            return None
        return Failure("helo.invalid", reason("helo.invalid").reply_for(), problem)
