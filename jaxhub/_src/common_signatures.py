"""Common signatures: conventions for image and text-embedding modules.

TF Hub fixed a few signatures so that modules of one kind are interchangeable: an image
module takes a batch of ``[height, width, channels]`` float images with values in
``[0, 1]``; a text-embedding module maps a batch of texts to ``[batch, dim]`` vectors.
The publisher's helpers here return the spec and attachments to pass to
:func:`jaxhub.create_module`; the consumer's helpers read a module's expectations back,
from the attachments or, failing that, from the input and output specs.

Examples:
  >>> spec, attachments = image_input(224, 224)
  >>> def net(params, images):                   # global average pool, then a linear map
  ...     return images.mean(axis=(1, 2)) @ params["w"]
  >>> module = jaxhub.create_module({"w": jnp.ones((3, 8))},
  ...                               signatures={"default": (net, spec)},
  ...                               attachments=attachments)
  >>> get_expected_image_size(module), get_num_image_channels(module)
  ((224, 224), 3)
"""

from __future__ import annotations

from typing import Any, Mapping

from jaxhub._src import host
from jaxhub._src.module import Module
from jaxhub._src.specs import TensorSpec

#: Attachment: ``[height, width]`` an image module expects (as TF1 Hub's ImageModuleInfo).
IMAGE_SIZE = "image_size"
#: Attachment: the number of channels of an image module's input.
IMAGE_CHANNELS = "image_channels"
#: Attachment: ``[low, high]``, the range of the input's pixel values.
IMAGE_VALUE_RANGE = "image_value_range"
#: Attachment: the size of the vectors a text-embedding module returns.
EMBEDDING_DIM = "embedding_dim"


def image_input(height: int | None = None, width: int | None = None, channels: int = 3,
                dtype: str = "float32", value_range: tuple[float, float] = (0.0, 1.0)
                ) -> tuple[TensorSpec, dict[str, Any]]:
    """The input spec and attachments of an image module.

    Args:
      height: the image height the module expects, or None for any.
      width: the image width, or None for any.
      channels: the number of color channels.
      dtype: the pixel dtype.
      value_range: the range of pixel values.

    Returns:
      ``(spec, attachments)``: a ``[batch, height, width, channels]`` spec for
      ``signatures``, and attachments to pass (merged with others) as ``attachments``.
      The ``image_size`` attachment is set only when both sizes are given.
    """
    spec = TensorSpec([None, height, width, channels], dtype)
    attachments: dict[str, Any] = {IMAGE_CHANNELS: channels,
                                   IMAGE_VALUE_RANGE: [float(v) for v in value_range]}
    if height is not None and width is not None:
        attachments[IMAGE_SIZE] = [height, width]
    return spec, attachments


def get_expected_image_size(module: Module, signature: str = "default",
                            input_name: str | None = None) -> tuple[int, int]:
    """The ``(height, width)`` an image module expects.

    Read from the ``image_size`` attachment, else from the input spec's fixed sizes.

    Args:
      module: the module.
      signature: the signature whose input is an image.
      input_name: the image input, when the signature has several.

    Raises:
      ValueError: the module states no size (its input takes any size).
    """
    size = module.attachments.get(IMAGE_SIZE)
    if size is not None:
        return int(size[0]), int(size[1])
    spec = _image_spec(module, signature, input_name)
    height, width = spec.shape[1:3]
    if not isinstance(height, int) or not isinstance(width, int):
        raise ValueError(f"the module states no image size: no {IMAGE_SIZE!r} attachment, "
                         f"and its input is {spec}")
    return height, width


def get_num_image_channels(module: Module, signature: str = "default",
                           input_name: str | None = None) -> int:
    """The number of color channels an image module expects.

    Read from the ``image_channels`` attachment, else from the input spec's last axis.

    Raises:
      ValueError: the module states no channel count.
    """
    channels = module.attachments.get(IMAGE_CHANNELS)
    if channels is not None:
        return int(channels)
    spec = _image_spec(module, signature, input_name)
    if not isinstance(spec.shape[3], int):
        raise ValueError(f"the module states no channel count: no {IMAGE_CHANNELS!r} "
                         f"attachment, and its input is {spec}")
    return spec.shape[3]


def _image_spec(module: Module, signature: str, input_name: str | None) -> TensorSpec:
    spec = _one(module.signatures[signature].inputs, input_name, signature, "input")
    if spec.rank != 4:
        raise ValueError(f"signature {signature!r}: the image input is {spec}, not "
                         f"[batch, height, width, channels]")
    return spec


def text_embedding_input(embedding_dim: int, sequence_length: int | None = None,
                         dtype: str = "int32") -> tuple[TensorSpec, dict[str, Any]]:
    """The input spec and attachments of a text-embedding module that takes token ids.

    Modules that take strings get them through a host stage (see :class:`jaxhub.extend.HostStage`);
    JAX-made ones take ``[batch, sequence]`` token ids and return ``[batch, dim]``.

    Args:
      embedding_dim: the size of the embeddings the module returns.
      sequence_length: a fixed sequence length, or None for any.
      dtype: the dtype of the token ids.

    Returns:
      ``(spec, attachments)`` to pass to :func:`jaxhub.create_module`.
    """
    return TensorSpec([None, sequence_length], dtype), {EMBEDDING_DIM: embedding_dim}


def get_embedding_dim(module: Module, signature: str = "default",
                      output_key: str | None = None) -> int:
    """The size of the vectors a text-embedding module returns.

    Read from the ``embedding_dim`` attachment, else from the output spec's last axis.

    Raises:
      ValueError: the module states no embedding size.
    """
    dim = module.attachments.get(EMBEDDING_DIM)
    if dim is not None:
        return int(dim)
    spec = _one(module.signatures[signature].outputs, output_key, signature, "output")
    if spec.rank != 2 or not isinstance(spec.shape[1], int):
        raise ValueError(f"signature {signature!r}: the embedding output is {spec}, not "
                         f"[batch, dim]")
    return spec.shape[1]


def takes_text(module: Module, signature: str = "default") -> bool:
    """Whether the signature takes strings (run through a host stage), not token ids."""
    return signature in module.attachments.get(host.ATTACHMENT_KEY, {})


def _one(specs: Mapping[str, TensorSpec], name: str | None, signature: str,
         what: str) -> TensorSpec:
    if name is None:
        if len(specs) == 1:
            return next(iter(specs.values()))
        if "default" in specs:
            return specs["default"]
        raise ValueError(f"signature {signature!r} has {what}s {sorted(specs)}: name one")
    if name not in specs:
        raise ValueError(f"signature {signature!r} has no {what} {name!r}; its {what}s: "
                         f"{sorted(specs)}")
    return specs[name]
