"""Calls of library functions: ``PartitionedCall`` and ``StatefulPartitionedCall``.

The callee runs inline in the caller's context, so its variable reads and assignments
act on the same state, and JAX sees one flat computation to fuse. (A node whose op is a
library function's name is called the same way by the interpreter itself.) Calls of
Python functions (``tf.py_function``, ``tf.numpy_function``) are refused with advice.
"""

from __future__ import annotations

from jaxhub_tf.from_tf.ops.registry import refuse, register

# A SavedModel keeps only a token naming the Python function, never its code; TF itself
# cannot run such a node after the process that saved it has exited.
refuse("EagerPyFunc", "PyFunc", "PyFuncStateless", reason=(
    "calls Python code through tf.py_function or tf.numpy_function. A SavedModel does "
    "not contain that code, so neither TensorFlow in another process nor jaxhub can run "
    "it (nor can a host stage, which runs TF ops, not Python). To convert the model, "
    "rewrite that function with TF ops (tf.math, tf.strings, tf.image, ...) and save it "
    "again, or do that step in your own code before or after calling the module."))


# ``config``, ``config_proto`` and ``executor_type`` tune how TF runs the call.
@register("PartitionedCall", "StatefulPartitionedCall",
          attrs=("f", "config", "config_proto", "executor_type"),
          fold=False)
def _call(node, *args):
    return node.ctx.interpreter.call(node.attr("f"), args, node.ctx)
