"""Calls of library functions: ``PartitionedCall`` and ``StatefulPartitionedCall``.

The callee runs inline in the caller's context, so its variable reads and assignments
act on the same state, and JAX sees one flat computation to fuse. (A node whose op is a
library function's name is called the same way by the interpreter itself.)
"""

from __future__ import annotations

from jaxhub_tf.from_tf.ops.registry import register


@register("PartitionedCall", "StatefulPartitionedCall")
def _call(node, *args):
    return node.ctx.interpreter.call(node.attr("f"), args, node.ctx)
