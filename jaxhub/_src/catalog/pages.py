"""The HTML of a version's catalog page, and of the ``latest`` page that forwards to it.

A version page sits at ``<org>/<model>/<N>/index.html``, three directories below the
repository root; every link on it is relative to that place.
"""

from __future__ import annotations

import html
import json
import uuid
from typing import Any

from jaxhub._src.catalog import _markdown, layout, snippet
from jaxhub._src.units import format_bytes

_ROOT = "../../../"  # from <org>/<model>/<N>/index.html to the repository root
_ATTACHMENT_CHARS = 300


def version_page(record: dict[str, Any], *, versions: list[int], latest: int,
                 base_url: str | None) -> str:
    """Renders the page of one version.

    Args:
      record: The version's metadata record, with its model card (Markdown) if any.
      versions: Every version of the module.
      latest: The newest version.
      base_url: The repository's URL for the usage snippet; None to let the page
        work it out from its own address.

    Returns:
      A complete HTML document.
    """
    name, version = record["name"], int(record["version"])
    title = f"{name} {version}"
    badges = f'<span class="badge">version {version}</span>' + (
        '<span class="badge latest">latest</span>' if version == latest else "")
    body = "\n".join([
        f'<p><a href="{_ROOT}index.html">&larr; All modules</a></p>',
        f"<h1>{_e(name)}{badges}</h1>",
        f'<p class="description">{_e(record["description"])}</p>',
        _versions_nav(versions, version),
        "<h2>Usage</h2>", _usage(record, base_url),
        "<h2>About</h2>", _about(record),
        "<h2>Signatures</h2>", _variants(record),
        "<h2>Model card</h2>", _card(record.get("model_card")),
        *_extras(record),
    ])
    return _document(title, body)


def redirect_page(target: str) -> str:
    """A page that forwards to ``target`` (relative), with a link for when it cannot."""
    t = _e(target)
    return _document("Latest version",
                     f'<p>The latest version is at <a href="{t}">{t}</a>.</p>',
                     head=f'<meta http-equiv="refresh" content="0; url={t}">', script=False)


def _document(title: str, body: str, *, head: str = "", script: bool = True) -> str:
    scripts = f'\n  <script src="{_ROOT}{layout.SITE_DIR}/page.js"></script>' if script else ""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{_e(title)}</title>
  <link rel="stylesheet" href="{_ROOT}{layout.SITE_DIR}/catalog.css">{head}
</head>
<body data-root="{_ROOT}">
  <header class="site"><a href="{_ROOT}index.html">jaxhub modules</a></header>
  <main>
{body}
  </main>{scripts}
</body>
</html>
"""


def _versions_nav(versions: list[int], current: int) -> str:
    links = [f"<strong>{v}</strong>" if v == current else f'<a href="../{v}/index.html">{v}</a>'
             for v in sorted(versions, reverse=True)]
    return f'<nav class="versions">Versions: {" ".join(links)}</nav>'


def _usage(record: dict[str, Any], base_url: str | None) -> str:
    path = f"{record['name']}/{record['version']}"
    # The handle goes in as a token, so escaping the code cannot touch the span around it.
    token = f"HANDLE{uuid.uuid4().hex}"
    code = _e(snippet.usage(record, token))
    base_attr = f' data-base="{_e(base_url)}"' if base_url else ""
    span = (f'<span class="handle" data-path="{_e(path)}"{base_attr}>'
            f"{_e((base_url or '') + path)}</span>")
    return ('<div class="snippet"><button type="button">Copy</button>'
            f'<pre id="usage"><code>{code.replace(token, span)}</code></pre></div>')


def _about(record: dict[str, Any]) -> str:
    params = record["params"]
    rows = [
        ("Task", _e(record["task"])),
        ("License", _e(record["license"])),
        ("Input size", _e(record["input_size"] or "–")),
        ("Parameters", f"{params['count']:,} ({params['trainable']:,} trainable) in "
                       f"{params['arrays']} arrays, {format_bytes(params['bytes'])}"),
        ("Archive", f'<a href="../{_e(record["archive"])}">{_e(record["archive"])}</a>, '
                    f"{format_bytes(record['archive_bytes'])}"),
        ("sha256", f'<code id="sha256" class="sha256">{_e(record["sha256"])}</code>'),
        ("Published", _e(record["published"])),
        ("Regularizer", "yes" if record["regularizer"] else "no"),
        ("Module format", f"version {record['module_format_version']}, written by "
                          + _e(", ".join(f"{k} {v}" for k, v in record["written_by"].items()))),
    ]
    return ('<table class="about">'
            + "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows) + "</table>")


def _variants(record: dict[str, Any]) -> str:
    parts = []
    for variant in record["variants"]:
        tags = variant["tags"]
        label = "Inference" if not tags else "Variant {" + ", ".join(tags) + "}"
        parts.append(f'<section class="variant" data-tags="{_e(",".join(tags))}">'
                     f"<h3>{_e(label)}</h3>")
        for name, signature in variant["signatures"].items():
            parts.append(_signature(name, signature))
        parts.append("</section>")
    return "\n".join(parts)


def _signature(name: str, signature: dict[str, Any]) -> str:
    notes = []
    if signature["takes_rng"]:
        notes.append("takes <code>rng</code>")
    if signature["state"]:
        notes.append("updates state " + ", ".join(f"<code>{_e(s)}</code>"
                                                  for s in signature["state"]))
    note = f' <span class="muted">({"; ".join(notes)})</span>' if notes else ""
    rows = [f"<tr><td>{kind}</td><td><code>{_e(k)}</code></td><td>{_e(s['dtype'])}</td>"
            f"<td><code>{_e(snippet.format_shape(s['shape']))}</code></td></tr>"
            for kind in ("input", "output") for k, s in signature[kind + "s"].items()]
    return (f'<div class="signature" data-signature="{_e(name)}">'
            f"<h4>{_e(name)}{note}</h4><table><tr><th></th><th>name</th><th>dtype</th>"
            f"<th>shape</th></tr>{''.join(rows)}</table></div>")


def _card(card: str | None) -> str:
    if not card:
        return '<p class="muted">This module has no model card (README.md).</p>'
    return f'<article class="model-card">{_markdown.render(card)}</article>'


def _extras(record: dict[str, Any]) -> list[str]:
    parts = []
    if record["attachments"]:
        rows = "".join(f"<tr><th><code>{_e(k)}</code></th><td><code>{_e(_clip(v))}</code>"
                       "</td></tr>" for k, v in sorted(record["attachments"].items()))
        parts += ["<h2>Attachments</h2>", f'<table class="about">{rows}</table>']
    if record["assets"]:
        items = "".join(f"<li><code>{_e(k)}</code>, {format_bytes(v.get('size', 0))}</li>"
                        for k, v in record["assets"].items())
        parts += ["<h2>Assets</h2>", f"<ul>{items}</ul>"]
    return parts


def _clip(value: Any) -> str:
    # Attachments can be large (a converted text module's host program): show the start.
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= _ATTACHMENT_CHARS else text[:_ATTACHMENT_CHARS] + " …"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)
