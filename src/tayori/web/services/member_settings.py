"""The member's settings: spam block, safe senders, reject list (受信拒否), forwarding
(スーパーメール転送) with its own reject list, profile, language and time zone, password,
two-step login (TOTP) and app passwords.

The filtering settings live in the rules store and are validated there (`tayori.rules`: the
pattern syntax, list limits, forwarding-target rules) — the same checks `tayori rules` and
`tayori forward` apply for admins. This module only turns their refusals into sentences a
member can act on, in Japanese or English, and adds what is the member's own: the password
change (current password first), TOTP enrolment and app passwords.
"""

from __future__ import annotations

import asyncio
import functools
from dataclasses import dataclass
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from tayori.auth import totp
from tayori.auth.app_passwords import create_app_password
from tayori.auth.passwords import hash_password, verify_password
from tayori.core.address import AddressError, parse_address
from tayori.core.errors import ConflictError, NotFoundError
from tayori.rules.model import (
    ForwardSettings,
    NewRule,
    Rule,
    RuleAction,
    RuleList,
    RuleOwner,
    Sensitivity,
    SpamSettings,
)
from tayori.rules.patterns import PatternError
from tayori.storage.interfaces import MemberStore, MetadataStore
from tayori.storage.member_records import (
    LANGUAGES,
    AppPassword,
    Correspondent,
    MemberPreferences,
)
from tayori.storage.records import Account
from tayori.storage.sql_rules import RulesStore
from tayori.web.services.errors import UserError

MIN_PASSWORD_LENGTH = 8
ISSUER = "Tayori"

LIST_NAMES = {
    RuleList.REJECT: "reject list",
    RuleList.SAFE: "safe senders",
    RuleList.FORWARD: "forwarding reject list",
}


@dataclass(frozen=True, slots=True)
class FilterPage:
    """Everything the filtering settings page shows, read at once."""

    spam: SpamSettings
    safe: tuple[Rule, ...]
    reject: tuple[Rule, ...]
    forwarding: ForwardSettings
    forward_skip: tuple[Rule, ...]


@dataclass(frozen=True, slots=True)
class TotpEnrolment:
    secret: str
    uri: str

    @property
    def grouped_secret(self) -> str:
        """The key as people type it: groups of four."""
        return " ".join(self.secret[i : i + 4] for i in range(0, len(self.secret), 4))


@functools.cache
def time_zone_names() -> list[str]:
    """Zones offered on the page (Asia/Tokyo first: most members are there)."""
    names = sorted(n for n in available_timezones() if "/" in n and not n.startswith("Etc/"))
    return ["Asia/Tokyo", "UTC", *(n for n in names if n != "Asia/Tokyo")]  # read once


class MemberSettings:
    """Settings operations for the signed-in member (account passed per call)."""

    def __init__(self, metadata: MetadataStore, rules: RulesStore, member: MemberStore) -> None:
        self._metadata = metadata
        self._rules = rules
        self._member = member

    # --- filtering ------------------------------------------------------------------------
    async def filters(self, account: Account) -> FilterPage:
        def read() -> FilterPage:
            owner = RuleOwner.account(account.id)
            rules = self._rules.list_rules(owner)
            return FilterPage(
                spam=self._rules.get_spam_settings(account.id),
                safe=tuple(r for r in rules if r.list is RuleList.SAFE),
                reject=tuple(r for r in rules if r.list is RuleList.REJECT),
                forwarding=self._rules.get_forwarding(account.id),
                forward_skip=tuple(r for r in rules if r.list is RuleList.FORWARD),
            )

        return await asyncio.to_thread(read)

    async def set_spam(self, account: Account, *, enabled: bool, sensitivity: str) -> SpamSettings:
        try:
            level = Sensitivity(sensitivity)
        except ValueError:
            raise UserError("Choose a sensitivity: low, standard or high.") from None
        return await asyncio.to_thread(
            self._rules.set_spam_settings, account.id, enabled=enabled, sensitivity=level
        )

    async def add_rule(
        self, account: Account, rule_list: RuleList, pattern: str, action: str = ""
    ) -> Rule:
        typed = pattern.strip()
        if not typed:
            raise UserError("Enter an address or a domain.")
        chosen: RuleAction | None = None
        if action:
            try:
                chosen = RuleAction(action)
            except ValueError:
                raise UserError("Choose what happens to matching mail.") from None
        owner = RuleOwner.account(account.id)
        try:
            return await asyncio.to_thread(
                self._rules.add_rule, owner, NewRule(rule_list, typed, chosen)
            )
        except PatternError:
            raise UserError(
                "{pattern} is not an address or a domain. Enter an address "
                "(user@example.com), a domain (example.com), a domain with its subdomains "
                "(.example.com) or a pattern with * (*@*.example.com).",
                pattern=typed,
            ) from None
        except ConflictError as error:
            if "already on" in str(error):
                raise UserError("{pattern} is on the list already.", pattern=typed) from None
            raise UserError(
                "The list is full. Remove entries you no longer need, or use a domain "
                "(example.com) instead of many addresses."
            ) from None

    async def remove_rule(self, account: Account, rule_id: int) -> None:
        try:
            await asyncio.to_thread(self._rules.remove_rule, RuleOwner.account(account.id), rule_id)
        except NotFoundError:
            raise UserError("That entry was removed already.") from None

    async def add_forward(self, account: Account, address: str) -> ForwardSettings:
        typed = address.strip()
        try:
            target = parse_address(typed).canonical
        except AddressError:
            raise UserError(
                "{address} is not an e-mail address. An address looks like name@example.jp.",
                address=typed or '""',
            ) from None
        if await self._is_own(account, target):
            raise UserError("Mail cannot be forwarded to your own address.")
        try:
            return await asyncio.to_thread(self._rules.add_forward_target, account.id, target)
        except ConflictError as error:
            if "already forwards to" in str(error):
                raise UserError("Mail is forwarded to {address} already.", address=target) from None
            raise UserError(
                "You have as many forwarding addresses as allowed. Remove one first."
            ) from None

    async def remove_forward(self, account: Account, address: str) -> ForwardSettings:
        try:
            return await asyncio.to_thread(self._rules.remove_forward_target, account.id, address)
        except NotFoundError:
            raise UserError("That forwarding address was removed already.") from None

    async def set_forward_options(
        self, account: Account, *, keep_copy: bool, skip_spam: bool
    ) -> ForwardSettings:
        return await asyncio.to_thread(
            self._rules.set_forward_options, account.id, keep_copy=keep_copy, skip_spam=skip_spam
        )

    async def _is_own(self, account: Account, address: str) -> bool:
        lookup = await asyncio.to_thread(self._metadata.lookup_recipient, address)
        return any(member.id == account.id for member in lookup.accounts)

    # --- profile, language, time zone ----------------------------------------------------
    async def preferences(self, account: Account) -> MemberPreferences:
        return await asyncio.to_thread(self._member.get_preferences, account.id)

    async def set_profile(
        self, account: Account, *, display_name: str, signature: str
    ) -> MemberPreferences:
        if any(ch in display_name for ch in '<>"\r\n'):
            raise UserError('A display name cannot contain < > or ".')
        try:
            return await asyncio.to_thread(
                self._member.set_preferences,
                account.id,
                display_name=display_name,
                signature=signature,
            )
        except ValueError:
            raise UserError(
                "The display name can be at most 200 characters and the signature 4000."
            ) from None

    async def set_locale(
        self, account: Account, *, language: str, time_zone: str
    ) -> MemberPreferences:
        if language and language not in LANGUAGES:
            raise UserError("Choose Japanese, English, or the browser's language.")
        if time_zone:
            try:
                ZoneInfo(time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise UserError("{zone} is not a time zone.", zone=time_zone) from None
        return await asyncio.to_thread(
            self._member.set_preferences, account.id, language=language, time_zone=time_zone
        )

    async def show_images_from(self, account: Account, sender: str) -> MemberPreferences:
        try:
            return await asyncio.to_thread(self._member.add_image_sender, account.id, sender)
        except AddressError:
            raise UserError("{address} is not an e-mail address.", address=sender) from None
        except ConflictError:
            raise UserError(
                "Images are always shown for as many senders as allowed. Remove some first."
            ) from None

    async def stop_images_from(self, account: Account, sender: str) -> MemberPreferences:
        return await asyncio.to_thread(self._member.remove_image_sender, account.id, sender)

    async def recent_people(
        self, account: Account, prefix: str = "", limit: int = 50
    ) -> list[Correspondent]:
        """Recent correspondents for address autocomplete."""
        return await asyncio.to_thread(
            self._member.suggest_correspondents, account.id, prefix, limit
        )

    # --- password --------------------------------------------------------------------------
    async def change_password(
        self, account: Account, *, current: str, new: str, repeat: str
    ) -> None:
        """Current password first (a borrowed unlocked browser must not be enough)."""
        fresh = await asyncio.to_thread(self._metadata.get_account_by_id, account.id)
        stored = fresh.password_hash if fresh is not None else None
        if fresh is None or not await asyncio.to_thread(verify_password, stored, current):
            raise UserError("The current password is not right.")
        if new != repeat:
            raise UserError("The two new passwords differ.")
        if len(new) < MIN_PASSWORD_LENGTH:
            raise UserError(
                "The new password must be at least {count} characters.", count=MIN_PASSWORD_LENGTH
            )
        if new == current:
            raise UserError("The new password is the same as the current one.")
        hashed = await asyncio.to_thread(hash_password, new)
        await asyncio.to_thread(self._metadata.set_password, fresh.address, hashed)

    async def check_password(self, account: Account, password: str) -> None:
        fresh = await asyncio.to_thread(self._metadata.get_account_by_id, account.id)
        stored = fresh.password_hash if fresh is not None else None
        if not await asyncio.to_thread(verify_password, stored, password):
            raise UserError("The current password is not right.")

    # --- two-step login (TOTP) -----------------------------------------------------------
    async def begin_totp(self, account: Account) -> TotpEnrolment:
        """A new secret, kept pending until `confirm_totp` sees a code made from it."""
        secret = totp.new_secret()
        try:
            await asyncio.to_thread(self._member.begin_totp, account.id, secret)
        except ConflictError:
            raise UserError("Two-step login is on already.") from None
        return TotpEnrolment(secret, totp.provisioning_uri(secret, account.address, ISSUER))

    async def pending_totp(self, account: Account) -> TotpEnrolment | None:
        state = await asyncio.to_thread(self._member.get_totp, account.id)
        if state is None or state.enabled:
            return None
        return TotpEnrolment(
            state.secret, totp.provisioning_uri(state.secret, account.address, ISSUER)
        )

    async def confirm_totp(self, account: Account, code: str) -> None:
        state = await asyncio.to_thread(self._member.get_totp, account.id)
        if state is None:
            raise UserError("Start setting up two-step login again.")
        if state.enabled:
            return
        step = totp.matching_step(state.secret, code)
        if step is None:
            raise UserError(
                "That code is not right. Check the time on your phone and enter the code "
                "the app shows now."
            )
        await asyncio.to_thread(self._member.enable_totp, account.id, step)

    async def disable_totp(self, account: Account, password: str) -> None:
        await self.check_password(account, password)
        await asyncio.to_thread(self._member.disable_totp, account.id)

    # --- app passwords ---------------------------------------------------------------------
    async def app_passwords(self, account: Account) -> list[AppPassword]:
        return await asyncio.to_thread(self._member.list_app_passwords, account.id)

    async def create_app_password(self, account: Account, name: str) -> tuple[AppPassword, str]:
        try:
            return await asyncio.to_thread(create_app_password, self._member, account.id, name)
        except ValueError:
            raise UserError(
                "Give the app password a name of up to 100 characters, such as the mail program's."
            ) from None
        except ConflictError as error:
            if "already an app password named" in str(error):
                raise UserError(
                    "There is an app password named {name} already.", name=name.strip()
                ) from None
            raise UserError(
                "You have as many app passwords as allowed. Revoke one you no longer use."
            ) from None

    async def revoke_app_password(self, account: Account, password_id: int) -> None:
        try:
            await asyncio.to_thread(self._member.remove_app_password, account.id, password_id)
        except NotFoundError:
            raise UserError("That app password was revoked already.") from None
