"""The reason-code catalogue: a stable public contract, like enhanced status codes.

Each code has the SMTP reply the remote party sees (where there is one), a member-facing
explanation with what to do, in Japanese and English, and a note for admins on what the
private detail of an outcome holds. `docs/reason-codes.md` is generated from this table.
Codes are never renamed: scripts, the help desk and member history depend on them.
"""

from __future__ import annotations

from dataclasses import dataclass

from tayori.core.reply import SmtpReply


@dataclass(frozen=True, slots=True)
class Text:
    ja: str
    en: str

    def get(self, lang: str) -> str:
        return self.ja if lang == "ja" else self.en


@dataclass(frozen=True, slots=True)
class ReasonCode:
    code: str
    reply: SmtpReply | None
    summary: Text
    action: Text
    detail: str

    def reply_for(self, **values: str) -> SmtpReply:
        if self.reply is None:
            raise ValueError(f"reason {self.code} has no SMTP reply")
        return self.reply.format(**values)


_CODES: tuple[ReasonCode, ...] = (
    ReasonCode(
        "delivered",
        SmtpReply(250, "2.0.0", "Ok: queued as {queue_id}"),
        Text("受信箱に配送しました。", "Delivered to the inbox."),
        Text("対応は不要です。", "Nothing to do."),
        "Mailbox and UID the message was stored under.",
    ),
    ReasonCode(
        "rcpt.unknown",
        SmtpReply(550, "5.1.1", "<{address}>: Recipient address rejected: User unknown"),
        Text(
            "宛先のアドレスはこのサービスに存在しません。送信者にはエラーが返されました。",
            "The recipient address does not exist here. The sender was told so.",
        ),
        Text(
            "アドレスの綴りを送信者に確認してもらってください。",
            "Ask the sender to check the spelling of the address.",
        ),
        "The address as given in RCPT TO.",
    ),
    ReasonCode(
        "relay.denied",
        SmtpReply(554, "5.7.1", "<{address}>: Relay access denied"),
        Text(
            "このサービスが扱わないドメイン宛てのため、中継を拒否しました。",
            "The recipient's domain is not hosted here, so the message was not relayed.",
        ),
        Text(
            "他ドメイン宛てに送るときは、ログインして送信サーバ(サブミッション)を使ってください。",
            "To send to other domains, log in and use the submission server.",
        ),
        "Client IP and the recipient domain that is not hosted.",
    ),
    ReasonCode(
        "rcpt.over_quota",
        SmtpReply(552, "5.2.2", "<{address}>: Mailbox full - User quota might be exceeded"),
        Text(
            "メールボックスが容量の上限に達していたため、受信を拒否しました。送信者にはエラーが返されました。",
            "Your mailbox was full, so this message was refused and the sender got an error.",
        ),
        Text(
            "不要なメール(特に大きな添付ファイル付きのもの)を削除するか、迷惑メールフォルダを空にしてください。",
            "Delete mail you no longer need (large attachments first) or empty the Junk folder.",
        ),
        "Usage, quota and the size of the refused message.",
    ),
    ReasonCode(
        "size.exceeded",
        SmtpReply(552, "5.3.4", "Message size exceeds fixed limit"),
        Text(
            "メールがこのサービスで受け取れる最大サイズを超えていたため、受信を拒否しました。",
            "The message was larger than this service accepts, so it was refused.",
        ),
        Text(
            "大きなファイルはメールに添付せず、ファイル共有サービスなどで送ってもらってください。",
            "Ask the sender to share large files by another means than mail attachments.",
        ),
        "Declared or actual size and the configured limit.",
    ),
    ReasonCode(
        "store.failed",
        SmtpReply(451, "4.3.0", "Temporary failure storing the message, try again later"),
        Text(
            "一時的な障害で保存できなかったため、送信側に再送を依頼しました。通常は自動で再送されます。",
            "A temporary fault stopped us storing the message; the sender's server was asked to "
            "retry, which normally happens automatically.",
        ),
        Text(
            "しばらく待っても届かない場合は、サポートに連絡してください。",
            "If it still has not arrived after a while, contact support.",
        ),
        "The storage error (disk full, database unavailable).",
    ),
)

CATALOGUE: dict[str, ReasonCode] = {reason.code: reason for reason in _CODES}


def reason(code: str) -> ReasonCode:
    """Look up a code; unknown codes are a programming error, never a runtime guess."""
    return CATALOGUE[code]
