"""HTML mail made safe to show, and HTML made into text for previews, search and spam.

Sanitising is an allow-list (nh3, the Rust ammonia sanitiser): no script, no SVG or MathML,
no forms, no `<base>`, no `<style>` blocks, no event handlers, only http/https/mailto/cid
links. Inside the sanitiser, `cid:` references are rewritten to the URLs of the message's own
parts and remote images become a placeholder unless the member allows them (remote images
tell the sender that, when and where the mail was read). Inline CSS keeps only properties
that cannot fetch anything or cover the page.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from html.parser import HTMLParser

import nh3

__all__ = ["REMOTE_IMAGE_PLACEHOLDER", "SanitizeOptions", "html_to_text", "sanitize_html"]

#: A transparent 1x1 GIF: keeps the layout of a blocked remote image without fetching it.
REMOTE_IMAGE_PLACEHOLDER = (
    "data:image/gif;base64,R0lGODlhAQABAIAAAAAAAP///yH5BAEAAAAALAAAAAABAAEAAAIBRAA7"
)

_TAGS = frozenset(
    [
        "a",
        "abbr",
        "b",
        "bdi",
        "bdo",
        "blockquote",
        "br",
        "caption",
        "center",
        "cite",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "dfn",
        "div",
        "dl",
        "dt",
        "em",
        "figcaption",
        "figure",
        "font",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "img",
        "ins",
        "kbd",
        "li",
        "mark",
        "ol",
        "p",
        "pre",
        "q",
        "rp",
        "rt",
        "ruby",
        "s",
        "samp",
        "small",
        "span",
        "strike",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "time",
        "tr",
        "tt",
        "u",
        "ul",
        "var",
        "wbr",
    ]
)
_CLEAN_CONTENT = frozenset(
    [
        "script",
        "style",
        "title",
        "noscript",
        "template",
        "iframe",
        "object",
        "embed",
        "svg",
        "math",
        "head",
        "textarea",
        "select",
        "button",
        "form",
        "frameset",
        "noframes",
        "applet",
    ]
)
_COMMON = frozenset(
    [
        "style",
        "title",
        "dir",
        "lang",
        "align",
        "valign",
        "width",
        "height",
        "bgcolor",
        "color",
        "border",
    ]
)
_ATTRIBUTES = {
    "*": _COMMON,
    "a": frozenset(["href", "name"]),
    "img": frozenset(["src", "alt"]),
    "font": frozenset(["face", "size"]),
    "table": frozenset(["cellpadding", "cellspacing", "summary"]),
    "td": frozenset(["colspan", "rowspan", "nowrap"]),
    "th": frozenset(["colspan", "rowspan", "scope"]),
    "col": frozenset(["span"]),
    "colgroup": frozenset(["span"]),
    "ol": frozenset(["start", "type"]),
    "ul": frozenset(["type"]),
    "li": frozenset(["value"]),
    "blockquote": frozenset(["cite"]),
    "q": frozenset(["cite"]),
    "time": frozenset(["datetime"]),
}
_SCHEMES = frozenset(["http", "https", "mailto", "cid"])
_STYLE_PROPERTIES = frozenset(
    [
        "color",
        "background-color",
        "font",
        "font-family",
        "font-size",
        "font-style",
        "font-weight",
        "font-variant",
        "text-align",
        "text-decoration",
        "text-indent",
        "text-transform",
        "letter-spacing",
        "line-height",
        "word-spacing",
        "white-space",
        "vertical-align",
        "direction",
        "margin",
        "margin-top",
        "margin-right",
        "margin-bottom",
        "margin-left",
        "padding",
        "padding-top",
        "padding-right",
        "padding-bottom",
        "padding-left",
        "border",
        "border-top",
        "border-right",
        "border-bottom",
        "border-left",
        "border-color",
        "border-style",
        "border-width",
        "border-collapse",
        "border-spacing",
        "border-radius",
        "width",
        "height",
        "max-width",
        "min-width",
        "max-height",
        "min-height",
        "list-style-type",
        "table-layout",
        "caption-side",
        "empty-cells",
    ]
)
# Values that could fetch, run or hide anything: url(), expression(), escapes, comments.
_BAD_STYLE_VALUE = re.compile(r"[\\(@]|/\*|javascript|expression|behavior|binding", re.I)


@dataclass(frozen=True, slots=True)
class SanitizeOptions:
    """Per-member choices: `cid_url` maps a Content-ID to the URL the webmail serves that
    part at (None drops the reference); remote images load only when allowed."""

    allow_remote_images: bool = False
    cid_url: Callable[[str], str | None] | None = None
    placeholder: str = REMOTE_IMAGE_PLACEHOLDER


def _clean_style(value: str) -> str | None:
    kept = []
    for declaration in value.split(";"):
        name, colon, rest = declaration.partition(":")
        name = name.strip().lower()
        if not colon or name not in _STYLE_PROPERTIES:
            continue
        if (rest.strip() and _BAD_STYLE_VALUE.search(rest) is None) or _is_colour_call(rest):
            kept.append(f"{name}:{rest.strip()}")
    return ";".join(kept) or None


_COLOUR_CALL = re.compile(
    r"^\s*(?:rgb|rgba|hsl|hsla)\(\s*[0-9.,%\s]+\)\s*(?:!important)?\s*$", re.I
)


def _is_colour_call(value: str) -> bool:
    return _COLOUR_CALL.match(value) is not None


def _make_filter(options: SanitizeOptions) -> Callable[[str, str, str], str | None]:
    def attribute_filter(tag: str, attribute: str, value: str) -> str | None:
        # Must never raise: nh3 would report it as an unraisable exception.
        try:
            if attribute == "style":
                return _clean_style(value)
            if attribute in {"src", "href"}:
                stripped = value.strip()
                lowered = stripped.lower()
                if lowered.startswith("cid:"):
                    if options.cid_url is None:
                        return None
                    return options.cid_url(stripped[4:].strip("<>"))
                if tag == "img" and attribute == "src" and not options.allow_remote_images:
                    return options.placeholder
            return value
        except Exception:  # a broken cid_url callback must not let the attribute through
            return None

    return attribute_filter


def sanitize_html(html: str, options: SanitizeOptions | None = None) -> str:
    """HTML that is safe to show inside the webmail page."""
    options = options or SanitizeOptions()
    cleaner = nh3.Cleaner(
        tags=set(_TAGS),
        clean_content_tags=set(_CLEAN_CONTENT),
        attributes={tag: set(names) for tag, names in _ATTRIBUTES.items()},
        attribute_filter=_make_filter(options),
        url_schemes=set(_SCHEMES),
        link_rel="noopener noreferrer",
        set_tag_attribute_values={"a": {"target": "_blank"}},
        strip_comments=True,
    )
    return cleaner.clean(html)


_BLOCK = frozenset(
    [
        "p",
        "div",
        "br",
        "tr",
        "li",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "blockquote",
        "pre",
        "table",
        "ul",
        "ol",
        "dl",
        "dt",
        "dd",
        "hr",
        "section",
        "article",
        "header",
        "footer",
        "address",
        "center",
    ]
)
_SKIP = frozenset(["script", "style", "head", "title", "noscript", "template", "svg", "math"])
_SPACES = re.compile(r"[ \t\r\n\f\u200b]+")
_BLANK_LINES = re.compile(r"\n{3,}")


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self.skipping = 0
        self.pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP:
            self.skipping += 1
        elif tag == "pre":
            self.pre += 1
        if tag in _BLOCK:
            self.lines.append("\n")
        if tag == "li":
            self.lines.append("- ")
        elif tag in {"td", "th"}:
            self.lines.append("\t")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in {"br", "hr"}:
            self.lines.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIP and self.skipping:
            self.skipping -= 1
        elif tag == "pre" and self.pre:
            self.pre -= 1
        if tag in _BLOCK and tag != "br":
            self.lines.append("\n")

    def handle_data(self, data: str) -> None:
        if self.skipping:
            return
        self.lines.append(data if self.pre else _SPACES.sub(" ", data))


def html_to_text(html: str) -> str:
    """Readable text from HTML: block elements become line breaks, scripts and styles go,
    entities are decoded. Used for previews, search, the spam filter and text replies."""
    extractor = _TextExtractor()
    try:
        extractor.feed(html)
        extractor.close()
    except (AssertionError, ValueError):  # pragma: no cover - HTMLParser is lenient
        pass
    text = "".join(extractor.lines)
    lines = [line.strip(" \t") for line in text.split("\n")]
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip("\n")
