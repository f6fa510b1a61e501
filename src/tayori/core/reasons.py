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
    ReasonCode(
        "sender.not_owned",
        SmtpReply(553, "5.7.1", "Sender address not owned by user"),
        Text(
            "送信者アドレス(エンベロープまたは From:)が、"
            "ログインしたアカウントのものではありませんでした。",
            "The sender address (envelope or From:) does not belong to the account you "
            "logged in as.",
        ),
        Text(
            "メールソフトの差出人アドレスを、このアカウントのアドレスに設定してください。",
            "Set the sender address in your mail program to this account's own address.",
        ),
        "The address given and the authenticated account.",
    ),
    ReasonCode(
        "sender.domain_unknown",
        SmtpReply(553, "5.1.8", "Sender address domain not found: {domain}"),
        Text(
            "送信者アドレスのドメインが DNS に存在しないため、受け付けませんでした。",
            "The domain of the sender address does not exist in DNS, so the message was refused.",
        ),
        Text(
            "送信者アドレスのドメイン名に誤字がないか確認してください"
            "(例: example.con → example.com)。",
            "Check the sender address's domain for typos "
            "(e.g. example.con instead of example.com).",
        ),
        "The domain and the DNS answer (NXDOMAIN, null MX, or no address records).",
    ),
    ReasonCode(
        "dnsbl.listed",
        SmtpReply(554, "5.7.1", "Service unavailable; client [{ip}] blocked using {zone}"),
        Text(
            "接続元のネットワークがブロックリスト({zone})に登録されていたため、受け付けませんでした。",
            "The network the message came from is on a blocklist ({zone}), so it was refused.",
        ),
        Text(
            "Web メールから送信するか、接続しているネットワークのメールサーバを使ってください。",
            "Send from the webmail, or through the mail server of the network you are on.",
        ),
        "Client IP, the zone and the code it returned.",
    ),
    ReasonCode(
        "fcrdns.failed",
        SmtpReply(450, "4.7.25", "Client host rejected: cannot find your hostname, [{ip}]"),
        Text(
            "送信元サーバの逆引き DNS(PTR)が正しく設定されていませんでした。",
            "The sending server's reverse DNS (PTR) did not confirm its address.",
        ),
        Text(
            "送信者に、送信元サーバの管理者へ逆引き DNS の設定を依頼してもらってください。",
            "Ask the sender to have their mail server's reverse DNS set up correctly.",
        ),
        "Client IP, the PTR names and whether they resolve back to it.",
    ),
    ReasonCode(
        "helo.invalid",
        SmtpReply(550, "5.5.2", "Helo command rejected: invalid name"),
        Text(
            "送信元サーバが名乗ったホスト名(HELO)が不正でした。",
            "The sending server introduced itself (HELO) with an invalid or false name.",
        ),
        Text(
            "送信者に、送信元サーバの設定を確認してもらってください。",
            "Ask the sender to have their mail server's configuration checked.",
        ),
        "The HELO name and what is wrong with it.",
    ),
    ReasonCode(
        "auth.spf.fail",
        SmtpReply(550, "5.7.23", "SPF validation failed"),
        Text(
            "送信元サーバは、送信者ドメインの SPF で許可されていませんでした(なりすましの可能性)。",
            "The sending server is not allowed by the sender domain's SPF record "
            "(possible forgery).",
        ),
        Text(
            "心当たりのある相手なら、相手のドメイン管理者に SPF の設定を確認してもらってください。",
            "If you know the sender, ask them to have their domain's SPF record checked.",
        ),
        "The SPF result, the domain and the mechanism that matched.",
    ),
    ReasonCode(
        "auth.dkim.fail",
        SmtpReply(550, "5.7.20", "No passing DKIM signature found"),
        Text(
            "メールの電子署名(DKIM)が正しくありませんでした(途中で改変された可能性)。",
            "The message's DKIM signature did not verify (it may have been altered on the way).",
        ),
        Text(
            "内容に不審な点がないか注意してください。",
            "Treat the content with care.",
        ),
        "Each signature's domain, selector and why it failed.",
    ),
    ReasonCode(
        "auth.dmarc.fail",
        SmtpReply(550, "5.7.1", "Message rejected by the sender domain's DMARC policy"),
        Text(
            "差出人(From:)のドメインの DMARC 認証に失敗しました(なりすましの可能性)。",
            "The From: domain's DMARC check failed: the message may be forged.",
        ),
        Text(
            "差出人を名乗る相手からのメールか、リンクや添付を開く前に確認してください。",
            "Check that the message really comes from the sender before opening links or "
            "attachments.",
        ),
        "The From: domain, its policy and the SPF/DKIM alignment results.",
    ),
    ReasonCode(
        "spam.junk",
        None,
        Text(
            "迷惑メールと判定したため、迷惑メールフォルダに配送しました。",
            "Judged to be spam, so it was delivered to the Junk folder.",
        ),
        Text(
            "迷惑メールでなければ「迷惑メールではない」として受信箱に戻してください。",
            "If it is not spam, mark it as not spam to move it back to the inbox.",
        ),
        "The score, the threshold and the top reasons.",
    ),
    ReasonCode(
        "rate.limited",
        SmtpReply(451, "4.7.1", "Sending limit exceeded, try again later"),
        Text(
            "送信数の上限(1 時間あたり・1 日あたり)に達したため、一時的に送信を止めました。",
            "You reached the sending limit (per hour or per day), so sending is paused for now.",
        ),
        Text(
            "しばらく待ってから送ってください。心当たりがない場合はパスワードを変更してください(不正利用の可能性があります)。",
            "Wait a while and send again. If you did not send this much mail, change your "
            "password: someone else may be using your account.",
        ),
        "Which limit, the count and the window.",
    ),
    ReasonCode(
        "auth.failed",
        SmtpReply(535, "5.7.8", "Authentication credentials invalid"),
        Text(
            "ログインに失敗しました(アドレスまたはパスワードが違います)。",
            "Login failed: wrong address or password.",
        ),
        Text(
            "メールソフトのアカウント設定(ユーザ名はメールアドレス全体)とパスワードを確認してください。",
            "Check your mail program's account settings (the user name is the whole address) "
            "and the password.",
        ),
        "Client IP and whether the address exists (never the password).",
    ),
    ReasonCode(
        "remote.delivered",
        None,
        Text("相手のメールサーバが受け取りました。", "The recipient's mail server accepted it."),
        Text("対応は不要です。", "Nothing to do."),
        "The remote server, its reply and the TLS used.",
    ),
    ReasonCode(
        "remote.deferred",
        None,
        Text(
            "相手のメールサーバが一時的に受け取れませんでした。自動で再送を続けます。",
            "The recipient's mail server could not take it for now; we keep retrying.",
        ),
        Text(
            "対応は不要です。長く続く場合はお知らせメールが届きます。",
            "Nothing to do yet; you will get a notice if it goes on for long.",
        ),
        "The remote server and its exact reply, or why it could not be reached.",
    ),
    ReasonCode(
        "remote.rejected",
        None,
        Text(
            "相手のメールサーバが受け取りを拒否しました。エラーメールでお知らせしました。",
            "The recipient's mail server refused the message; you were sent an error report.",
        ),
        Text(
            "エラーメールに書かれた相手サーバの説明(宛先不明、容量超過、拒否など)を確認してください。",
            "Read the remote server's words in the error report (unknown user, mailbox full, "
            "blocked…) and correct the address or contact the recipient another way.",
        ),
        "The remote server and its exact reply.",
    ),
    ReasonCode(
        "remote.null_mx",
        SmtpReply(556, "5.1.10", "Recipient address has null MX"),
        Text(
            "宛先のドメインはメールを受け取らない設定(null MX)になっています。",
            "The recipient's domain declares that it accepts no mail (null MX).",
        ),
        Text(
            "宛先アドレスのドメインに誤りがないか確認してください。",
            "Check the domain of the recipient's address.",
        ),
        "The domain.",
    ),
    ReasonCode(
        "queue.expired",
        SmtpReply(421, "4.4.7", "Delivery time expired"),
        Text(
            "相手のメールサーバに長期間届けられなかったため、送信をあきらめました。",
            "The recipient's mail server could not be reached for too long, so we gave up.",
        ),
        Text(
            "宛先アドレスを確認し、時間をおいてもう一度送ってください。",
            "Check the address and send again later.",
        ),
        "How long it was queued and the last error.",
    ),
    ReasonCode(
        "queue.deleted",
        None,
        Text(
            "管理者が送信待ちのメールを削除しました。相手には届いていません。",
            "An administrator removed the message from the sending queue; it was not delivered.",
        ),
        Text(
            "必要であれば、もう一度送ってください。理由はサポートにお問い合わせください。",
            "Send it again if it is still needed; ask support why it was removed.",
        ),
        "Who removed it (the admin command) and the recipients still waiting.",
    ),
    ReasonCode(
        "dsn.sent",
        None,
        Text(
            "配送できなかったことを知らせるメール(エラーメール)を送信者に送りました。",
            "A delivery report (error mail) was sent to the sender.",
        ),
        Text("エラーメールの内容を確認してください。", "Read the delivery report."),
        "Which kind of report (failure or delay) and its queue id.",
    ),
    ReasonCode(
        "rule.reject",
        SmtpReply(550, "5.7.1", "Message refused by the recipient's reject settings"),
        Text(
            "受信拒否設定に一致したため、受信を拒否しました。送信者にはエラーが返されました。",
            "It matched your reject settings, so it was refused and the sender got an error.",
        ),
        Text(
            "受け取りたい相手なら、受信拒否設定からその条件を削除してください。",
            "If you want mail from this sender, remove the matching entry from your reject "
            "settings.",
        ),
        "Which rule (id, scope: account, domain or global; pattern) and whether it matched "
        "the envelope sender or From:.",
    ),
    ReasonCode(
        "rule.junk",
        None,
        Text(
            "受信拒否設定(迷惑メールフォルダへ)に一致したため、迷惑メールフォルダに入れました。",
            "It matched your reject settings (keep in Junk), so it was put in the Junk folder.",
        ),
        Text(
            "受信箱で受け取りたい場合は、受信拒否設定からその条件を削除してください。",
            "To get this sender's mail in the inbox, remove the matching entry from your reject "
            "settings.",
        ),
        "Which rule (id, scope, pattern) and whether it matched the envelope sender or From:.",
    ),
    ReasonCode(
        "safe_sender",
        None,
        Text(
            "安全な差出人に登録された相手のため、迷惑メール判定をせずに受信箱に配送しました。",
            "The sender is on your safe senders list, so the spam block was skipped.",
        ),
        Text(
            "対応は不要です。迷惑メールが届くようになった場合は、安全な差出人から削除してください。",
            "Nothing to do. If spam gets through this way, remove the entry from your safe "
            "senders.",
        ),
        "Which safe-sender entry (id, pattern) and the address it matched.",
    ),
    ReasonCode(
        "relay.trusted",
        None,
        Text(
            "このサービスが信頼する中継サーバ(予備の受信サーバなど)を経由して届きました。"
            "中継サーバ自体の確認(DNSBL・逆引き・HELO)は行わず、SPF は中継サーバに"
            "送ってきたサーバについて確認しました。",
            "Arrived through a relay this service trusts (such as its backup mail server); "
            "the relay itself was not checked (DNSBL, reverse DNS, HELO), and SPF was checked "
            "for the server that handed the message to the relay.",
        ),
        Text(
            "対応は不要です。DKIM・DMARC・受信拒否設定・迷惑メールブロックは通常どおり働きます。",
            "Nothing to do. DKIM, DMARC, your reject list and the spam block still apply.",
        ),
        "The relay's address and the trusted network it is in (`[inbound] trusted_networks`).",
    ),
    ReasonCode(
        "forward.sent",
        None,
        Text(
            "メール転送の設定に従い、転送先に送りました。",
            "Forwarded to your forwarding address as you set up.",
        ),
        Text(
            "対応は不要です。転送先で見つからない場合は、転送先の迷惑メールフォルダを確認してください。",
            "Nothing to do. If it is not there, look in the Junk folder at the forwarding address.",
        ),
        "The forwarding addresses, the rewritten (SRS) sender and the queue id of the copy.",
    ),
    ReasonCode(
        "forward.loop",
        SmtpReply(554, "5.4.6", "Mail forwarding loop detected"),
        Text(
            "転送が繰り返されている(ループしている)ため、転送をやめました。メールはこのメールボックスに残しました。",
            "The message was going round in a forwarding loop, so it was not forwarded again; "
            "it was kept in this mailbox.",
        ),
        Text(
            "転送先からこのアドレスへ転送し返す設定になっていないか確認してください。",
            "Check that the forwarding address does not forward back to this address.",
        ),
        "Which header showed the loop (our Delivered-To address or the hop count).",
    ),
    ReasonCode(
        "forward.failed",
        None,
        Text(
            "転送先に届けられませんでした(転送先のサーバが受け取りを拒否しました)。",
            "The message could not be forwarded: the forwarding address's server refused it.",
        ),
        # Also read by the original sender in the delivery report (DSN) of a forwarded copy.
        Text(
            "転送を設定した方は、転送先のアドレスが正しいか、転送先のメールボックスが一杯でないか確認し、"
            "失敗が続く転送先は転送設定から削除してください。送信した方は、別の方法で受信者に連絡してください。",
            "If you set up the forwarding: check the forwarding address and that its mailbox is "
            "not full, and remove a forwarding address that keeps failing. If you sent the "
            "message: reach the recipient another way.",
        ),
        "The forwarding address, the remote server's reply and the queue id of the copy.",
    ),
    # --- forwarding delivery and Junk retention (issue 3, helper "forwarding") -------------
    ReasonCode(
        "forward.queued",
        None,
        Text(
            "メール転送の設定に従い、転送先への送信を始めました。このメールボックスには残していません(コピーを残さない設定)。",
            "Accepted and being forwarded to your forwarding addresses; no copy was kept here "
            "(as you set up).",
        ),
        Text(
            "対応は不要です。転送の結果は転送先ごとに「転送しました」「転送できませんでした」として記録されます。",
            'Nothing to do. The result is recorded per forwarding address as "forwarded" or '
            '"could not be forwarded".',
        ),
        "The forwarding addresses, the rewritten (SRS) sender and the queue id of the copy.",
    ),
    ReasonCode(
        "forward.rule_skipped",
        None,
        Text(
            "このメールは受け取りましたが、転送用の受信拒否リストのルールに一致したため転送しませんでした。"
            "メールはこのメールボックスに残しています。",
            "The message arrived but was not forwarded: it matched a rule of your forwarding "
            "reject list. It is kept in this mailbox.",
        ),
        Text(
            "この送信者のメールも転送したい場合は、転送設定の「転送しない差出人」からそのルールを削除してください。",
            "To have this sender's mail forwarded, remove the rule from \"Do not forward mail "
            'from" in your forwarding settings.',
        ),
        "The forwarding reject rule that matched (its number and pattern).",
    ),
    ReasonCode(
        "forward.spam_skipped",
        None,
        Text(
            "このメールは迷惑メールと判定されたため転送せず、このメールボックスの迷惑メールフォルダに残しました"
            "(迷惑メールは転送しない設定です)。",
            "The message was judged spam, so it was not forwarded (you chose not to forward "
            "spam); it is kept in the Junk folder here.",
        ),
        Text(
            "迷惑メールでなければ、迷惑メールフォルダで「迷惑メールではない」を選んでください。"
            "以後、同じようなメールは転送されます。",
            'If it is not spam, choose "Not spam" on it in the Junk folder; mail like it will '
            "then be forwarded.",
        ),
        "The spam score and the main signs, as in the Junk filing.",
    ),
    ReasonCode(
        "forward.target_failing",
        None,
        Text(
            "転送先が続けて受け取りを拒否しています。転送先のアドレスを確認するか、転送設定から削除してください。",
            "A forwarding address has refused mail several times in a row. Check it, or remove "
            "it from your forwarding settings.",
        ),
        Text(
            "転送先のアドレスの綴り、転送先のメールボックスが使えるかを確認してください。",
            "Check the spelling of the forwarding address and that its mailbox still works.",
        ),
        "The forwarding address, how many permanent failures in a row, and the last reply.",
    ),
    ReasonCode(
        "srs.invalid",
        SmtpReply(550, "5.1.1", "<{address}>: Recipient address rejected: invalid SRS address"),
        Text(
            "転送メールの差出人として使ったアドレス(SRS)宛てのメールでしたが、偽造されたか期限切れのため受け取りを拒否しました。",
            "Mail to a rewritten forwarding sender address (SRS) was refused: the address was "
            "forged or has expired.",
        ),
        Text(
            "対応は不要です。正しい宛先不明通知は転送から数週間以内に届きます。",
            "Nothing to do. Genuine delivery reports for forwarded mail arrive within a few "
            "weeks of the forwarding.",
        ),
        "Why the address was refused: not ours, wrong hash (forged or another key), or expired.",
    ),
    ReasonCode(
        "junk.expired",
        None,
        Text(
            "迷惑メールフォルダでの保存期間が過ぎたため、削除しました。",
            "Deleted from the Junk folder after the retention period.",
        ),
        Text(
            "必要なメールが迷惑メールフォルダに入っていた場合は、保存期間内に受信箱へ移し、差出人を安全な差出人に登録してください。",
            "If wanted mail lands in Junk, move it to the inbox within the retention period and "
            "add the sender to your safe senders.",
        ),
        "Mailbox, UID, the message's arrival time and the retention in days.",
    ),
    # --- the mail doctor's findings (issue 7): states, not SMTP decisions -------------------
    ReasonCode(
        "message.large",
        None,
        Text(
            "受信箱に大きなメール({size})があり、メールソフトの受信が止まったり時間切れになったりする"
            "原因になっている可能性があります。",
            "There is a large message ({size}) in your inbox; it can make your mail program's "
            "download stall or time out.",
        ),
        Text(
            "Web メールでそのメールを開き、必要な添付ファイルを保存してから"
            "メールを削除してください。",
            "Open the message in the webmail, save the attachments you need, then delete it.",
        ),
        "The message's mailbox, id, size, sender and the configured threshold.",
    ),
    ReasonCode(
        "message.malformed",
        None,
        Text(
            "受信箱に形式の壊れたメールがあり、メールソフトが読み込めずに受信が止まる原因になっている"
            "可能性があります。",
            "There is a malformed message in your inbox (broken header or MIME structure); "
            "your mail program may be unable to read it, which can stop its download.",
        ),
        Text(
            "Web メールでそのメールを確認し、不要なら削除してください。",
            "Look at the message in the webmail and delete it if you do not need it.",
        ),
        "The message's mailbox, id and the defects the MIME layer recorded.",
    ),
    ReasonCode(
        "no_attempt",
        None,
        Text(
            "指定の相手({sender})からこのアドレス宛てのメールは、このサービスに一度も届いていません"
            "(受信も拒否もしていません)。",
            "No attempt to send mail from {sender} to this address reached this service "
            "(nothing was received or refused).",
        ),
        Text(
            "送信者に、宛先アドレスの綴り(ドメインを含む)と、相手側にエラーメールが届いていないかを"
            "確認してもらってください。",
            "Ask the sender to check the address they sent to (including the domain) and "
            "whether they got an error report from their own provider.",
        ),
        "The sender and subject asked about, the period searched, and refused attempts "
        "from that sender to addresses that do not exist here.",
    ),
    # --- webmail sending (issue 6, helper "compose & settings") ------------------------------
    ReasonCode(
        "recipient.domain_unknown",
        SmtpReply(550, "5.1.2", "<{address}>: Recipient address rejected: domain not found"),
        Text(
            "宛先アドレスのドメインが DNS に存在しないため、送信しませんでした。",
            "The domain of the recipient address does not exist in DNS, so the message was "
            "not sent.",
        ),
        Text(
            "宛先アドレスのドメイン名に誤字がないか確認してください"
            "(例: example.con → example.com)。",
            "Check the recipient address's domain for typos "
            "(e.g. example.con instead of example.com).",
        ),
        "The recipient domain and the DNS answer (nxdomain, no MX or address, null MX).",
    ),
    ReasonCode(
        "mailbox.saved",
        None,
        Text(
            "ウェブメールで書いたメールを、送信済みまたは下書きフォルダに保存しました。",
            "A message you wrote in the webmail was saved in your Sent or Drafts folder.",
        ),
        Text("対応は不要です。", "Nothing to do."),
        "The mailbox (Sent or Drafts), and the queue id of the message when it was sent.",
    ),
)

CATALOGUE: dict[str, ReasonCode] = {reason.code: reason for reason in _CODES}


def reason(code: str) -> ReasonCode:
    """Look up a code; unknown codes are a programming error, never a runtime guess."""
    return CATALOGUE[code]
