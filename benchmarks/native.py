"""The benchmark models written natively in Flax (nnx), with the Keras models' weights.

What a converted module loses against the same architecture written by hand in JAX:
each Keras benchmark model (see :mod:`benchmarks.models`) has a twin here, built from the
same layers the way a Flax user would write them (``nnx.Conv``, ``nnx.BatchNorm`` in
inference mode, ``nnx.MultiHeadAttention``, ...), whose weights are copied from the Keras
model's variables (saved beside the SavedModel as :data:`WEIGHTS`, keyed by Keras's
variable path, e.g. ``conv2_block1_2_conv/kernel``). The benchmark's ``native`` column
runs it with the same JAX code as jaxhub's converted module.

Every builder takes the Keras weights and the model's size options, so that tests can
check small twins against their converted Keras models.
"""

from __future__ import annotations

import pathlib
from typing import Any, Callable, Mapping

import numpy as np

#: The file beside a benchmark SavedModel that holds the Keras weights, by variable path.
WEIGHTS = "keras_weights.npz"

Weights = Mapping[str, np.ndarray]


def keras_weights(model: Any) -> dict[str, np.ndarray]:
    """A Keras model's variables by path (``layer/variable``), as NumPy arrays."""
    return {v.path: np.asarray(v.numpy()) for v in model.weights}


def save_keras_weights(model: Any, directory: pathlib.Path) -> None:
    """Writes :func:`keras_weights` to ``directory / WEIGHTS``."""
    np.savez(directory / WEIGHTS, **keras_weights(model))


def _nnx():
    from flax import nnx
    return nnx


def _set(variable: Any, value: np.ndarray) -> None:
    if variable.shape != value.shape:
        raise ValueError(f"shape {value.shape} does not fit {variable.shape}")
    variable[...] = np.asarray(value, np.float32)


def _copy_dense(layer: Any, weights: Weights, name: str) -> None:
    _set(layer.kernel, weights[f"{name}/kernel"])
    _set(layer.bias, weights[f"{name}/bias"])


def _copy_batch_norm(layer: Any, weights: Weights, name: str) -> None:
    for ours, theirs in (("scale", "gamma"), ("bias", "beta"), ("mean", "moving_mean"),
                         ("var", "moving_variance")):
        _set(getattr(layer, ours), weights[f"{name}/{theirs}"])


# -- MLP and text embedding -----------------------------------------------------------------


def mlp(weights: Weights) -> Any:
    """784 -> 1024 -> 1024 -> 10 with ReLUs (``models._mlp``)."""
    nnx = _nnx()

    class Mlp(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([nnx.Linear(784, 1024, rngs=rngs),
                                    nnx.Linear(1024, 1024, rngs=rngs),
                                    nnx.Linear(1024, 10, rngs=rngs)])

        def __call__(self, x):
            for layer in self.layers[:-1]:
                x = nnx.relu(layer(x))
            return self.layers[-1](x)

    model = Mlp(nnx.Rngs(0))
    for i, layer in enumerate(model.layers):
        _copy_dense(layer, weights, f"mlp/dense{i}")  # a Sequential: paths start with it
    return model


def text_embedding(weights: Weights) -> Any:
    """Ids -> embedding -> mean over tokens -> dense with tanh (``models._text_embedding``)."""
    nnx = _nnx()
    table = weights["embedding/embeddings"]
    width = weights["pooled/kernel"].shape[1]

    class TextEmbedding(nnx.Module):
        def __init__(self, rngs):
            self.embed = nnx.Embed(*table.shape, rngs=rngs)
            self.dense = nnx.Linear(table.shape[1], width, rngs=rngs)

        def __call__(self, ids):
            return nnx.tanh(self.dense(self.embed(ids).mean(axis=1)))

    model = TextEmbedding(nnx.Rngs(0))
    _set(model.embed.embedding, table)
    _copy_dense(model.dense, weights, "pooled")
    return model


# -- ResNet (v1, Keras applications' layout) ------------------------------------------------

#: ResNet50's residual blocks per stage.
RESNET50_BLOCKS = (3, 4, 6, 3)
_BN_EPSILON = 1.001e-5  # Keras applications' ResNet


def resnet(weights: Weights, blocks: tuple[int, ...] = RESNET50_BLOCKS,
           filters: tuple[int, ...] = (64, 128, 256, 512), winograd: bool = False) -> Any:
    """Keras applications' ResNet v1 (ResNet50 with the default ``blocks``) in nnx.

    Stage ``i`` is Keras's ``conv{i+2}``: bottleneck blocks whose first one has a 1x1
    projection shortcut and, from the second stage on, stride 2 in its first 1x1 conv.
    Batch norm runs in inference mode (its moving statistics), as the SavedModel's
    serving signature does.

    Args:
      weights: the Keras model's variables by path.
      blocks: residual blocks per stage.
      filters: bottleneck width per stage (outputs are 4x wider).
      winograd: run the 3x3 convs that suit it as Winograd F(2x2, 3x3)
        (``benchmarks.winograd``), to measure that lowering in a whole model.

    Returns:
      An ``nnx.Module``: f32[N, H, W, 3] -> class probabilities (softmax).
    """
    nnx = _nnx()
    classes = weights["predictions/kernel"].shape[1]

    def conv_bn(cin, cout, size, stride, rngs, padding="VALID"):
        extra = {"conv_general_dilated": _winograd_or_lax} if winograd else {}
        return (nnx.Conv(cin, cout, (size, size), (stride, stride), padding=padding,
                         rngs=rngs, **extra),
                nnx.BatchNorm(cout, use_running_average=True, epsilon=_BN_EPSILON,
                              rngs=rngs))

    class Block(nnx.Module):
        def __init__(self, cin, width, stride, projection, rngs):
            self.shortcut = (nnx.List(conv_bn(cin, 4 * width, 1, stride, rngs))
                             if projection else None)
            self.convs = nnx.List([
                nnx.List(conv_bn(cin, width, 1, stride, rngs)),
                nnx.List(conv_bn(width, width, 3, 1, rngs, padding="SAME")),
                nnx.List(conv_bn(width, 4 * width, 1, 1, rngs))])

        def __call__(self, x):
            shortcut = x
            if self.shortcut is not None:
                conv, bn = self.shortcut
                shortcut = bn(conv(x))
            for i, (conv, bn) in enumerate(self.convs):
                x = bn(conv(x))
                if i < 2:
                    x = nnx.relu(x)
            return nnx.relu(x + shortcut)

    class ResNet(nnx.Module):
        def __init__(self, rngs):
            self.stem = nnx.List(conv_bn(3, 64, 7, 2, rngs))
            stages, cin = [], 64
            for stage, (count, width) in enumerate(zip(blocks, filters)):
                stride = 1 if stage == 0 else 2
                stages.append(nnx.List([
                    Block(cin if i == 0 else 4 * width, width, stride if i == 0 else 1,
                          i == 0, rngs) for i in range(count)]))
                cin = 4 * width
            self.stages = nnx.List(stages)
            self.head = nnx.Linear(cin, classes, rngs=rngs)

        def __call__(self, x):
            import jax
            import jax.numpy as jnp
            conv, bn = self.stem
            x = jnp.pad(x, ((0, 0), (3, 3), (3, 3), (0, 0)))
            x = nnx.relu(bn(conv(x)))
            x = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))  # zeros, as Keras pads
            x = nnx.max_pool(x, (3, 3), strides=(2, 2))
            for stage in self.stages:
                for block in stage:
                    x = block(x)
            return jax.nn.softmax(self.head(x.mean(axis=(1, 2))))

    model = ResNet(nnx.Rngs(0))
    _copy_conv_bn(model.stem, weights, "conv1")
    for s, stage in enumerate(model.stages):
        for b, block in enumerate(stage):
            prefix = f"conv{s + 2}_block{b + 1}"
            if block.shortcut is not None:
                _copy_conv_bn(block.shortcut, weights, f"{prefix}_0")
            for i, pair in enumerate(block.convs):
                _copy_conv_bn(pair, weights, f"{prefix}_{i + 1}")
    _copy_dense(model.head, weights, "predictions")
    return model


def _winograd_or_lax(x, kernel, strides, padding, **kwargs):
    """``lax.conv_general_dilated``, or Winograd where :func:`winograd.suits`."""
    import jax
    from benchmarks import winograd
    dilation = kwargs.get("rhs_dilation") or (1, 1)
    pads = ((1, 1), (1, 1)) if padding == "SAME" else padding  # 3x3, stride 1
    if (not isinstance(pads, str) and kwargs.get("feature_group_count", 1) == 1
            and winograd.suits(kernel.shape, strides, dilation, "NHWC", x.shape[1:3])):
        return winograd.conv3x3(x, kernel, tuple(map(tuple, pads)))
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, **kwargs)


def _copy_conv_bn(pair: Any, weights: Weights, prefix: str) -> None:
    conv, bn = pair
    _copy_dense(conv, weights, f"{prefix}_conv")
    _copy_batch_norm(bn, weights, f"{prefix}_bn")


# -- Transformer encoder (post-norm, BERT's layout) -----------------------------------------


def transformer(weights: Weights) -> Any:
    """The post-norm encoder of ``models.transformer_encoder`` in nnx.

    Layers, width and heads are read from the weights (``layer{i}_attention/...``).

    Returns:
      An ``nnx.Module``: f32[N, L, width] -> f32[N, L, width].
    """
    nnx = _nnx()
    layers = sum(1 for k in weights if k.endswith("_attention/query/kernel"))
    width, heads, head_size = weights["layer0_attention/query/kernel"].shape
    hidden = weights["layer0_ffn_in/kernel"].shape[1]

    class Layer(nnx.Module):
        def __init__(self, rngs):
            self.attention = nnx.MultiHeadAttention(
                heads, width, qkv_features=heads * head_size, out_features=width,
                decode=False, deterministic=True, rngs=rngs)
            self.norm1 = nnx.LayerNorm(width, epsilon=1e-6, rngs=rngs)
            self.ffn_in = nnx.Linear(width, hidden, rngs=rngs)
            self.ffn_out = nnx.Linear(hidden, width, rngs=rngs)
            self.norm2 = nnx.LayerNorm(width, epsilon=1e-6, rngs=rngs)

        def __call__(self, x):
            x = self.norm1(x + self.attention(x))
            h = nnx.gelu(self.ffn_in(x), approximate=False)  # Keras's "gelu"
            return self.norm2(x + self.ffn_out(h))

    class Encoder(nnx.Module):
        def __init__(self, rngs):
            self.layers = nnx.List([Layer(rngs) for _ in range(layers)])

        def __call__(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    model = Encoder(nnx.Rngs(0))
    for i, layer in enumerate(model.layers):
        prefix = f"layer{i}"
        attention = layer.attention
        for ours, theirs in (("query", "query"), ("key", "key"), ("value", "value"),
                             ("out", "attention_output")):
            _copy_dense(getattr(attention, ours), weights, f"{prefix}_attention/{theirs}")
        for norm in ("norm1", "norm2"):
            _set(getattr(layer, norm).scale, weights[f"{prefix}_{norm}/gamma"])
            _set(getattr(layer, norm).bias, weights[f"{prefix}_{norm}/beta"])
        _copy_dense(layer.ffn_in, weights, f"{prefix}_ffn_in")
        _copy_dense(layer.ffn_out, weights, f"{prefix}_ffn_out")
    return model


#: Benchmark model name -> builder from the Keras weights.
BUILDERS: dict[str, Callable[[Weights], Any]] = {
    "mlp": mlp,
    "text_embedding": text_embedding,
    "resnet50": resnet,
    "transformer": transformer,
}


def load(name: str, saved_model: pathlib.Path) -> Any:
    """The native twin of benchmark model ``name``, with the weights saved beside it.

    Raises:
      KeyError: no native twin for ``name``.
      FileNotFoundError: the SavedModel was built without :data:`WEIGHTS` (build it
        again: delete it from the benchmark's workdir).
    """
    file = saved_model / WEIGHTS
    if not file.is_file():
        raise FileNotFoundError(f"{file} is missing: delete {saved_model} so that the "
                                "benchmark builds it again with its Keras weights")
    with np.load(file) as data:
        return BUILDERS[name](dict(data))


def functional(model: Any) -> tuple[Callable, Any, Any]:
    """``(apply(params, x), params, trainable_mask)`` of an nnx model.

    ``params`` holds every variable (the ``nnx.Param`` ones and the batch norm
    statistics), so that nothing is baked into the compiled program as a constant;
    ``trainable_mask`` marks the ``nnx.Param`` leaves.
    """
    import jax
    nnx = _nnx()
    graphdef, trainable, rest = nnx.split(model, nnx.Param, ...)

    def apply(params, x):
        return nnx.merge(graphdef, *params)(x)

    params = (trainable, rest)
    mask = (jax.tree.map(lambda _: True, trainable), jax.tree.map(lambda _: False, rest))
    return apply, params, mask

