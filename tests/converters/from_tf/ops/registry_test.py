"""The op contract: coverage and attributes.

Every op of the conformance tables is registered, and every op of the op families listed
in :data:`FAMILIES` is in a conformance table. Every registered op declares each attribute
TF's OpDef gives it (dtype and count attributes aside), so an attribute nobody looked at
is found here, not by a user; a graph whose node carries an attribute (or a value) its op
does not handle fails before conversion, with every such node in one error.
"""

from __future__ import annotations

import ast
import inspect
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.framework import op_def_registry

from jaxhub_tf.from_tf import graph as tf_graph
from jaxhub_tf.from_tf import interpreter
from jaxhub_tf.from_tf import ops as ops_package
from jaxhub_tf.from_tf.ops import registry
from tests.converters.from_tf.ops import (activation_test, array_test, conv_test,
                                          elementwise_test, image_test, linalg_test,
                                          losses_test, normalization_test, quantization_test,
                                          random_test, reduction_test, tensor_lists_test,
                                          xla_test)
from tests.converters.from_tf.ops._conformance import ops_of

CONFORMANCE_OPS = set(random_test.OPS).union(*(ops_of(m.CASES) for m in (
    activation_test, array_test, conv_test, elementwise_test, image_test, linalg_test,
    losses_test, normalization_test, quantization_test, reduction_test, tensor_lists_test,
    xla_test)))

#: The op families whose every op must have a conformance entry here.
FAMILIES = ("array", "conv", "elementwise", "image", "linalg", "losses", "nn",
            "normalization", "quantization", "random_stateless", "reduction", "spectral")


def _family(op: str) -> str:
    return registry.lookup(op).__module__.rsplit(".", 1)[-1]


def test_every_conformance_op_is_registered():
    missing = sorted(op for op in CONFORMANCE_OPS if registry.lookup(op) is None)
    assert not missing


def test_every_op_of_the_families_has_a_conformance_entry():
    untested = sorted(op for op in registry.registered_ops()
                      if _family(op) in FAMILIES and op not in CONFORMANCE_OPS)
    assert not untested, f"ops without a conformance entry: {untested}"


# -- attributes -----------------------------------------------------------------------------


def _op_def_attrs(op: str) -> set[str]:
    return {a.name for a in op_def_registry.get(op).attr}


def test_every_op_declares_the_attributes_of_its_tf_op_def():
    undeclared = {}
    for op in registry.registered_ops():
        if op_def_registry.get(op) is None:
            continue
        missing = (_op_def_attrs(op) - tf_graph.implicit_attrs(op)
                   - set(registry.declared_attrs(op)))
        if missing:
            undeclared[op] = sorted(missing)
    assert not undeclared, f"declare (and handle or refuse) these attributes: {undeclared}"


def test_only_internal_rewrites_are_ops_tf_does_not_know():
    unknown = [op for op in registry.registered_ops() if op_def_registry.get(op) is None]
    assert all(op.startswith("_") for op in unknown), unknown


def test_declared_attributes_exist_in_tf():
    # Ops sharing one implementation share its declaration: a name must exist in one of them.
    by_impl: dict[int, list[str]] = {}
    for op in registry.registered_ops():
        by_impl.setdefault(id(registry.lookup(op)), []).append(op)
    misspelled = {}
    for group in by_impl.values():
        known = set().union(*(_op_def_attrs(op) for op in group
                              if op_def_registry.get(op) is not None))
        for op in group:
            if op_def_registry.get(op) is not None:
                extra = set(registry.declared_attrs(op)) - known
                if extra:
                    misspelled[op] = sorted(extra)
    assert not misspelled


def _node_members() -> set[str]:
    """What the ``Node`` protocol declares: attributes and methods."""
    methods = {name for name, value in vars(registry.Node).items()
               if callable(value) and not name.startswith("_")}
    return set(registry.Node.__annotations__) | methods


def _node_uses(source: str) -> set[str]:
    """The ``node.X`` that functions taking ``node`` as first parameter read."""
    used = set()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, ast.FunctionDef) and fn.args.args and fn.args.args[0].arg == "node":
            used |= {a.attr for a in ast.walk(fn) if isinstance(a, ast.Attribute)
                     and isinstance(a.value, ast.Name) and a.value.id == "node"}
    return used


def test_op_implementations_use_only_what_the_node_protocol_declares():
    used = set()
    for path in pathlib.Path(ops_package.__file__).parent.glob("*.py"):
        used |= _node_uses(path.read_text())
    assert {"ctx", "attr", "op"} <= used  # the scan sees the implementations
    assert used <= _node_members(), sorted(used - _node_members())


def test_the_interpreter_gives_ops_the_whole_node_protocol():
    members = {name for name, _ in inspect.getmembers(interpreter._Running)}
    members |= set(interpreter._Running.__slots__)
    assert _node_members() <= members


def _gather_graph(policy: str = "") -> tf.compat.v1.GraphDef:
    """``per_row``: a GatherNd (``bad_indices_policy`` = ``policy``) then a Relu, ``act``."""
    with tf.Graph().as_default() as graph:
        params = tf.compat.v1.placeholder(tf.float32, [2, 3, 4], name="params")
        indices = tf.compat.v1.placeholder(tf.int32, [2, 2], name="indices")
        gathered = tf.gather_nd(params, indices, name="per_row")
        tf.nn.relu(gathered, name="act")
    graph_def = graph.as_graph_def()
    if policy:
        per_row = next(n for n in graph_def.node if n.name == "per_row")
        per_row.attr["bad_indices_policy"].s = policy.encode()
    return graph_def


def _run(graph_def):
    return interpreter.run_graph(graph_def, ["params:0", "indices:0"], ["act:0"])


def test_supported_attribute_values_convert():
    graph_def = _gather_graph("ERROR")
    act = next(n for n in graph_def.node if n.name == "act")
    act.attr["_class"].list.s.append(b"loc:@params")  # TF-internal: ignored
    params = np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 10
    indices = np.array([[1, 2], [0, 1]], np.int32)
    (out,), _ = _run(graph_def)({}, [params, indices])
    np.testing.assert_array_equal(out, np.maximum(params[indices[:, 0], indices[:, 1]], 0))


def test_an_unsupported_attribute_value_fails_naming_node_op_and_attribute():
    with pytest.raises(interpreter.UnsupportedAttrsError) as error:
        _run(_gather_graph("IGNORE"))
    message = str(error.value)
    assert "GatherNd attribute 'bad_indices_policy' = 'IGNORE' is not supported" in message
    assert ": per_row" in message


def test_every_attribute_problem_is_in_one_error_with_missing_ops():
    graph_def = _gather_graph("IGNORE")
    act = next(n for n in graph_def.node if n.name == "act")
    act.attr["frobnicate"].i = 3
    graph_def.node.add(name="mystery", op="MadeUpOpForAttrs", input=["act"])
    with pytest.raises(interpreter.UnsupportedOpsError) as error:
        interpreter.run_graph(graph_def, ["params:0", "indices:0"], ["mystery:0"])
    message = str(error.value)
    assert "MadeUpOpForAttrs: mystery" in message
    assert "2 TF node attribute(s) are not supported" in message
    assert "Relu attribute 'frobnicate' is unknown to the implementation: act" in message
    assert "attribute 'bad_indices_policy' = 'IGNORE'" in message
