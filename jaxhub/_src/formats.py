"""The formats ``jaxhub.load`` reads, asked in order: jaxhub's own, then registered ones.

Detection only looks at file names, so it is cheap and never imports TensorFlow. A
foreign format (a TF2 SavedModel, a TF1 Hub module) is converted once into a jaxhub module
kept in the cache, keyed by the source's files and this jaxhub's version, and that module
is what gets loaded: a converted module runs the same code as a native one.

A format may convert **with gradients on demand** (``register_format(...,
gradients_on_demand=True)``, as the TensorFlow formats do): ``jaxhub.load`` then writes
the cached conversion without gradients (exporting a converted model's gradients is most
of its conversion time, which inference never needs), and the first gradient traced
through one of its functions converts the source again with gradients, into a second
cache entry that every later load reads instead. Both are ordinary cached derivations:
built once under the cache's lock, complete or absent.

Formats come from plug-ins: an installed distribution declares an entry point in the
group ``jaxhub.formats`` naming a function that calls :func:`register_format`
(``jaxhub_tf``, installed with jaxhub, registers the TensorFlow formats). Entry points
are loaded on the first detection, not on ``import jaxhub``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.metadata
import importlib.util
import pathlib
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from jaxhub._src.hub import cached_derivation, cached_derivation_if_present
from jaxhub._src.specs import NoGradientError
from jaxhub._src.storage import files
from jaxhub._src.storage.manifest import ModuleFormatError
from jaxhub._src.version import __version__

if TYPE_CHECKING:  # imported on use: it imports JAX
    from jaxhub._src.storage import writer

#: The entry point group of format plug-ins.
ENTRY_POINT_GROUP = "jaxhub.formats"


@dataclasses.dataclass(frozen=True)
class Format:
    """A kind of module directory.

    Attributes:
      name: what users call it ("TF2 SavedModel").
      marker_files: the file names that identify it; a directory holding any of them is
        of this format (no I/O but stats).
      convert: ``convert(src_dir, dst_dir)`` writes a jaxhub module converted from
        ``src_dir``; None for jaxhub's own format.
      requires: the top-level modules ``convert`` imports (checked before converting).
      extra: the pip extra that installs ``requires``.
      gradients_on_demand: ``convert`` takes ``gradients=False`` to write the module
        without gradients, which ``jaxhub.load`` does until a gradient is asked of it.
    """

    name: str
    marker_files: tuple[str, ...]
    convert: Callable[..., Any] | None = None
    requires: tuple[str, ...] = ()
    extra: str | None = None
    gradients_on_demand: bool = False

    def detect(self, path: pathlib.Path) -> bool:
        """True when directory ``path`` holds a module of this format."""
        return any((path / name).is_file() for name in self.marker_files)


_NATIVE = Format("jaxhub module", (files.MANIFEST_FILE,))
_registered: list[Format] = []
_plugins_loaded = False


def register_format(name: str, marker_files: Sequence[str],
                    convert: Callable[..., Any], *,
                    requires: Sequence[str] = (), extra: str | None = None,
                    gradients_on_demand: bool = False) -> Format:
    """Makes :func:`jaxhub.load` read another format by converting it to a jaxhub module.

    Formats are asked in the order they were registered, after jaxhub's own; a format
    whose marker files a later one also has (a TF1 Hub module holds a ``saved_model.pb``)
    is registered first. Registering a name again replaces the earlier format in place.

    Args:
      name: what users call the format; error messages name it.
      marker_files: file names that identify a directory of this format.
      convert: ``convert(src_dir, dst_dir)`` writes the converted jaxhub module into the
        new directory ``dst_dir``. Import heavy dependencies inside it, not at the top of
        the plug-in, so that detection stays cheap.
      requires: top-level modules ``convert`` needs; when one is missing, loading raises
        an ``ImportError`` that names ``extra``.
      extra: the pip extra of jaxhub that installs ``requires`` (``"tf"``).
      gradients_on_demand: ``convert(src_dir, dst_dir, gradients=False)`` writes the
        module without gradients (``jaxhub.create_module(..., gradients=False)``), and
        ``gradients=True`` with them. ``jaxhub.load`` then converts without them, and
        again with them the first time a gradient is traced through the module.

    Returns:
      The registered format.
    """
    fmt = Format(name, tuple(marker_files), convert, tuple(requires), extra,
                 gradients_on_demand)
    for i, known in enumerate(_registered):
        if known.name == name:
            _registered[i] = fmt
            return fmt
    _registered.append(fmt)
    return fmt


def formats() -> tuple[Format, ...]:
    """Every format ``jaxhub.load`` reads, in the order they are asked."""
    _load_plugins()
    return (_NATIVE, *_registered)


def _load_plugins() -> None:
    global _plugins_loaded
    if _plugins_loaded:
        return
    _plugins_loaded = True
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        entry_point.load()()


def detect(path: pathlib.Path) -> Format:
    """The format of the module directory ``path``.

    Raises:
      ModuleFormatError: no format recognises the directory.
    """
    known = formats()
    for fmt in known:
        if fmt.detect(path):
            return fmt
    names = ", ".join(f.name for f in known)
    raise ModuleFormatError(f"{path} holds no module jaxhub can read (tried: {names})")


@dataclasses.dataclass(frozen=True)
class Native:
    """A jaxhub module directory for a handle's directory.

    Attributes:
      path: the module directory: the handle's own, or its cached conversion.
      with_gradients: for a conversion written without gradients, returns the directory
        of the conversion with them, converting on the first call; None otherwise.
      written_params: the params of a conversion this process just wrote at ``path``
        (the arrays that reading them back would give); None otherwise.
    """

    path: pathlib.Path
    with_gradients: Callable[[], pathlib.Path] | None = None
    written_params: dict[str, Any] | None = None


def native(path: pathlib.Path, *, cache_dir: Any = None, gradients: bool = False) -> Native:
    """A jaxhub module directory for ``path``: itself, or its cached conversion.

    ``gradients``: a conversion must hold the gradients (``jaxhub convert``, which
    writes a module to publish); otherwise a format that converts with gradients on
    demand is converted without them, unless the cache holds the conversion with them.

    Raises:
      ModuleFormatError: no format recognises the directory.
      ImportError: converting needs an extra that is not installed.
    """
    fmt = detect(path)
    if fmt.convert is None:
        return Native(path)
    return converted(fmt, path, cache_dir=cache_dir, gradients=gradients)


def converted(fmt: Format, path: pathlib.Path, *, cache_dir: Any = None,
              gradients: bool = False) -> Native:
    """The cached jaxhub module converted from ``path``, converting it on first use.

    The converter (and so TensorFlow) is imported only when the cache has no entry yet.
    ``gradients``: as for :func:`native`.
    """
    import jax
    # 64-bit inputs are exported as 64-bit only with JAX's 64-bit types on, and such a
    # module cannot be called with them off (nor the other way round): one conversion each.
    x64 = ":x64" if jax.config.jax_enable_x64 else ""
    digest = fingerprint(path)
    prefix = f"converted:{fmt.name}:jaxhub-{__version__}{x64}"
    # The conversion's functions carry their split VJPs only (see _in_cache): a key of
    # its own, which a jaxhub of this version written before that (whose Module.export
    # needs the exported VJPs) does not read.
    key = f"{prefix}:split-vjps:{digest}"
    lazy_key = f"{prefix}:gradients-on-demand:{digest}"

    def with_gradients() -> pathlib.Path:
        if fingerprint(path) != digest:  # the conversion would not be the loaded module's
            raise NoGradientError(
                f"{path} changed (or is gone) since it was loaded and converted without "
                f"gradients, so they cannot be exported from it: load it again")
        # The conversion without gradients, if any, holds the same forward functions.
        build = _in_cache(lambda out: _convert(fmt, path, out), lambda: _forward_functions(
            cached_derivation_if_present(lazy_key, cache_dir=cache_dir)))
        module_dir = cached_derivation(key, build, cache_dir=cache_dir, origin=path)
        return _refreshed(module_dir, key, path, cache_dir)

    found = cached_derivation_if_present(key, cache_dir=cache_dir)
    if gradients or not fmt.gradients_on_demand or found is not None:
        return Native(with_gradients())
    from jaxhub._src.storage import writer
    written = writer.WrittenEntry()  # filled if this call converts
    module_dir = cached_derivation(
        lazy_key, _in_cache(lambda out: _convert(fmt, path, out, gradients=False),
                            written=written),
        cache_dir=cache_dir, origin=path)
    refreshed = _refreshed(module_dir, lazy_key, path, cache_dir)
    return Native(refreshed, with_gradients,
                  written.params if refreshed == module_dir else None)


def _refreshed(module_dir: pathlib.Path, key: str, origin: pathlib.Path,
               cache_dir: Any) -> pathlib.Path:
    """``module_dir``, or its upgrade for the running JAX when that JAX cannot read its
    functions' wrappers (a JAX upgraded since the conversion).

    The upgrade is made from the durable copies (no TensorFlow needed) and cached beside
    the conversion under a key naming the JAX version, so it is made once.
    """
    import jax
    from jaxhub._src.storage.reader import stale_functions
    from jaxhub._src.storage.relower import relower_dir
    # Conversions are keyed by the jaxhub version, which writes durable copies: only
    # wrappers that the running JAX refuses call for an upgrade.
    if not stale_functions(module_dir, without_durable_copy=False):
        return module_dir
    return cached_derivation(f"{key}:upgraded-for-jax-{jax.__version__}",
                             _in_cache(lambda out: relower_dir(module_dir, out)),
                             cache_dir=cache_dir, origin=origin)


def _in_cache(build: Callable[[pathlib.Path], Any],
              forward: Callable[[], Mapping[str, Any]] = dict,
              written: writer.WrittenEntry | None = None
              ) -> Callable[[pathlib.Path], Any]:
    """``build(out)``, writing its module at ``out`` as an entry of the cache: without
    the exported VJPs that only readers predating split VJPs use, which are most of
    the time of writing a converted model's gradients after its split VJPs, and with
    its params uncompressed (``writer.cache_entry``; ``Module.export`` writes both as
    usual when the module leaves the cache). ``forward()``: exports of its functions made earlier, by file, which
    ``create_module`` takes instead of exporting them again (``serialization.reusing``);
    asked only when the entry is built. ``written``: receives what was written
    (``writer.WrittenEntry``)."""
    from jaxhub._src import serialization
    from jaxhub._src.storage import writer

    def build_entry(out: pathlib.Path) -> Any:
        with writer.cache_entry(out, written), serialization.reusing(forward()):
            return build(out)

    return build_entry


def _forward_functions(module_dir: pathlib.Path | None) -> dict[str, Any]:
    """The functions of the conversion without gradients at ``module_dir``, by file, when
    the running JAX lowered them (so exporting them again would give the same); else
    none. Converting with gradients traces the same graph into the same functions."""
    import jax
    from jaxhub._src.storage import reader
    if module_dir is None:
        return {}
    try:
        manifest, functions = reader.read_functions(module_dir)
    except Exception:  # noqa: BLE001 (an entry this JAX cannot read: export them anew)
        return {}
    if manifest.written_by.get("jax") != jax.__version__:
        return {}
    return {f.file: functions[f.file] for f in manifest.functions}


def fingerprint(path: pathlib.Path) -> str:
    """A digest of the relative name, size and modification time of every file below ``path``.

    Reading every byte of a large SavedModel on each load costs seconds; a file rewritten
    in place changes its modification time, which is what matters for a cache key.
    Downloaded archives are verified by their sha256 in the hub cache already.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in files.entries_below(path) if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0"
                      f"{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _convert(fmt: Format, src: pathlib.Path, dst: pathlib.Path, **options: Any) -> Any:
    missing = [name for name in fmt.requires if importlib.util.find_spec(name) is None]
    try:
        if missing:
            raise ModuleNotFoundError(f"No module named {missing[0]!r}", name=missing[0])
        return fmt.convert(src, dst, **options)
    except ImportError as e:
        if e.name not in fmt.requires:
            raise
        raise ImportError(f"reading a {fmt.name} needs {e.name}: "
                          f"pip install 'jaxhub[{fmt.extra}]'") from e
