"""One registry mechanism for the host stage's ops and the TF graph converter's ops.

Both refuse a second registration, and both declare the node attributes they handle: a
graph whose host node carries an attribute value the host stage does not implement is
refused when it is converted, naming the node.
"""

from __future__ import annotations

import pytest
import tensorflow as tf
import tensorflow_text  # noqa: F401 -- registers the op definitions of the text ops
from tensorflow.python.framework import op_def_registry

from jaxhub_tf.from_tf import graph as tf_graph
from jaxhub_tf.from_tf.host_stages import split
from jaxhub_tf.from_tf.ops import registry as tf_ops
from jaxhub._src.host import ops as host_ops
from jaxhub._src.host.registry import Registry


def _double(node, x):
    return 2 * x


def test_a_registry_finds_what_was_registered_under_each_name():
    table = Registry("test op")
    table.register("Double", "Twice")(_double)
    assert table.lookup("Double") is _double and table.lookup("Twice") is _double
    assert table.lookup("Triple") is None
    assert table.names() == ["Double", "Twice"] and len(table) == 2 and "Twice" in table


def test_a_registry_refuses_a_second_registration_naming_the_first():
    table = Registry("test op")
    table.register("Double")(_double)
    with pytest.raises(ValueError, match=r"test op 'Double' is registered already \(by "
                                         + __name__):
        table.register("Double")(lambda node, x: x)
    assert table.lookup("Double") is _double


def test_a_copy_is_extended_without_touching_the_original():
    table = Registry("test op")
    table.register("Double")(_double)
    extended = table.copy()
    extended.register("Identity")(lambda node, x: x)
    assert table.names() == ["Double"] and extended.names() == ["Double", "Identity"]


@pytest.mark.parametrize("module,existing", [(host_ops, "StringLower"), (tf_ops, "Relu")])
def test_host_ops_and_tf_ops_refuse_duplicates_alike(module, existing):
    with pytest.raises(ValueError, match=f"'{existing}' is registered already"):
        module.register(existing)(_double)
    assert module.lookup(existing) is not _double


def test_every_host_op_declares_the_attributes_of_its_tf_op_def():
    undeclared = {}
    for op in host_ops.supported_ops():
        missing = ({a.name for a in op_def_registry.get(op).attr}
                   - tf_graph.implicit_attrs(op) - set(host_ops.declared_attrs(op)))
        if missing:
            undeclared[op] = sorted(missing)
    assert not undeclared, f"declare (and handle or refuse) these attributes: {undeclared}"


def test_a_host_node_with_an_unsupported_attribute_value_is_refused_by_name():
    with tf.Graph().as_default() as graph:
        words = tf.compat.v1.placeholder(tf.string, [2, 3], name="words")
        picked = tf.gather(words, [[2, 0], [1, 1]], axis=1, batch_dims=1, name="per_row")
        tf.strings.to_hash_bucket_fast(picked, 16, name="ids")
    fn = tf_graph.function_from_graph_def(graph.as_graph_def(), ["words:0"], ["ids:0"])
    with pytest.raises(split.HostStageUnsupportedError,
                       match=r"attribute\(s\) the host stage does not handle: GatherV2 node "
                             r"'per_row': attribute 'batch_dims' = 1 is not supported"):
        split.split(fn)
