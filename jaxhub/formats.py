"""The table of module formats ``jaxhub.load`` reads, asked in order.

Detection only looks at file names, so it is cheap and never imports TensorFlow; the
reader is imported when its format is found.
"""

from __future__ import annotations

import dataclasses
import importlib
import pathlib
from typing import Any, Callable

from jaxhub.format.manifest import MANIFEST_FILE


@dataclasses.dataclass(frozen=True)
class Format:
    name: str
    detect: Callable[[pathlib.Path], bool]
    reader: str  # "package.module:function", imported on use
    extra: str | None = None  # the pip extra its reader needs


def _has(*names: str) -> Callable[[pathlib.Path], bool]:
    return lambda path: any((path / name).is_file() for name in names)


FORMATS = (
    Format("jaxhub module", _has(MANIFEST_FILE), "jaxhub.format.reader:read"),
    # Checked before TF2: a TF1 Hub module also holds a saved_model.pb.
    Format("TF1 Hub module", _has("tfhub_module.pb"),
           "converters.from_tf.tf1_hub:load_tf1_hub_module", extra="tf"),
    Format("TF2 SavedModel", _has("saved_model.pb", "saved_model.pbtxt"),
           "converters.from_tf.savedmodel:load_saved_model", extra="tf"),
)


def read(path: pathlib.Path, **kwargs: Any):
    """Reads the module in directory ``path`` with the first format that detects it.

    Raises:
      ModuleFormatError: no format recognises the directory.
      ImportError: the format's reader needs an extra that is not installed.
    """
    from jaxhub.format.manifest import ModuleFormatError
    for fmt in FORMATS:
        if fmt.detect(path):
            return _reader(fmt)(path, **kwargs)
    names = ", ".join(f.name for f in FORMATS)
    raise ModuleFormatError(f"{path} holds no module jaxhub can read (tried: {names})")


def _reader(fmt: Format) -> Callable[..., Any]:
    module_name, function = fmt.reader.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        if fmt.extra is None or e.name not in ("tensorflow", "tensorflow_hub", "tf_keras"):
            raise
        raise ImportError(f"reading a {fmt.name} needs TensorFlow: "
                          f"pip install 'jaxhub[{fmt.extra}]'") from e
    return getattr(module, function)
