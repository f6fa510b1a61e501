"""The remote server's words, explained: why another provider refused a member's mail.

Remote replies are free text with an optional enhanced status code (RFC 3463). The enhanced
code is the most reliable signal (5.1.1 unknown user, 5.2.2 mailbox full); the words decide
the rest, with reputation looked for before a plain "blocked" because providers that refuse
for reputation usually also say "blocked" or "denied".
"""

from __future__ import annotations

import re
from enum import StrEnum

from tayori.core.reasons import Text

__all__ = ["RemoteRefusal", "classify", "explanation"]


class RemoteRefusal(StrEnum):
    USER_UNKNOWN = "user_unknown"
    MAILBOX_FULL = "mailbox_full"
    REPUTATION = "reputation"
    BLOCKED = "blocked"
    REJECTED = "rejected"


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_WORDS: tuple[tuple[RemoteRefusal, re.Pattern[str]], ...] = (
    (
        RemoteRefusal.USER_UNKNOWN,
        re.compile(
            r"user unknown|unknown user|no such (user|mailbox|recipient)|does not exist|"
            r"doesn't exist|recipient (address )?rejected|unknown recipient|"
            r"invalid (recipient|mailbox)|mailbox unavailable|not found",
            re.IGNORECASE,
        ),
    ),
    (
        RemoteRefusal.MAILBOX_FULL,
        re.compile(
            r"quota|mailbox (is )?full|over ?quota|insufficient (storage|system storage)|"
            r"storage (limit|exceeded)",
            re.IGNORECASE,
        ),
    ),
    (
        RemoteRefusal.REPUTATION,
        re.compile(
            r"reputation|block ?list|black ?list|spamhaus|spamcop|barracuda|\brbl\b|"
            r"dnsbl|listed",
            re.IGNORECASE,
        ),
    ),
    (
        RemoteRefusal.BLOCKED,
        re.compile(
            r"blocked|denied|policy|not (allowed|permitted|authori[sz]ed)|spam|refused|"
            r"prohibited|banned",
            re.IGNORECASE,
        ),
    ),
)
_BY_CODE: dict[tuple[str, str], RemoteRefusal] = {
    ("1", "1"): RemoteRefusal.USER_UNKNOWN,
    ("1", "2"): RemoteRefusal.USER_UNKNOWN,
    ("1", "10"): RemoteRefusal.USER_UNKNOWN,
    ("2", "2"): RemoteRefusal.MAILBOX_FULL,
    ("1", "6"): RemoteRefusal.USER_UNKNOWN,
}


def classify(reply: str) -> RemoteRefusal:
    """What kind of refusal a remote reply (`550 5.1.1 … User unknown`) is."""
    enhanced = _ENHANCED.search(reply)
    if enhanced is not None:
        known = _BY_CODE.get((enhanced.group(2), enhanced.group(3)))
        if known is not None:
            return known
    for kind, words in _WORDS:
        if words.search(reply):
            return kind
    return RemoteRefusal.REJECTED


_EXPLAINED: dict[RemoteRefusal, tuple[Text, Text]] = {
    RemoteRefusal.USER_UNKNOWN: (
        Text(
            "相手のサーバは「そのアドレスは存在しない」と答えました。",
            "The remote server said the address does not exist.",
        ),
        Text(
            "宛先アドレスの綴り(@ の後ろのドメインも)を確認してください。",
            "Check the spelling of the address, including the part after the @.",
        ),
    ),
    RemoteRefusal.MAILBOX_FULL: (
        Text(
            "相手のサーバは「相手のメールボックスが一杯」と答えました。",
            "The remote server said the recipient's mailbox is full.",
        ),
        Text(
            "相手に別の方法で連絡し、メールボックスを整理してもらってから送り直してください。",
            "Tell the recipient another way, and send again after they make room.",
        ),
    ),
    RemoteRefusal.REPUTATION: (
        Text(
            "相手のサーバは、送信元(このサービスまたはあなたのネットワーク)の評判やブロックリストを"
            "理由に拒否しました。",
            "The remote server refused because of the sender's reputation or a blocklist "
            "(this service, or the network you sent from).",
        ),
        Text(
            "サポートにこのエラーを知らせてください。急ぐ場合は相手に別の方法で連絡してください。",
            "Report this error to support; if it is urgent, reach the recipient another way.",
        ),
    ),
    RemoteRefusal.BLOCKED: (
        Text(
            "相手のサーバは、相手側の方針(迷惑メール対策や受信拒否)によりメールを拒否しました。",
            "The remote server blocked the message by its own policy (spam filtering or the "
            "recipient's block settings).",
        ),
        Text(
            "相手に受信設定を確認してもらうか、別の方法で連絡してください。",
            "Ask the recipient to check their settings, or reach them another way.",
        ),
    ),
    RemoteRefusal.REJECTED: (
        Text(
            "相手のサーバは受け取りを拒否しました(理由は相手サーバの説明を参照)。",
            "The remote server refused the message (see its words for why).",
        ),
        Text(
            "相手サーバの説明を確認し、分からない場合はサポートに問い合わせてください。",
            "Read the remote server's words; ask support if they are unclear.",
        ),
    ),
}


def explanation(kind: RemoteRefusal) -> tuple[Text, Text]:
    """(what the remote server meant, what to do), in Japanese and English."""
    return _EXPLAINED[kind]
