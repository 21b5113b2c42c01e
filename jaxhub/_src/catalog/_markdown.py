"""A small, safe Markdown renderer for model cards.

Covers what model cards use: headings, paragraphs, bullet and numbered lists, block
quotes, fenced code, inline code, bold, italics and links. Everything is escaped first and
raw HTML is shown as text, so a model card cannot inject markup or scripts into the
catalog; links keep only http(s), mailto and relative targets.
"""

from __future__ import annotations

import html
import re

_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")
_FENCE = re.compile(r"^\s*(```|~~~)")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_BOLD = re.compile(r"\*\*(.+?)\*\*|__(.+?)__")
_ITALIC = re.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])|(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)")
_SAFE_URL = re.compile(r"^(https?:|mailto:|[^:]*$)", re.IGNORECASE)


def render(text: str, *, heading_offset: int = 1) -> str:
    """Renders Markdown to an HTML fragment.

    Args:
      text: The Markdown source.
      heading_offset: Added to each heading's level (capped at 6), so a card's ``#``
        title sits below the page's own ``<h1>``.

    Returns:
      HTML, safe to embed in a page.
    """
    out: list[str] = []
    lines = text.replace("\r\n", "\n").split("\n")
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.strip():
            i += 1
        elif _FENCE.match(line):
            i = _code_block(lines, i, out)
        elif heading := _HEADING.match(line):
            level = min(6, len(heading.group(1)) + heading_offset)
            out.append(f"<h{level}>{inline(heading.group(2))}</h{level}>")
            i += 1
        elif _BULLET.match(line) or _NUMBERED.match(line):
            i = _list(lines, i, out)
        elif line.lstrip().startswith(">"):
            i = _quote(lines, i, out)
        else:
            i = _paragraph(lines, i, out)
    return "\n".join(out)


def inline(text: str) -> str:
    """Renders inline Markdown (code, bold, italics, links) in one line of text."""
    parts = text.split("`")
    rendered = []
    for n, part in enumerate(parts):
        # Odd parts sit between backticks (an unpaired last one is plain text).
        if n % 2 and n < len(parts) - 1:
            rendered.append(f"<code>{html.escape(part)}</code>")
        else:
            rendered.append(_emphasis(html.escape(part, quote=True)))
    return "".join(rendered)


def _emphasis(escaped: str) -> str:
    escaped = _LINK.sub(_link, escaped)
    escaped = _BOLD.sub(lambda m: f"<strong>{m.group(1) or m.group(2)}</strong>", escaped)
    return _ITALIC.sub(lambda m: f"<em>{m.group(1) or m.group(2)}</em>", escaped)


def _link(match: re.Match) -> str:
    label, url = match.group(1), match.group(2)
    if not _SAFE_URL.match(html.unescape(url)):
        return label
    return f'<a href="{url}" rel="nofollow noopener">{label}</a>'


def _code_block(lines: list[str], i: int, out: list[str]) -> int:
    fence = _FENCE.match(lines[i]).group(1)
    body = []
    i += 1
    while i < len(lines) and not lines[i].strip().startswith(fence):
        body.append(lines[i])
        i += 1
    out.append(f"<pre><code>{html.escape(chr(10).join(body))}</code></pre>")
    return i + 1


def _list(lines: list[str], i: int, out: list[str]) -> int:
    numbered = bool(_NUMBERED.match(lines[i]))
    pattern = _NUMBERED if numbered else _BULLET
    items: list[str] = []
    while i < len(lines) and lines[i].strip():
        item = pattern.match(lines[i])
        if item:
            items.append(item.group(1))
        elif items:
            items[-1] += " " + lines[i].strip()  # a continuation line
        i += 1
    tag = "ol" if numbered else "ul"
    out.append(f"<{tag}>" + "".join(f"<li>{inline(t)}</li>" for t in items) + f"</{tag}>")
    return i


def _quote(lines: list[str], i: int, out: list[str]) -> int:
    body = []
    while i < len(lines) and lines[i].lstrip().startswith(">"):
        body.append(lines[i].lstrip()[1:].lstrip())
        i += 1
    out.append(f"<blockquote>{render(chr(10).join(body), heading_offset=0)}</blockquote>")
    return i


def _paragraph(lines: list[str], i: int, out: list[str]) -> int:
    body = []
    while i < len(lines) and lines[i].strip() and not (
            _FENCE.match(lines[i]) or _HEADING.match(lines[i]) or _BULLET.match(lines[i])
            or _NUMBERED.match(lines[i])):
        body.append(lines[i].strip())
        i += 1
    out.append(f"<p>{inline(' '.join(body))}</p>")
    return i
