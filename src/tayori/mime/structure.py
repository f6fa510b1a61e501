"""Which parts are the body and which are attachments: the RFC 8621 (JMAP) algorithm.

Mail programs disagree on this, and members notice when an image they saw inline in their
phone's mail app is missing from the webmail's attachment list, or the other way round.
JMAP's parseStructure is a published, tested answer that IMAP, webmail and search can all
share, so it is used as it is written in RFC 8621 section 4.1.4.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tayori.mime.filenames import attachment_filename
from tayori.mime.part import Part

__all__ = ["BodyStructure", "body_structure"]


@dataclass(slots=True)
class BodyStructure:
    """The parts shown as text, as HTML, and offered as attachments."""

    text: list[Part] = field(default_factory=list)
    html: list[Part] = field(default_factory=list)
    attachments: list[Part] = field(default_factory=list)


def _inline_media(content_type: str) -> bool:
    return content_type.split("/", 1)[0] in {"image", "audio", "video"}


def _parse(
    parts: list[Part],
    multipart_type: str,
    in_alternative: bool,
    html: list[Part] | None,
    text: list[Part] | None,
    attachments: list[Part],
) -> None:
    text_length = len(text) if text is not None else -1
    html_length = len(html) if html is not None else -1
    for index, part in enumerate(parts):
        content_type = part.content_type
        is_multipart = part.is_multipart
        is_inline = (
            part.disposition != "attachment"
            and (content_type in {"text/plain", "text/html"} or _inline_media(content_type))
            and (
                index == 0
                or (
                    multipart_type != "related"
                    and (_inline_media(content_type) or attachment_filename(part) is None)
                )
            )
        )
        if is_multipart:
            sub_type = content_type.split("/", 1)[1]
            _parse(
                part.children,
                sub_type,
                in_alternative or sub_type == "alternative",
                html,
                text,
                attachments,
            )
        elif is_inline:
            if multipart_type == "alternative":
                if content_type == "text/plain" and text is not None:
                    text.append(part)
                elif content_type == "text/html" and html is not None:
                    html.append(part)
                else:
                    attachments.append(part)
                continue
            if in_alternative:
                if content_type == "text/plain":
                    html = None
                if content_type == "text/html":
                    text = None
            if text is not None:
                text.append(part)
            if html is not None:
                html.append(part)
            if (text is None or html is None) and _inline_media(content_type):
                attachments.append(part)
        else:
            attachments.append(part)
    if multipart_type == "alternative" and text is not None and html is not None:
        if text_length == len(text) and html_length != len(html):
            text.extend(html[html_length:])
        if html_length == len(html) and text_length != len(text):
            html.extend(text[text_length:])


def body_structure(root: Part) -> BodyStructure:
    """Split a message (or an attached message's root) into text, HTML and attachments."""
    result = BodyStructure()
    _parse([root], "mixed", False, result.html, result.text, result.attachments)
    return result
