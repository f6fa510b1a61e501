"""Japanese and English: gettext catalogues read at start-up, the language of a request, and
dates in the member's time zone.

The catalogues are the `.po` files themselves (read with Babel), so there is no compile step
to forget and a translator's edit shows on the next start. The msgids are the English texts;
the English catalogue exists too, so that a test can check that both languages cover every
msgid the templates and handlers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from importlib import resources
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.messages.pofile import read_po

LANGUAGES = ("ja", "en")
DOMAIN = "messages"


class Catalogues:
    """msgid -> text for each language."""

    def __init__(self, messages: dict[str, dict[str, str]]) -> None:
        self.messages = messages

    @classmethod
    def load(cls) -> Catalogues:
        messages: dict[str, dict[str, str]] = {}
        base = resources.files("tayori.web") / "locale"
        for language in LANGUAGES:
            entry = base / language / "LC_MESSAGES" / f"{DOMAIN}.po"
            with entry.open("rb") as stream:
                catalogue = read_po(stream, locale=language)
            messages[language] = {
                str(message.id): str(message.string)
                for message in catalogue
                if message.id and isinstance(message.id, str) and message.string
            }
        return cls(messages)

    def translator(self, language: str) -> Translator:
        return Translator(language, self.messages.get(language, {}))


@dataclass(frozen=True, slots=True)
class Translator:
    """`t("Inbox")` -> "受信箱" in Japanese; an untranslated msgid shows as itself (English),
    never as an empty string. `**values` are filled in after translation."""

    language: str
    messages: dict[str, str]

    def __call__(self, msgid: str, /, **values: object) -> str:
        text = self.messages.get(msgid, msgid)
        return text.format(**values) if values else text


def negotiate(accept_language: str | None, default: str) -> str:
    """The first of our languages the browser's Accept-Language asks for (by q), else
    `default`."""
    if not accept_language:
        return default
    ranked: list[tuple[float, int, str]] = []
    for index, item in enumerate(accept_language.split(",")):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        params = params.strip()
        if params.startswith("q="):
            try:
                quality = float(params[2:])
            except ValueError:
                quality = 0.0
        primary = tag.strip().lower().split("-", 1)[0]
        if primary in LANGUAGES and quality > 0:
            ranked.append((-quality, index, primary))
    return min(ranked)[2] if ranked else default


def choose_language(preference: str, accept_language: str | None, default: str) -> str:
    """The member's own choice wins; then the browser's; then the service default."""
    if preference in LANGUAGES:
        return preference
    return negotiate(accept_language, default if default in LANGUAGES else "ja")


def zone(name: str, fallback: str) -> ZoneInfo:
    """The member's time zone, or the service's when theirs is empty or unknown."""
    for candidate in (name, fallback, "Asia/Tokyo"):
        if candidate:
            try:
                return ZoneInfo(candidate)
            except (ZoneInfoNotFoundError, ValueError):
                continue
    return ZoneInfo("UTC")


def format_datetime(value: datetime, tz: ZoneInfo, language: str, *, now: datetime) -> str:
    """A list or header date in the member's zone: the time alone for today, the full date
    otherwise (Japanese order for ja)."""
    local = value.astimezone(tz)
    today = now.astimezone(tz).date()
    if local.date() == today:
        return local.strftime("%H:%M")
    if language == "ja":
        return local.strftime("%Y/%m/%d %H:%M")
    return local.strftime("%d %b %Y %H:%M")


def format_full_datetime(value: datetime, tz: ZoneInfo, language: str) -> str:
    local = value.astimezone(tz)
    offset = local.strftime("%z")
    if language == "ja":
        return local.strftime("%Y年%m月%d日 %H:%M") + f" ({offset})"
    return local.strftime("%d %B %Y %H:%M") + f" ({offset})"


def format_size(size: int, language: str) -> str:
    """Bytes as people read them (1 KB = 1000 bytes, as the quota is configured)."""
    units = ("B", "KB", "MB", "GB", "TB")
    value = float(size)
    unit = 0
    while value >= 1000 and unit < len(units) - 1:
        value /= 1000
        unit += 1
    if unit == 0:
        return f"{size} B" if language == "en" else f"{size} バイト"
    return f"{value:.1f} {units[unit]}"
