"""The op definitions shipped with jaxhub are TF's, for every op jaxhub runs."""

from __future__ import annotations

import tensorflow_text  # noqa: F401  (registers the definitions of its ops with TF)
from tensorflow.python.framework import op_def_registry

import jaxhub_tf.from_tf.ops  # noqa: F401  (registers every op family)
from jaxhub_tf.from_tf.ops import registry
from jaxhub_tf.from_tf.reader import op_defs
from jaxhub._src.host import ops as host_ops


def test_the_table_covers_every_op_jaxhub_runs():
    known_to_tf = {n for n in set(registry._OPS) | set(host_ops._OPS)
                   if op_def_registry.get(n) is not None}
    missing = sorted(known_to_tf - set(op_defs._table()))
    assert not missing, f"run scripts/make-op-defs: {missing}"


def test_table_entries_have_tf_outputs_and_defaults():
    for name, mine in op_defs._table().items():
        theirs = op_def_registry.get(name)
        assert [(a.name, a.number_attr, a.type_list_attr) for a in mine.output_arg] == [
            (a.name, a.number_attr, a.type_list_attr) for a in theirs.output_arg], name
        assert {a.name: a.default_value.SerializeToString() for a in mine.attr} == {
            a.name: a.default_value.SerializeToString() for a in theirs.attr}, name


def test_a_module_op_list_takes_precedence(monkeypatch):
    monkeypatch.setattr(op_defs, "_FROM_MODULES", {})
    op_list = op_defs.protos.OpList()
    custom = op_list.op.add(name="Conv2D")
    for attr in op_defs._table()["Conv2D"].attr:
        custom.attr.add().CopyFrom(attr)
    custom.attr.add(name="from_the_module", type="int")
    op_defs.register(op_list)
    assert op_defs.get("Conv2D") is op_defs._FROM_MODULES["Conv2D"]
    assert op_defs.get("Conv2D").attr[-1].name == "from_the_module"
