"""``search``: find modules in a repository by reading its ``index.json``."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import urllib.parse
from typing import Any

from jaxhub._src.catalog.index import fetch
from jaxhub._src.hub.config import Settings


@dataclasses.dataclass(frozen=True)
class SearchResult:
    """One module found, described by its latest version.

    Attributes:
      name: ``org/model``.
      version: The latest version number.
      versions: Every published version, oldest first.
      handle: URL to pass to ``jaxhub.load`` (pinned to ``version``).
      sha256: Hex sha256 of that version's archive.
      task: What the module does.
      license: License of the weights.
      description: One paragraph about the module.
      signatures: Names of the inference signatures.
      input_size: One example's input sizes for the default signature, e.g. ``"32x32x3"``.
      params: Number of parameters.
    """

    name: str
    version: int
    versions: tuple[int, ...]
    handle: str
    sha256: str
    task: str
    license: str
    description: str
    signatures: tuple[str, ...]
    input_size: str
    params: int


def search(query: str, repo_url: str | os.PathLike, *, task: str | None = None,
           license: str | None = None, signature: str | None = None,
           offline: bool | None = None) -> list[SearchResult]:
    """Finds the modules of a repository whose description matches every word of ``query``.

    A module matches when each whitespace-separated word of ``query`` occurs (ignoring
    case) in its name, task, license, description or signature names: the same rule as
    the catalog's search box. Modules whose names contain more of the words come first,
    then by name. An empty query matches everything.

    Args:
      query: Words to look for.
      repo_url: The repository root: an http(s) or file:// URL, or a local directory.
      task: Keep only modules with exactly this task.
      license: Keep only modules with exactly this license.
      signature: Keep only modules with an inference signature of this name.
      offline: Fail rather than use the network. Defaults to ``JAXHUB_OFFLINE``.

    Returns:
      The matching modules, best first.

    Raises:
      jaxhub.hub.HandleError: No repository index at ``repo_url``.
      jaxhub.hub.DownloadError: The repository's server failed.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((4, 2))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))},
      ...     attachments={"task": "image classifier"})
      >>> module_dir = module.export("exported/encoder")
      >>> _ = jaxhub.catalog.publish(module_dir, "repo", "acme/encoder", 1)
      >>> for hit in search("image classifier", "repo"):   # or the repository's URL
      ...     print(hit.name, hit.version, hit.handle)
      acme/encoder 1 file:///.../repo/acme/encoder/1
    """
    root = _root_url(repo_url)
    index = fetch(root, Settings.from_env(offline=offline, progress=False))
    terms = query.lower().split()
    hits = []
    for entry in index["modules"]:
        record = entry["versions"][str(entry["latest"])]
        if not all(term in entry["search_text"] for term in terms):
            continue
        if ((task is not None and record["task"] != task)
                or (license is not None and record["license"] != license)
                or (signature is not None and signature not in record["signatures"])):
            continue
        in_name = sum(term in entry["name"].lower() for term in terms)
        hits.append((-in_name, entry["name"], _result(entry, record, root)))
    return [hit for *_, hit in sorted(hits, key=lambda h: h[:2])]


def _result(entry: dict[str, Any], record: dict[str, Any], root: str) -> SearchResult:
    return SearchResult(
        name=entry["name"], version=int(entry["latest"]),
        versions=tuple(int(v) for v in entry["versions"]),
        handle=urllib.parse.urljoin(root, f"{entry['name']}/{entry['latest']}"),
        sha256=record["sha256"], task=record["task"], license=record["license"],
        description=record["description"], signatures=tuple(record["signatures"]),
        input_size=record["input_size"], params=int(record["params"]["count"]))


def _root_url(repo: str | os.PathLike) -> str:
    """The repository root as a URL ending in a slash; local paths become file:// URLs."""
    text = os.fspath(repo)
    if urllib.parse.urlsplit(text).scheme.lower() in ("http", "https", "file"):
        return text.rstrip("/") + "/"
    return pathlib.Path(text).expanduser().absolute().as_uri() + "/"
