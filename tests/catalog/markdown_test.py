"""The model card renderer: the Markdown model cards use, and nothing that runs."""

from __future__ import annotations

import html.parser

import pytest

from jaxhub._src.catalog import _markdown


class _Tags(html.parser.HTMLParser):
    """Collects (tag, attributes) of every start tag, and the text."""

    def __init__(self, text: str):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text = ""
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text += data


def test_blocks():
    rendered = _markdown.render(
        "# Title\n\nFirst line\nsame paragraph.\n\n## Part\n\n- one\n- two\n  more\n\n"
        "1. first\n2. second\n\n> quoted\n\n```python\nx = 1 < 2\n```\n")
    assert rendered == "\n".join([
        "<h2>Title</h2>", "<p>First line same paragraph.</p>", "<h3>Part</h3>",
        "<ul><li>one</li><li>two more</li></ul>", "<ol><li>first</li><li>second</li></ol>",
        "<blockquote><p>quoted</p></blockquote>", "<pre><code>x = 1 &lt; 2</code></pre>"])


def test_inline():
    assert _markdown.inline("use `a*b*c` with **care** and *style*, see "
                            "[docs](https://x.org/a?b=1&c=2)") == (
        'use <code>a*b*c</code> with <strong>care</strong> and <em>style</em>, see '
        '<a href="https://x.org/a?b=1&amp;c=2" rel="nofollow noopener">docs</a>')
    assert _markdown.inline("snake_case_name stays") == "snake_case_name stays"


@pytest.mark.parametrize("card", [
    '<script>alert(1)</script>',
    '<img src=x onerror="alert(1)">',
    '[click](javascript:alert(1))',
    '[click](JaVaScRiPt:alert(1))',
    '[click](data:text/html,<script>alert(1)</script>)',
    '```\n</code></pre><script>alert(1)</script>\n```',
    '# <b onclick="x()">title</b>',
    '- <iframe src="https://evil.example">',
])
def test_nothing_in_a_card_becomes_markup_that_runs(card):
    parsed = _Tags(_markdown.render(card))
    for tag, attrs in parsed.tags:
        assert tag in {"h2", "p", "ul", "li", "pre", "code", "a", "strong", "em"}, tag
        assert set(attrs) <= {"href", "rel"}
        assert not attrs.get("href", "").lower().startswith(("javascript", "data"))


def test_relative_and_mail_links_are_kept():
    parsed = _Tags(_markdown.render("[a](../docs/x.html) [b](mailto:me@x.org)"))
    assert [attrs["href"] for _, attrs in parsed.tags if attrs] == ["../docs/x.html",
                                                                      "mailto:me@x.org"]
