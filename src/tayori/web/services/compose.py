"""Composing in the webmail: new, reply, reply-all, forward (inline and as attachment),
drafts, and sending with a copy in Sent.

The message itself is written by `tayori.mime.compose` (UTF-8, or ISO-2022-JP when asked
for and exact); sending goes through `WebSubmission`, the same checks and delivery as mail
programs. What this module adds is the member's side of it:

- To/Cc/Bcc as people type them (commas, semicolons, new lines or Japanese 、 between
  addresses, `Name <address>` or bare addresses), with every bad entry named at once.
- Attachments: new uploads, plus those of the draft being edited or the message being
  forwarded that the member kept; the total is checked against `attachment_limit` (shown on
  the page before sending) and the composed message against the message size limit.
- Drafts: each save appends the new version to Drafts and then deletes the previous one, so
  a crash between the two leaves two versions, never none. Bcc and the message replied to
  are kept in the draft's own headers so that reopening it restores them.
- Sent: the copy keeps the Bcc line (only the member sees it); the original of a reply is
  flagged \\Answered, and the recipients become autocomplete suggestions.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from tayori.core.address import AddressError, parse_address
from tayori.core.outcome import Direction, Outcome, OutcomeKind, utcnow
from tayori.delivery.indexing import message_index
from tayori.delivery.submission import may_send_as
from tayori.delivery.summary import summarise
from tayori.diagnostics.history import member_addresses
from tayori.mime import Mailbox, Message, parse_message
from tayori.mime.compose import (
    AttachmentSpec,
    Draft,
    compose,
    forward_attachment,
    forward_subject,
    quote_for_reply,
    reply_subject,
)
from tayori.storage.interfaces import BlobStore, MemberStore, MetadataStore
from tayori.storage.records import Account, NewMessage, SpecialUse, StoredMessage
from tayori.web.services.errors import UserError
from tayori.web.services.sending import Sent, WebSubmission

log = logging.getLogger(__name__)

DRAFT_REPLY_HEADER = "X-Tayori-Reply-Of"
"""In drafts only: the id of the message being answered (to flag it \\Answered on send)."""
_SEPARATORS = ",;\n\r、，；"
_MSGID = re.compile(r"<([^<>\s]+)>")
# base64 makes attachments ~4/3 larger, plus headers and the text: this keeps a message with
# attachments up to the limit below the message size limit.
_ATTACHMENT_SHARE = 0.72


@dataclass(slots=True)
class ComposeForm:
    """What the compose page holds (form fields of the same names)."""

    to: str = ""
    cc: str = ""
    bcc: str = ""
    subject: str = ""
    body: str = ""
    in_reply_to: str = ""
    references: str = ""
    """Message-IDs, `<a@b> <c@d>`."""
    reply_of: int | None = None
    """The message answered (flagged \\Answered once the reply is sent)."""
    draft_id: int | None = None
    """The draft being edited: replaced on save, deleted on send."""
    source_id: int | None = None
    """Where kept attachments come from: the draft being edited or the forwarded message."""
    keep: list[int] = field(default_factory=list)
    """Indexes of the source's attachments to send along."""
    forward_attached: int | None = None
    """A message attached whole (message/rfc822)."""
    legacy_japanese: bool = False
    from_address: str = ""
    """One of the member's addresses (theirs or an alias to them); empty: the primary."""


@dataclass(frozen=True, slots=True)
class SourceAttachment:
    """An attachment of the source message, offered with a "keep" box."""

    index: int
    filename: str
    content_type: str
    size: int


@dataclass(frozen=True, slots=True)
class Recipients:
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]

    @property
    def envelope(self) -> list[str]:
        """Each address once, in the order given."""
        seen: dict[str, str] = {}
        for mailbox in (*self.to, *self.cc, *self.bcc):
            seen.setdefault(mailbox.address.lower(), mailbox.address)
        return list(seen.values())


def split_addresses(text: str) -> list[str]:
    """Entries as typed, split on separators outside quotes and angle brackets."""
    entries: list[str] = []
    current: list[str] = []
    quoted = angle = False
    for char in text:
        if char == '"' and not angle:
            quoted = not quoted
        elif char == "<" and not quoted:
            angle = True
        elif char == ">" and not quoted:
            angle = False
        if char in _SEPARATORS and not quoted and not angle:
            entries.append("".join(current))
            current = []
        else:
            current.append(char)
    entries.append("".join(current))
    return [entry.strip() for entry in entries if entry.strip()]


def parse_mailboxes(text: str, field_name: str) -> list[Mailbox]:
    """`Name <a@b>, c@d` -> mailboxes; UserError naming every entry that is not an address."""
    found: list[Mailbox] = []
    bad: list[str] = []
    for entry in split_addresses(text):
        name, address = "", entry
        match = re.fullmatch(r"(.*?)\s*<([^<>]*)>", entry, re.DOTALL)
        if match:
            name = match.group(1).strip().strip('"').strip()
            address = match.group(2).strip()
        try:
            parsed = parse_address(address)
        except AddressError:
            bad.append(entry)
            continue
        found.append(Mailbox(" ".join(name.split()), str(parsed)))
    if bad:
        raise UserError(
            "{field}: {entries} is not an e-mail address. An address looks like "
            "name@example.jp; separate several with commas.",
            field=field_name,
            entries=", ".join(bad),
        )
    return found


def parse_recipients(form: ComposeForm) -> Recipients:
    return Recipients(
        tuple(parse_mailboxes(form.to, "To")),
        tuple(parse_mailboxes(form.cc, "Cc")),
        tuple(parse_mailboxes(form.bcc, "Bcc")),
    )


def format_mailboxes(mailboxes: Sequence[Mailbox]) -> str:
    """Back into the form's text: `Name <a@b>, c@d`."""
    parts = []
    for mailbox in mailboxes:
        if mailbox.name:
            name = mailbox.name
            if any(ch in name for ch in ',;<>"'):
                name = '"' + name.replace('"', "") + '"'
            parts.append(f"{name} <{mailbox.address}>")
        else:
            parts.append(mailbox.address)
    return ", ".join(parts)


def message_ids(text: str) -> list[str]:
    return _MSGID.findall(text)


class ComposeService:
    """Compose, save and send for one web app (stateless; per-call account)."""

    def __init__(
        self,
        metadata: MetadataStore,
        blobs: BlobStore,
        member: MemberStore,
        submission: WebSubmission,
    ) -> None:
        self._metadata = metadata
        self._blobs = blobs
        self._member = member
        self._submission = submission

    @property
    def attachment_limit(self) -> int:
        """Total attachment bytes that fit in one message (shown on the page)."""
        return int(self._submission.max_message_size * _ATTACHMENT_SHARE)

    # --- reading the member's messages ----------------------------------------------------
    async def load(self, account: Account, message_id: int) -> tuple[StoredMessage, Message]:
        """A message of the account, parsed; UserError when it is not there (or not theirs)."""
        stored = await asyncio.to_thread(self._metadata.get_message, account.id, message_id)
        if stored is None:
            raise UserError("That message is no longer there (it may have been deleted).")
        raw = await asyncio.to_thread(self._read_blob, stored.blob_ref)
        return stored, await asyncio.to_thread(parse_message, raw)

    def _read_blob(self, ref: str) -> bytes:
        with self._blobs.open(ref) as stream:
            return stream.read()

    @staticmethod
    def source_attachments(message: Message) -> list[SourceAttachment]:
        found = []
        for index, attachment in enumerate(message.attachments):
            size, _ = attachment.digest()
            name = attachment.filename or f"attachment-{index + 1}"
            found.append(SourceAttachment(index, name, attachment.content_type, size))
        return found

    async def sender_addresses(self, account: Account) -> list[str]:
        """The addresses the member may send as: their own first, then aliases to them (the
        same rule `may_send_as` applies to mail programs)."""
        return await asyncio.to_thread(member_addresses, self._metadata, account)

    async def _sender(self, account: Account, form: ComposeForm) -> str:
        chosen = form.from_address.strip().lower()
        if not chosen or chosen == account.address.lower():
            return account.address
        if not await may_send_as(self._metadata, account, chosen):  # the submission's rule
            raise UserError(
                "You cannot send as {address}: it is not an address of your account.",
                code="sender.not_owned",
                address=form.from_address.strip(),
            )
        return chosen

    async def _own_address_in(self, account: Account, mailboxes: Sequence[Mailbox]) -> str:
        """The first of the member's other addresses among `mailboxes` (the alias a message
        came to, a draft's From), or "" for the primary one."""
        own = await self.sender_addresses(account)
        for mailbox in mailboxes:
            address = mailbox.address.lower()
            if address in own[1:]:
                return address
        return ""

    # --- starting points --------------------------------------------------------------------
    async def new_form(self, account: Account, *, to: str = "") -> ComposeForm:
        prefs = await asyncio.to_thread(self._member.get_preferences, account.id)
        return ComposeForm(to=to, body=_with_signature("", prefs.signature))

    async def reply_form(self, account: Account, message_id: int, *, everyone: bool) -> ComposeForm:
        stored, original = await self.load(account, message_id)
        prefs = await asyncio.to_thread(self._member.get_preferences, account.id)
        own = set(await self.sender_addresses(account))
        to = list(original.reply_to or original.from_)
        cc: list[Mailbox] = []
        if everyone:
            taken = own | {m.address.lower() for m in to}
            for mailbox in (*original.to, *original.cc):
                if mailbox.address.lower() not in taken:
                    cc.append(mailbox)
                    taken.add(mailbox.address.lower())
            to = [m for m in to if m.address.lower() not in own] or to
        references = message_ids(_header_text(original, "references"))
        if original.message_id:
            references.append(original.message_id)
        return ComposeForm(
            to=format_mailboxes(to),
            cc=format_mailboxes(cc),
            subject=reply_subject(original.subject),
            body=_with_signature("\n\n" + quote_for_reply(original), prefs.signature),
            in_reply_to=f"<{original.message_id}>" if original.message_id else "",
            references=" ".join(f"<{r}>" for r in references[-20:]),
            reply_of=stored.id,
            # A reply goes out from the alias the message was addressed to.
            from_address=await self._own_address_in(account, (*original.to, *original.cc)),
        )

    async def forward_form(
        self, account: Account, message_id: int, *, attached: bool
    ) -> tuple[ComposeForm, list[SourceAttachment]]:
        stored, original = await self.load(account, message_id)
        prefs = await asyncio.to_thread(self._member.get_preferences, account.id)
        form = ComposeForm(subject=forward_subject(original.subject))
        if attached:
            form.forward_attached = stored.id
            form.body = _with_signature("", prefs.signature)
            return form, []
        header = [
            "---------- Forwarded message ----------",
            f"From: {format_mailboxes(original.from_)}",
            f"Date: {original.date_text or ''}",
            f"Subject: {original.subject}",
            f"To: {format_mailboxes(original.to)}",
        ]
        if original.cc:
            header.append(f"Cc: {format_mailboxes(original.cc)}")
        form.body = _with_signature(
            "\n\n" + "\n".join(header) + "\n\n" + original.text, prefs.signature
        )
        form.source_id = stored.id
        attachments = self.source_attachments(original)
        form.keep = [a.index for a in attachments]
        return form, attachments

    async def draft_form(
        self, account: Account, message_id: int
    ) -> tuple[ComposeForm, list[SourceAttachment]]:
        stored, draft = await self.load(account, message_id)
        reply_of = _header_text(draft, DRAFT_REPLY_HEADER).strip()
        body = draft.text
        form = ComposeForm(
            to=format_mailboxes(draft.to),
            cc=format_mailboxes(draft.cc),
            bcc=_header_text(draft, "bcc").strip(),
            subject=draft.subject,
            body=body[:-1] if body.endswith("\n") else body,
            in_reply_to=" ".join(f"<{m}>" for m in message_ids(_header_text(draft, "in-reply-to"))),
            references=" ".join(f"<{m}>" for m in message_ids(_header_text(draft, "references"))),
            reply_of=int(reply_of) if reply_of.isdigit() else None,
            draft_id=stored.id,
            source_id=stored.id,
            from_address=await self._own_address_in(account, draft.from_),
        )
        attachments = self.source_attachments(draft)
        form.keep = [a.index for a in attachments]
        return form, attachments

    # --- building ------------------------------------------------------------------------
    async def build(
        self,
        account: Account,
        form: ComposeForm,
        uploads: Sequence[AttachmentSpec],
        *,
        for_draft: bool,
    ) -> tuple[bytes, Recipients, str]:
        """(message bytes, recipients, envelope sender). Drafts may lack recipients."""
        recipients = parse_recipients(form)
        if not for_draft and not recipients.envelope:
            raise UserError("Add at least one recipient (To, Cc or Bcc).")
        attachments = await self._attachments(account, form, uploads)
        total = sum(len(a.data) for a in attachments)
        if total > self.attachment_limit:
            raise UserError(
                "The attachments come to {size}, more than the {limit} a message can carry. "
                "Remove some, or share large files another way.",
                code="size.exceeded",
                size=_mb(total),
                limit=_mb(self.attachment_limit),
            )
        prefs = await asyncio.to_thread(self._member.get_preferences, account.id)
        extra: list[tuple[str, str]] = []
        if for_draft:
            if recipients.bcc:
                extra.append(("Bcc", ", ".join(m.address for m in recipients.bcc)))
            if form.reply_of is not None:
                extra.append((DRAFT_REPLY_HEADER, str(form.reply_of)))
        sender = await self._sender(account, form)
        message_id = f"{_token()}@{sender.rpartition('@')[2]}"
        draft = Draft(
            from_=Mailbox(prefs.display_name, sender),
            to=recipients.to,
            cc=recipients.cc,
            subject=" ".join(form.subject.split()),
            text=form.body.replace("\r\n", "\n"),
            attachments=attachments,
            in_reply_to=next(iter(message_ids(form.in_reply_to)), None),
            references=message_ids(form.references),
            legacy_japanese=form.legacy_japanese,
            message_id=message_id,
            extra_headers=tuple(extra),
        )
        content = compose(draft)
        if not recipients.to and not for_draft:
            # Bcc (or Cc) only: say so without naming anyone (RFC 5322 3.6.3).
            content = content.replace(b"\r\nTo: \r\n", b"\r\nTo: undisclosed-recipients:;\r\n", 1)
        return content, recipients, sender

    async def _attachments(
        self, account: Account, form: ComposeForm, uploads: Sequence[AttachmentSpec]
    ) -> list[AttachmentSpec]:
        found: list[AttachmentSpec] = []
        if form.source_id is not None and form.keep:
            _, source = await self.load(account, form.source_id)
            for index, attachment in enumerate(source.attachments):
                if index in form.keep:
                    name = attachment.filename or f"attachment-{index + 1}"
                    found.append(
                        AttachmentSpec(name, attachment.content_type, attachment.content())
                    )
        if form.forward_attached is not None:
            _, original = await self.load(account, form.forward_attached)
            found.append(forward_attachment(original))
        found.extend(upload for upload in uploads if upload.data or upload.filename)
        return found

    # --- drafts ------------------------------------------------------------------------------
    async def save_draft(
        self, account: Account, form: ComposeForm, uploads: Sequence[AttachmentSpec]
    ) -> int:
        """Store the new version in Drafts, then remove the previous one; returns its id."""
        content, _, _ = await self.build(account, form, uploads, for_draft=True)
        placed = await self._store_copy(
            account, SpecialUse.DRAFTS, content, {"\\Draft", "\\Seen"}, enforce_quota=True
        )
        if placed is None:
            raise UserError(
                "Your mailbox is full, so the draft could not be saved. Delete some mail "
                "(large attachments first) or empty the Trash."
            )
        if form.draft_id is not None and form.draft_id != placed:
            await self.discard_draft(account, form.draft_id)
        return placed

    async def discard_draft(self, account: Account, draft_id: int) -> None:
        """Delete a draft; an id that is not in Drafts (a stale or edited form) is left alone."""
        stored = await asyncio.to_thread(self._metadata.get_message, account.id, draft_id)
        drafts = await asyncio.to_thread(self._metadata.get_mailbox, account.id, SpecialUse.DRAFTS)
        if stored is not None and stored.mailbox_id == drafts.id:
            await self._delete(account, [draft_id])

    # --- sending -------------------------------------------------------------------------
    async def send(
        self,
        account: Account,
        form: ComposeForm,
        uploads: Sequence[AttachmentSpec],
        client_ip: str,
    ) -> Sent:
        content, recipients, sender = await self.build(account, form, uploads, for_draft=False)
        sent = await self._submission.send(account, sender, recipients.envelope, content, client_ip)
        # The message is out: what follows must not turn success into an error page.
        copy = content
        if recipients.bcc:
            bcc = ", ".join(m.address for m in recipients.bcc)
            copy = f"Bcc: {bcc}\r\n".encode() + content
        try:
            await self._store_copy(
                account,
                SpecialUse.SENT,
                copy,
                {"\\Seen"},
                enforce_quota=False,
                queue_id=sent.queue_id,
            )
        except Exception:
            log.exception("could not keep the Sent copy", extra={"account_id": account.id})
        if form.reply_of is not None:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    self._metadata.set_flags, account.id, [form.reply_of], add=["\\Answered"]
                )
        if form.draft_id is not None:
            with contextlib.suppress(Exception):
                await self.discard_draft(account, form.draft_id)
        people = [(m.address, m.name) for m in (*recipients.to, *recipients.cc, *recipients.bcc)]
        with contextlib.suppress(Exception):
            await asyncio.to_thread(
                self._member.record_correspondents, account.id, people, utcnow()
            )
        return sent

    # --- storing ----------------------------------------------------------------------------
    async def _store_copy(
        self,
        account: Account,
        mailbox: SpecialUse,
        content: bytes,
        flags: set[str],
        *,
        enforce_quota: bool,
        queue_id: str = "",
    ) -> int | None:
        """Append to one of the member's own folders; the new message's id, or None when
        the quota refused it."""
        ref = await asyncio.to_thread(self._blobs.put, [content])
        summary = summarise(content)
        index = await asyncio.to_thread(message_index, content)  # searchable like delivered mail
        now = utcnow()
        detail = f"mailbox {mailbox.value}" + (f", queue id {queue_id}" if queue_id else "")
        saved = Outcome(
            direction=Direction.OUTBOUND,
            sender=account.address,
            recipient=account.address,
            outcome=OutcomeKind.DELIVERED,
            reason="mailbox.saved",
            detail=detail,
            account_id=account.id,
            message_id=summary.message_id,
            subject=summary.subject,
            size=len(content),
            remote_host="webmail",
            time=now,
        )
        item = NewMessage(
            account_id=account.id,
            mailbox=mailbox,
            blob_ref=ref,
            size=len(content),
            internal_date=now,
            summary=summary,
            on_delivered=saved,
            on_over_quota=_over_quota(saved),
            flags=frozenset(flags),
            enforce_quota=enforce_quota,
            index=index,
        )
        try:
            [result] = await asyncio.to_thread(self._metadata.append_messages, [item])
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._blobs.delete, [ref])
            raise
        if not result.appended:
            await asyncio.to_thread(self._blobs.delete, [ref])
            return None
        return await asyncio.to_thread(self._find, account, result.mailbox_id, result.uid)

    def _find(self, account: Account, mailbox_id: int, uid: int) -> int | None:
        stored = self._metadata.get_message_by_uid(mailbox_id, uid)
        return None if stored is None else stored.id

    async def _delete(self, account: Account, ids: list[int]) -> None:
        refs = await asyncio.to_thread(self._metadata.delete_messages, account.id, ids)
        if refs:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._blobs.delete, refs)


def _over_quota(saved: Outcome) -> Outcome:
    return replace(
        saved, outcome=OutcomeKind.REJECTED, reason="rcpt.over_quota", detail="draft not saved"
    )


def _header_text(message: Message, name: str) -> str:
    raw = message.root.headers.get(name)
    if raw is None:
        return ""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def _with_signature(body: str, signature: str) -> str:
    """The member's signature below what they will write, above any quoted text."""
    if not signature.strip():
        return body
    return "\n\n" + signature.rstrip() + "\n" + body


def _token() -> str:
    return secrets.token_hex(16)


def _mb(size: int) -> str:
    return f"{size / 1_000_000:.1f} MB"
