"""Fused loss ops: softmax cross-entropy with its gradient, and top-k membership.

TF's cross-entropy ops return the loss and its gradient with respect to the logits (the
"backprop" output) at once; here the loss is computed with ``log_softmax`` and the
gradient is ``softmax - labels``, so ``jax.grad`` of the loss matches TF's gradient.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxhub_tf.from_tf.ops.registry import register
from jaxhub_tf.from_tf.values import as_jax


@register("SoftmaxCrossEntropyWithLogits")
def _softmax_cross_entropy(node, logits, labels):
    logits, labels = jnp.broadcast_arrays(as_jax(logits), as_jax(labels))
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.sum(labels * log_probs, axis=-1)
    # TF's gradient of this op never flows through the backprop output.
    backprop = jax.lax.stop_gradient(jnp.exp(log_probs) - labels)
    return [loss, backprop]


@register("SparseSoftmaxCrossEntropyWithLogits")
def _sparse_softmax_cross_entropy(node, logits, labels):
    logits, labels = as_jax(logits), as_jax(labels)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    loss = -jnp.take_along_axis(log_probs, labels[:, None], axis=-1)[:, 0]
    one_hot = jax.nn.one_hot(labels, logits.shape[-1], dtype=logits.dtype)
    backprop = jax.lax.stop_gradient(jnp.exp(log_probs) - one_hot)
    return [loss, backprop]


@register("InTopKV2")
def _in_top_k(node, predictions, targets, k):
    predictions, targets = as_jax(predictions), as_jax(targets)
    target_scores = jnp.take_along_axis(predictions, targets[:, None].astype(jnp.int32),
                                        axis=-1)
    # TF: the target is in the top k when fewer than k classes score strictly higher.
    higher = jnp.sum(predictions > target_scores, axis=-1)
    return higher < int(np.asarray(k))
