"""HTML sanitising (allow-list, cid: rewriting, remote images, CSS) and HTML to text."""

from __future__ import annotations

import pytest

from tayori.mime.html import REMOTE_IMAGE_PLACEHOLDER, SanitizeOptions, html_to_text, sanitize_html

HOSTILE = [
    ("<script>alert(1)</script>", "<script"),
    ('<img src=x onerror="alert(1)">', "onerror"),
    ("<svg onload=alert(1)><use href='data:image/svg+xml,x'/></svg>", "<svg"),
    ('<a href="javascript:alert(1)">x</a>', "javascript:"),
    ('<a href="jav&#x09;ascript:alert(1)">x</a>', "ascript:"),
    ('<iframe srcdoc="<script>x</script>"></iframe>', "<iframe"),
    ('<meta http-equiv="refresh" content="0;url=http://evil">', "http-equiv"),
    ('<base href="http://evil/">', "<base"),
    ('<p style="width: expression(alert(1))">x</p>', "expression("),
    ("<style>@import url(http://track.example/x.css);</style>", "@import"),
    ('<form action="http://evil"><input name=p></form>', "<form"),
    ("<object data=x></object><embed src=x>", "<object"),
    ('<a href="data:text/html,<script>x</script>">x</a>', "data:text/html"),
    ('<link rel=stylesheet href="http://track.example/s.css">', "track.example"),
    ('<noscript><p title="</noscript><img src=x onerror=alert(1)>">', "onerror"),
    ("<math><mtext><table><mglyph><style><img src=x onerror=alert(1)>", "onerror"),
]


@pytest.mark.parametrize(("html", "forbidden"), HOSTILE)
def test_hostile_html_is_neutralised(html: str, forbidden: str) -> None:
    assert forbidden not in sanitize_html(html).lower()


def test_remote_images_are_placeholders_unless_allowed() -> None:
    html = '<img src="https://track.example/p.gif" alt="logo">'
    assert REMOTE_IMAGE_PLACEHOLDER in sanitize_html(html)
    assert "track.example" not in sanitize_html(html)
    allowed = sanitize_html(html, SanitizeOptions(allow_remote_images=True))
    assert 'src="https://track.example/p.gif"' in allowed


def test_cid_references_are_rewritten_inside_the_sanitiser() -> None:
    options = SanitizeOptions(cid_url=lambda cid: f"/parts/{cid}")
    assert 'src="/parts/logo@x"' in sanitize_html('<img src="cid:logo@x">', options)
    assert "cid:" not in sanitize_html('<img src="cid:logo@x">')


def test_a_failing_cid_callback_drops_the_reference_without_raising() -> None:
    def broken(cid: str) -> str:
        raise RuntimeError(cid)

    assert "src" not in sanitize_html('<img src="cid:a">', SanitizeOptions(cid_url=broken))


def test_links_open_safely_and_safe_css_survives() -> None:
    html = sanitize_html(
        '<a href="https://ok.example">ok</a><p style="color:red;position:fixed">p</p>'
    )
    assert 'rel="noopener noreferrer"' in html and 'target="_blank"' in html
    assert 'style="color:red"' in html


def test_html_to_text_keeps_structure_and_drops_scripts() -> None:
    html = "<h1>T</h1><p>a&amp;b<br>c</p><ul><li>x</li></ul><script>no</script><pre> k  k</pre>"
    assert html_to_text(html) == "T\n\na&b\nc\n\n- x\n\nk  k"
