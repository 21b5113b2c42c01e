"""Hostile host stages: a module's program can read only the module's own assets, cannot
loop, nest or allocate without bound, and a loaded module keeps the files it loaded.

Each attack is a real module directory on disk, written by jaxhub and then edited the way
an attacker would edit it; loading or calling it must give a clear jaxhub error.
"""

from __future__ import annotations

import copy
import json
import os
import shutil

import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src.host import ATTACHMENT_KEY, HostLimits, HostStage, HostStageError
from jaxhub._src.host.program import encode_array

VOCAB = "apple\npear\nplum\n"
WORDS = ["pear", "Apple", "kiwi", "plum"]
TABLE_NODES = [
    {"name": "table", "op": "HashTableV2",
     "attrs": {"key_dtype": "string", "value_dtype": "int64"}},
    {"name": "file", "op": "Asset", "attrs": {"name": "vocab.txt"}},
    {"name": "init", "op": "InitializeTableFromTextFileV2",
     "inputs": [["table", 0], ["file", 0]], "attrs": {"key_index": -2, "value_index": -1}},
    {"name": "lower", "op": "StringLower", "inputs": [["text", 0]]},
    {"name": "missing", "op": "Const", "attrs": {"value": encode_array(np.int64(-1))}},
    {"name": "find", "op": "LookupTableFindV2",
     "inputs": [["table", 0], ["lower", 0], ["missing", 0]]},
]
PROGRAM = {"inputs": {"text": {"dtype": "string", "shape": [None]}}, "nodes": TABLE_NODES,
           "init": ["init"], "outputs": {"ids": ["find", 0]}}


def ids_as_floats(params, inputs):
    return inputs["ids"].astype(jnp.float32) * params["scale"]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory):
    """A text module on disk: words -> line numbers in its vocabulary asset."""
    tmp = tmp_path_factory.mktemp("vocab")
    (tmp / "vocab.txt").write_text(VOCAB)
    module = jaxhub.create_module(
        {"scale": jnp.ones(())},
        signatures={"default": (ids_as_floats, {"ids": jaxhub.TensorSpec([None], "int32")})},
        attachments={ATTACHMENT_KEY: {"default": PROGRAM}},
        assets={"vocab.txt": tmp / "vocab.txt"})
    return module.export(tmp / "module")


def hostile_copy(module_dir, tmp_path, edit):
    """A copy of ``module_dir`` whose host program ``edit(program)`` has changed."""
    target = shutil.copytree(module_dir, tmp_path / "hostile")
    manifest_file = target / "jaxhub_module.json"
    manifest = json.loads(manifest_file.read_text())
    edit(manifest["attachments"][ATTACHMENT_KEY]["default"])
    manifest_file.write_text(json.dumps(manifest))
    return target


def node(program, name):
    return next(n for n in program["nodes"] if n["name"] == name)


def test_the_module_reads_its_own_vocabulary(vocab_dir):
    np.testing.assert_array_equal(jaxhub.load(vocab_dir)(WORDS), [1, 0, -1, 2])


@pytest.mark.parametrize("secret", ["/etc/passwd", "/dev/zero"])
def test_a_table_file_named_by_a_constant_is_refused_at_load(vocab_dir, tmp_path, secret):
    def read_secret(program):
        node(program, "file").update(op="Const", attrs={"value": encode_array(
            np.asarray(secret.encode(), object))})
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"'init' \(InitializeTableFromTextFileV2\) reads a file named "
                             r"by 'file', not by an Asset node"):
        jaxhub.load(hostile_copy(vocab_dir, tmp_path, read_secret))


def test_a_table_file_named_by_the_caller_is_refused_at_load(vocab_dir, tmp_path):
    def read_input(program):
        program["inputs"]["path"] = {"dtype": "string", "shape": []}
        node(program, "init")["inputs"][1] = ["path", 0]
    with pytest.raises(jaxhub.ModuleFormatError, match="reads a file named by 'path'"):
        jaxhub.load(hostile_copy(vocab_dir, tmp_path, read_input))


def test_an_asset_path_cannot_be_edited_into_another_path(vocab_dir, tmp_path):
    def append_to_asset(program):
        suffix = {"name": "suffix", "op": "Const",
                  "attrs": {"value": encode_array(np.asarray(b"/../../../etc/passwd", object))}}
        join = {"name": "join", "op": "StringJoin", "inputs": [["file", 0], ["suffix", 0]]}
        program["nodes"] += [suffix, join]
        node(program, "init")["inputs"][1] = ["join", 0]
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"asset 'file' feeds 'join' \(StringJoin\)"):
        jaxhub.load(hostile_copy(vocab_dir, tmp_path, append_to_asset))


def test_an_asset_node_can_name_only_a_declared_asset(vocab_dir, tmp_path):
    def other_file(program):
        node(program, "file")["attrs"]["name"] = "../../../../etc/passwd"
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"'file' \(Asset\): needs asset '../../../../etc/passwd', which "
                             r"the module lacks \(its assets: \['vocab.txt'\]\)"):
        jaxhub.load(hostile_copy(vocab_dir, tmp_path, other_file))


def test_an_asset_linked_to_a_device_is_refused(vocab_dir, tmp_path):
    module_dir = hostile_copy(vocab_dir, tmp_path, lambda program: None)
    (module_dir / "assets" / "vocab.txt").unlink()
    os.symlink("/dev/zero", module_dir / "assets" / "vocab.txt")
    with pytest.raises(jaxhub.ModuleFormatError, match="outside itself"):
        jaxhub.load(module_dir)


def test_an_asset_changed_in_place_is_refused(vocab_dir, tmp_path):
    module_dir = hostile_copy(vocab_dir, tmp_path, lambda program: None)
    (module_dir / "assets" / "vocab.txt").write_text(VOCAB.replace("pear", "kiwi"))
    with pytest.raises(jaxhub.ModuleFormatError, match="'vocab.txt' does not match the sha256"):
        jaxhub.load(module_dir)


def test_assets_over_the_limit_are_refused_at_load(vocab_dir, monkeypatch):
    monkeypatch.setenv("JAXHUB_HOST_MAX_ASSET_BYTES", "10")
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"'vocab.txt'.* over 10 bytes \(JAXHUB_HOST_MAX_ASSET_BYTES\)"):
        jaxhub.load(vocab_dir)


def test_a_bad_limit_setting_is_named(monkeypatch):
    monkeypatch.setenv("JAXHUB_HOST_MAX_DEPTH", "-3")
    with pytest.raises(ValueError, match="JAXHUB_HOST_MAX_DEPTH='-3': expected a positive"):
        HostLimits.from_env()


def test_a_loaded_module_keeps_the_vocabulary_it_loaded(vocab_dir, tmp_path):
    module_dir = shutil.copytree(vocab_dir, tmp_path / "entry")
    module = jaxhub.load(module_dir)
    before = np.asarray(module(WORDS))
    # Another caller replaces the entry with a new version, then removes it.
    replacement = tmp_path / "v2"
    (tmp_path / "v2.txt").write_text("plum\nkiwi\npear\napple\n")
    jaxhub.create_module(
        {"scale": jnp.ones(())},
        signatures={"default": (ids_as_floats, {"ids": jaxhub.TensorSpec([None], "int32")})},
        attachments={ATTACHMENT_KEY: {"default": PROGRAM}},
        assets={"vocab.txt": tmp_path / "v2.txt"}).export(replacement)
    shutil.rmtree(module_dir)
    os.rename(replacement, module_dir)
    assert list(jaxhub.load(module_dir)(WORDS)) == [2, 3, 1, 0]  # the new version
    np.testing.assert_array_equal(module(WORDS), before)
    shutil.rmtree(module_dir)
    np.testing.assert_array_equal(module(WORDS), before)
    copy_dir = module.export(tmp_path / "exported")
    assert (copy_dir / "assets" / "vocab.txt").read_text() == VOCAB
    np.testing.assert_array_equal(jaxhub.load(copy_dir)(WORDS), before)


# -- programs: shape and size -----------------------------------------------------------


def test_a_cyclic_program_is_refused_at_load(vocab_dir, tmp_path):
    def cycle(program):
        node(program, "lower")["inputs"] = [["find", 0]]
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"cyclic: nodes \['find', 'lower'\] wait on each other"):
        jaxhub.load(hostile_copy(vocab_dir, tmp_path, cycle))


def test_a_program_too_deep_or_too_large_is_refused(vocab_dir, tmp_path, monkeypatch):
    def deep(program):
        chain = [{"name": f"id{i}", "op": "Identity", "inputs": [[f"id{i - 1}", 0]]}
                 for i in range(1, 1500)]
        program["nodes"] += [{"name": "id0", "op": "Identity", "inputs": [["find", 0]]}] + chain
        program["outputs"]["ids"] = ["id1499", 0]
    module_dir = hostile_copy(vocab_dir, tmp_path, deep)
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"1,001 ops deep, over the limit of 1,000 \(JAXHUB_HOST_MAX_DEPTH\)"):
        jaxhub.load(module_dir)
    monkeypatch.setenv("JAXHUB_HOST_MAX_NODES", "100")
    with pytest.raises(jaxhub.ModuleFormatError,
                       match=r"1,506 nodes, over the limit of 100 \(JAXHUB_HOST_MAX_NODES\)"):
        jaxhub.load(module_dir)


def _stage(nodes, outputs, size_of=None, limits=None):
    program = {"inputs": {"text": {"dtype": "string", "shape": [None]}}, "nodes": nodes,
               "outputs": outputs, "size_of": size_of or {}}
    return HostStage(program, signature="default", limits=limits)


def _const(name, value, dtype=np.int64):
    return {"name": name, "op": "Const",
            "attrs": {"value": encode_array(np.asarray(value, dtype))}}


def test_an_op_sized_by_module_data_is_refused_before_it_allocates():
    fill = _stage([_const("dims", [10 ** 12]), _const("zero", 0, np.int8),
                   {"name": "fill", "op": "Fill", "inputs": [["dims", 0], ["zero", 0]]}],
                  {"x": ["fill", 0]})
    with pytest.raises(HostStageError,
                       match=r"signature 'default': host op 'fill' \(Fill\): would make "
                             r"1,000,000,000,000 elements.*JAXHUB_HOST_MAX_ELEMENTS"):
        fill.run(["a"])
    sized = _stage([_const("ids", [10 ** 12 - 1])], {}, size_of={"n": ["ids", 0]})
    with pytest.raises(HostStageError, match="output 'n'.*1,000,000,000,000 elements"):
        sized.run(["a"])
    outer = _stage([_const("n", 100_000), _const("zero", 0), _const("one", 1),
                    {"name": "r", "op": "Range", "inputs": [["zero", 0], ["n", 0], ["one", 0]]},
                    _const("col", [-1, 1]), _const("row", [1, -1]),
                    {"name": "c", "op": "Reshape", "inputs": [["r", 0], ["col", 0]]},
                    {"name": "w", "op": "Reshape", "inputs": [["r", 0], ["row", 0]]},
                    {"name": "grid", "op": "Add", "inputs": [["c", 0], ["w", 0]]}],
                   {"x": ["grid", 0]})
    with pytest.raises(HostStageError, match=r"'grid' \(Add\): would make 10,000,000,000"):
        outer.run(["a"])


def test_a_range_sized_by_an_input_is_refused_before_it_allocates():
    # A numeric stage (tf.range of a signature's inputs): the caller's values set the
    # length, bounded like any size from data; an infinite bound has no length at all.
    program = {"inputs": {k: {"dtype": "float32", "shape": []} for k in ("lo", "hi", "step")},
               "nodes": [{"name": "r", "op": "Range",
                          "inputs": [["lo", 0], ["hi", 0], ["step", 0]],
                          "attrs": {"Tidx": "float32"}}],
               "outputs": {"x": ["r", 0]}}
    stage = HostStage(program, signature="default", limits=HostLimits(max_elements=1000))
    assert stage.run({"lo": 0, "hi": 1000, "step": 1})["x"].shape == (1000,)
    with pytest.raises(HostStageError, match=r"host op 'r' \(Range\): would make 1,001 "
                                             r"elements.*JAXHUB_HOST_MAX_ELEMENTS"):
        stage.run({"lo": 0, "hi": 1001, "step": 1})
    with pytest.raises(HostStageError, match=r"'r' \(Range\).*would make 1,000,000,000 "):
        stage.run({"lo": 0, "hi": 1e9, "step": 1})
    with pytest.raises(HostStageError, match=r"'r' \(Range\).*no finite length"):
        stage.run({"lo": 0, "hi": np.inf, "step": 1})


def test_text_that_doubles_at_every_op_is_stopped():
    nodes = [{"name": "j0", "op": "StringJoin", "inputs": [["text", 0], ["text", 0]]}]
    nodes += [{"name": f"j{i}", "op": "StringJoin", "inputs": [[f"j{i-1}", 0], [f"j{i-1}", 0]]}
              for i in range(1, 60)]
    nodes.append({"name": "len", "op": "StringLength", "inputs": [["j59", 0]]})
    stage = _stage(nodes, {"x": ["len", 0]}, limits=HostLimits(max_string_bytes=1 << 16))
    with pytest.raises(HostStageError,
                       match=r"'j16' \(StringJoin\): would make 131,072 bytes of text.*"
                             r"JAXHUB_HOST_MAX_STRING_BYTES"):
        stage.run(["a"])


def test_the_same_program_runs_when_within_limits():
    program = copy.deepcopy(PROGRAM)
    stage = HostStage(program, {"vocab.txt": VOCAB.encode()})
    np.testing.assert_array_equal(stage.run(WORDS)["ids"], [1, 0, -1, 2])
