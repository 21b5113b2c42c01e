"""The table of module formats ``jaxhub.load`` reads, asked in order.

Detection only looks at file names, so it is cheap and never imports TensorFlow. A
foreign format (TF2 SavedModel, TF1 Hub module) is converted once into a jaxhub module
kept in the cache, keyed by the source's content and this jaxhub's version, and that
module is what gets loaded: a converted module runs the same code as a native one.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import pathlib
from typing import Any, Callable

from jaxhub.format import reader
from jaxhub.format.manifest import MANIFEST_FILE, ModuleFormatError
from jaxhub.version import __version__


@dataclasses.dataclass(frozen=True)
class Format:
    """A kind of module directory.

    Attributes:
      name: what users call it.
      detect: ``detect(path)`` is True for directories of this format (no I/O but stats).
      converter: ``"package.module:function"``, imported on use, with
        ``function(src_dir, dst_dir)`` writing a jaxhub module; None for jaxhub modules.
      extra: the pip extra the converter needs.
    """

    name: str
    detect: Callable[[pathlib.Path], bool]
    converter: str | None = None
    extra: str | None = None


def _has(*names: str) -> Callable[[pathlib.Path], bool]:
    return lambda path: any((path / name).is_file() for name in names)


FORMATS = (
    Format("jaxhub module", _has(MANIFEST_FILE)),
    # Checked before TF2: a TF1 Hub module also holds a saved_model.pb.
    Format("TF1 Hub module", _has("tfhub_module.pb"),
           "converters.from_tf.tf1_hub:convert_tf1_hub_module", extra="tf"),
    Format("TF2 SavedModel", _has("saved_model.pb", "saved_model.pbtxt"),
           "converters.from_tf.savedmodel:convert_saved_model", extra="tf"),
)


def detect(path: pathlib.Path) -> Format:
    """The format of the module directory ``path``.

    Raises:
      ModuleFormatError: no format recognises the directory.
    """
    for fmt in FORMATS:
        if fmt.detect(path):
            return fmt
    names = ", ".join(f.name for f in FORMATS)
    raise ModuleFormatError(f"{path} holds no module jaxhub can read (tried: {names})")


def read(path: pathlib.Path, *, cache_dir: Any = None, **kwargs: Any):
    """Reads the module in directory ``path``, converting a foreign format first.

    Args:
      path: the module directory.
      cache_dir: where converted modules are kept (default: the jaxhub cache).
      **kwargs: passed to :func:`jaxhub.format.reader.read` (``sharding``).

    Raises:
      ModuleFormatError: no format recognises the directory.
      ImportError: converting needs an extra that is not installed.
    """
    fmt = detect(path)
    if fmt.converter is not None:
        path = converted(fmt, path, cache_dir=cache_dir)
    return reader.read(path, **kwargs)


def converted(fmt: Format, path: pathlib.Path, *, cache_dir: Any = None) -> pathlib.Path:
    """The cached jaxhub module converted from ``path``, converting it on first use.

    The converter (and so TensorFlow) is imported only when the cache has no entry yet.
    """
    from jaxhub import hub
    key = f"converted:{fmt.name}:jaxhub-{__version__}:{fingerprint(path)}"
    module_dir = hub.cached_derivation(key, lambda out: _converter(fmt)(path, out),
                                       cache_dir=cache_dir, origin=path)
    return _refreshed(module_dir, key, path, cache_dir)


def _refreshed(module_dir: pathlib.Path, key: str, origin: pathlib.Path,
               cache_dir: Any) -> pathlib.Path:
    """``module_dir``, or its upgrade for the running JAX when that JAX cannot read its
    functions' wrappers (a JAX upgraded since the conversion).

    The upgrade is made from the durable copies (no TensorFlow needed) and cached beside
    the conversion under a key naming the JAX version, so it is made once.
    """
    # Conversions are keyed by the jaxhub version, which writes durable copies: only
    # wrappers that the running JAX refuses call for an upgrade.
    if not reader.stale_functions(module_dir, without_durable_copy=False):
        return module_dir
    import jax
    from jaxhub import hub
    from jaxhub.format.upgrade import upgrade
    return hub.cached_derivation(f"{key}:upgraded-for-jax-{jax.__version__}",
                                 lambda out: upgrade(module_dir, out),
                                 cache_dir=cache_dir, origin=origin)


def fingerprint(path: pathlib.Path) -> str:
    """A digest of the relative name, size and modification time of every file below ``path``.

    Reading every byte of a large SavedModel on each load costs seconds; a file rewritten
    in place changes its modification time, which is what matters for a cache key.
    Downloaded archives are verified by their sha256 in the hub cache already.
    """
    digest = hashlib.sha256()
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        stat = file.stat()
        digest.update(f"{file.relative_to(path).as_posix()}\0{stat.st_size}\0"
                      f"{stat.st_mtime_ns}\0".encode())
    return digest.hexdigest()


def _converter(fmt: Format) -> Callable[[pathlib.Path, pathlib.Path], Any]:
    module_name, function = fmt.converter.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if e.name not in ("tensorflow", "tensorflow_hub", "tf_keras"):
            raise
        raise ImportError(f"reading a {fmt.name} needs TensorFlow: "
                          f"pip install 'jaxhub[{fmt.extra}]'") from e
    return getattr(module, function)
