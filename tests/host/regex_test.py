"""Regex ops of host stages run RE2, as TensorFlow does: the same results on patterns where
backtracking engines differ, and linear time on patterns that make them run forever."""

from __future__ import annotations

import time

import numpy as np
import pytest

from jaxhub._src.host import HostStage, HostStageError
from jaxhub._src.host.program import encode_array

tf = pytest.importorskip("tensorflow")

# (pattern, rewrite, text): empty matches next to matches, UTF-8 stepping, groups that do
# not take part, escapes in rewrites, RE2-only syntax, and a catastrophic pattern.
CASES = [
    ("x*", "-", "abxd"),
    ("", "-", "héllo"),
    ("a*?", "-", "baaa"),
    ("(a)|b", "[\\1]", "ab"),
    ("(\\w+) (\\w+)", "\\2 \\1", "hello big world"),
    ("a", "\\\\", "banana"),
    ("a", "\\3", "banana"),         # a group the pattern lacks: RE2 replaces nothing
    ("a", "x\\qy", "banana"),       # a bad escape: RE2 stops the rewrite there
    ("$", "!", "ab\n"),
    ("[[:punct:]]", "", "Hello, World!"),
    ("\\pL+", "W", "日本 abc"),
    ("(?i)HELLO", "bye", "hello Hello"),
    ("(a+)+$", "X", "a" * 41 + "!"),
]


def _program(node, inputs=(), expected=None):
    """A stage running ``node``; with ``expected``, its output says where they are equal."""
    nodes, out = list(inputs) + [node], node["name"]
    if expected is not None:
        nodes += [{"name": "expected", "op": "Const", "attrs": {"value": encode_array(
                      np.asarray(expected, object))}},
                  {"name": "same", "op": "Equal", "inputs": [[out, 0], ["expected", 0]]}]
        out = "same"
    return {"inputs": {"text": {"dtype": "string", "shape": [None]}}, "nodes": nodes,
            "outputs": {"out": [out, 0]}}


def _string_const(name, value):
    return {"name": name, "op": "Const",
            "attrs": {"value": encode_array(np.asarray(value.encode(), object))}}


@pytest.mark.parametrize("replace_global", [True, False])
def test_regex_replace_matches_tensorflow(replace_global):
    for pattern, rewrite, text in CASES:
        expected = tf.strings.regex_replace(text, pattern, rewrite,
                                            replace_global=replace_global).numpy()
        static = HostStage(_program({
            "name": "r", "op": "StaticRegexReplace", "inputs": [["text", 0]],
            "attrs": {"pattern": pattern, "rewrite": rewrite,
                      "replace_global": replace_global}}, expected=expected))
        dynamic = HostStage(_program(
            {"name": "r", "op": "RegexReplace",
             "inputs": [["text", 0], ["p", 0], ["w", 0]],
             "attrs": {"replace_global": replace_global}},
            [_string_const("p", pattern), _string_const("w", rewrite)], expected=expected))
        for stage in (static, dynamic):
            assert stage.run([text])["out"].all(), (pattern, rewrite, text, expected)


def test_regex_full_match_matches_tensorflow():
    texts = ["aaa", "a" * 41 + "!", "日本", "ab\n", ""]
    for pattern in ["(a+)+$", "a*", "\\pL+", "(?s).*", "", "a|aa|aaa"]:
        expected = tf.strings.regex_full_match(texts, pattern).numpy()
        stage = HostStage(_program({"name": "m", "op": "StaticRegexFullMatch",
                                    "inputs": [["text", 0]], "attrs": {"pattern": pattern}}))
        np.testing.assert_array_equal(stage.run(texts)["out"], expected, err_msg=pattern)


def test_a_catastrophic_pattern_runs_in_linear_time():
    text = "a" * 100_000 + "!"  # Python's re does not return on 41 characters
    stage = HostStage(_program({"name": "r", "op": "StaticRegexReplace",
                                "inputs": [["text", 0]],
                                "attrs": {"pattern": "(a+)+$", "rewrite": "X"}},
                               expected=text.encode()))
    start = time.perf_counter()
    assert stage.run([text])["out"].all()
    assert time.perf_counter() - start < 2.0


def test_a_pattern_re2_rejects_is_refused_at_load():
    for pattern in ("(?=a)", "a\\Z", "a{1000}{1000}"):
        with pytest.raises(HostStageError, match=r"'r' \(StaticRegexReplace\).*invalid "
                                                 r"regular expression"):
            HostStage(_program({"name": "r", "op": "StaticRegexReplace",
                                "inputs": [["text", 0]],
                                "attrs": {"pattern": pattern, "rewrite": ""}}))
