"""``publish``: put a version of a module into a repository that a static web server hosts."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import tempfile
from typing import Any, Iterable

import filelock

from jaxhub._src.catalog.index import build, read_records
from jaxhub._src.catalog import layout, metadata
from jaxhub._src.hub.archive import extract, pack
from jaxhub._src.storage.manifest import ModuleFormatError

# Serializes publishers of one repository, so no index rebuild misses another's version.
_LOCK_FILE = ".jaxhub-publish.lock"


@dataclasses.dataclass(frozen=True)
class Published:
    """A version just published.

    Attributes:
      name: ``org/model``.
      version: The version number.
      archive: Path of the archive in the repository.
      sha256: Hex sha256 of the archive.
      record: The version's metadata, as written to ``<N>.json``.
    """

    name: str
    version: int
    archive: pathlib.Path
    sha256: str
    record: dict[str, Any]

    @property
    def handle(self) -> str:
        """The module's path under the repository URL: ``org/model/N``."""
        return f"{self.name}/{self.version}"


def publish(module_dir: str | os.PathLike, repo_dir: str | os.PathLike, name: str,
            version: int, *, task: str | None = None, license: str | None = None,
            description: str | None = None) -> Published:
    """Packs a module into a repository as ``org/model/N.tar.gz`` and updates its index.

    Writes the archive (a reproducible tar.gz), its metadata ``<N>.json``, the module's
    ``latest.json`` alias and the repository's ``index.json``. A published version is never
    replaced: caches and sha256 pins depend on it staying the same. Serve the repository
    directory with any static web server; then
    ``jaxhub.load("http://host/org/model/N")`` (or ``.../latest``) resolves through it. Run
    ``build_catalog`` afterwards to refresh the catalog pages.

    Args:
      module_dir: A jaxhub module directory (as ``Module.export`` writes).
      repo_dir: The repository root; created if missing.
      name: ``org/model``.
      version: A positive integer, new for this module.
      task: What the module does, for filters; defaults to the ``task`` attachment.
      license: License of the weights; defaults to the ``license`` attachment.
      description: One paragraph for listings; defaults to the ``description``
        attachment, else the model card's first paragraph.

    Returns:
      What was published, with the archive's sha256.

    Raises:
      ValueError: A malformed name or version, or ``module_dir`` is not a jaxhub module
        (or an entry of the converted-module cache, which lacks what older readers use).
      FileExistsError: That version was published already.

    Examples:
      >>> module = jaxhub.create_module(
      ...     {"w": jnp.ones((4, 2))},
      ...     signatures={"default": (lambda p, x: x @ p["w"], jaxhub.TensorSpec([None, 4]))},
      ...     attachments={"task": "image classifier"})
      >>> module_dir = module.export("exported/encoder")
      >>> p = publish(module_dir, "repo", "acme/encoder", 1)
      >>> p.handle, len(p.sha256)
      ('acme/encoder/1', 64)
    """
    name, version = layout.check_name(name), layout.check_version(version)
    module_dir, repo = pathlib.Path(module_dir), pathlib.Path(repo_dir)
    # Fail before touching the repository.
    if not metadata.read_manifest(module_dir).exported_vjps:
        raise ModuleFormatError(
            f"{module_dir} is a conversion in jaxhub's cache, written without the exported "
            f"VJPs through which readers that predate split VJPs differentiate; publish a "
            f"copy written with them: jaxhub.load(dir).export(new_dir)")
    repo.mkdir(parents=True, exist_ok=True)
    with filelock.FileLock(repo / _LOCK_FILE):
        archive = repo / layout.archive_path(name, version)
        record_file = repo / layout.record_path(name, version)
        if archive.exists() or record_file.exists():
            raise FileExistsError(
                f"{name} version {version} is already published in {repo}; versions never "
                f"change once published: publish version {_next_version(repo, name)}")
        archive.parent.mkdir(parents=True, exist_ok=True)
        try:
            digest = pack(module_dir, archive)
            record = metadata.describe(
                module_dir, name=name, version=version, sha256=digest,
                archive_bytes=archive.stat().st_size, task=task, license=license,
                description=description)
            layout.write_json(record_file, record)
        except BaseException:
            archive.unlink(missing_ok=True)
            raise
        _reindex_locked(repo)
    return Published(name, version, archive, digest, record)


def reindex(repo_dir: str | os.PathLike) -> dict[str, Any]:
    """Rebuilds ``index.json`` and every ``latest.json`` from the ``<N>.json`` records.

    Publishing does this by itself; call it after deleting a version by hand.

    Args:
      repo_dir: The repository root.

    Returns:
      The new index.
    """
    repo = pathlib.Path(repo_dir)
    with filelock.FileLock(repo / _LOCK_FILE):
        return _reindex_locked(repo)


def _reindex_locked(repo: pathlib.Path) -> dict[str, Any]:
    records = read_records(repo)
    newest: dict[str, dict[str, Any]] = {}
    for record in records:
        if int(record["version"]) > int(newest.get(record["name"], {}).get("version", 0)):
            newest[record["name"]] = record
    for name, record in newest.items():
        layout.write_json(repo / layout.record_path(name, layout.LATEST), record)
    for alias in repo.glob(f"*/*/{layout.LATEST}.json"):
        if alias.parent.relative_to(repo).as_posix() not in newest:
            alias.unlink()  # every version of that module was removed
    index = build(records)
    layout.write_json(repo / layout.INDEX_FILE, index)
    return index


def _next_version(repo: pathlib.Path, name: str) -> int:
    numbers = [int(p.stem) for p in (repo / name).glob("*.json") if p.stem.isdigit()]
    return max(numbers, default=0) + 1


def upgrade(repo_dir: str | os.PathLike, *, names: Iterable[str] | None = None
            ) -> list[Published]:
    """Publishes, for each module whose newest version needs it, an upgraded next version.

    A newest version needs upgrading when the running JAX cannot read one of its
    functions' ``jax.export`` wrappers or one of them has no durable copy (see
    :func:`jaxhub._src.storage.reader.stale_functions`). Its functions are lowered anew by the
    running JAX from the durable copies (or the wrappers, while this JAX reads them) and
    the result is published as version N+1 with the same task, license and description;
    version N stays as it is, since published archives never change.

    Args:
        repo_dir: The repository root.
        names: Only these modules (``org/model``); default: every module.

    Returns:
        The versions published, in name order.
    """
    from jaxhub._src.storage.reader import stale_functions
    from jaxhub._src.upgrade import upgrade as upgrade_module
    repo = pathlib.Path(repo_dir)
    newest: dict[str, dict[str, Any]] = {}
    for record in read_records(repo):
        if names is None or record["name"] in names:
            if int(record["version"]) > int(newest.get(record["name"], {}).get("version", 0)):
                newest[record["name"]] = record
    published = []
    for name, record in sorted(newest.items()):
        with tempfile.TemporaryDirectory(prefix="jaxhub-upgrade-") as tmp:
            unpacked = pathlib.Path(tmp, "module")
            unpacked.mkdir()
            extract(repo / layout.archive_path(name, int(record["version"])), unpacked)
            if not stale_functions(unpacked):
                continue
            upgrade_module(unpacked, pathlib.Path(tmp, "upgraded"))
            published.append(publish(
                pathlib.Path(tmp, "upgraded"), repo, name, _next_version(repo, name),
                task=record.get("task"), license=record.get("license"),
                description=record.get("description")))
    return published
