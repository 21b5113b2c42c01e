"""Gradients of modules: one forward and one backward pass, through the split VJP.

Each function of a module is stored with the two halves of its gradient: a forward pass
that also returns the residuals and a backward pass that takes them. These tests check
that ``jax.grad`` of a module runs exactly those two (never the function again), that
the gradients match the publisher's functions under grad, vmap and jit, and that modules
without the halves keep differentiating through the function's own exported VJP.
"""

from __future__ import annotations

import json
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend import core as jax_core

import jaxhub
from tests.conftest import double, mlp, mlp_params, mlp_train

ATOL = 1e-5
KEY = jax.random.key(7)


def sum_of_squares(tree):
    return sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(tree))


# One loss per (tags, signature): the module's version, and the original function's.
LOSSES = {
    "default": (lambda m: lambda p, x: sum_of_squares(m.apply(p, x)),
                lambda p, x: sum_of_squares(mlp(p, x))),
    "double": (lambda m: lambda p, x: sum_of_squares(
                   m.apply(p, {"a": x}, signature="double", as_dict=True)),
               lambda p, x: sum_of_squares(double(p, {"a": x}))),
    "train": (lambda m: lambda p, x: sum_of_squares(m.apply(p, x, tags="train", rng=KEY)),
              lambda p, x: sum_of_squares(mlp_train(p, x, KEY))),
}


def function_spec(module, name):
    """The manifest entry behind the loss ``name`` of :data:`LOSSES`."""
    if name == "train":
        return module.manifest.function(frozenset({"train"}), "default")
    return module.manifest.function(frozenset(), name)


def without_stats(grads):
    """Frozen params get no gradient in the module, but do in the plain function."""
    return {k: v for k, v in grads.items() if k != "stats"}


def assert_trees_close(a, b, atol=ATOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=1e-4), a, b)


def exported_calls(module, fn, *args) -> list[str | None]:
    """The module files whose functions ``fn(*args)`` calls, in order of the trace.

    None stands for an exported function stored in no file of its own (a VJP).
    """
    names = {id(exp): file for file, exp in module.functions.items()}
    return [names.get(id(exp)) for exp in _exported_in(jax.make_jaxpr(fn)(*args).jaxpr)]


def _exported_in(jaxpr) -> list:
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "call_exported":
            found.append(eqn.params["exported"])
        for value in eqn.params.values():
            if isinstance(value, jax_core.ClosedJaxpr):
                found += _exported_in(value.jaxpr)
            elif isinstance(value, jax_core.Jaxpr):
                found += _exported_in(value)
    return found


@pytest.fixture(scope="module")
def loaded(mlp_dir):
    return jaxhub.load(mlp_dir)


@pytest.fixture(scope="module")
def without_split_vjp(mlp_dir, tmp_path_factory):
    """The module as a writer before split VJPs would have written it."""
    path = shutil.copytree(mlp_dir, tmp_path_factory.mktemp("old") / "mlp")
    manifest = json.loads((path / "jaxhub_module.json").read_text())
    for fn in manifest["functions"]:
        del fn["vjp"]
    (path / "jaxhub_module.json").write_text(json.dumps(manifest))
    for folder in path.glob("functions/*/vjp"):
        shutil.rmtree(folder)
    return jaxhub.load(path)


class TestStoredHalves:

    def test_every_signature_of_every_variant_has_them(self, mlp_dir, loaded):
        specs = loaded.manifest.functions
        assert {(tuple(f.tags), f.signature_name) for f in specs if f.vjp} == {
            ((), "default"), ((), "double"), (("train",), "default")}
        for spec in specs:
            assert (mlp_dir / spec.vjp.forward).is_file()
            assert (mlp_dir / spec.vjp.backward).is_file()

    def test_inputs_used_as_residuals_are_passed_back_not_returned(self, loaded):
        spec = function_spec(loaded, "default")
        paths = [p.path for p in loaded.manifest.params]
        kernels = {paths.index(("dense1", "kernel")), paths.index(("dense2", "kernel"))}
        x_index = len(paths)
        # x @ kernel: its gradient needs both operands, which the caller already holds.
        assert kernels | {x_index} <= set(spec.vjp.saved_inputs)
        forward = loaded.functions[spec.vjp.forward]
        residuals = forward.out_avals[len(spec.signature.outputs):]
        arg_shapes = {str(a.shape) for a in forward.in_avals}
        assert residuals and not {str(r.shape) for r in residuals} & arg_shapes

    def test_the_halves_carry_no_vjp_of_their_own(self, mlp_dir, loaded):
        spec = function_spec(loaded, "default")
        half, whole = loaded.functions[spec.vjp.backward], loaded.functions[spec.file]
        assert not half.has_vjp()
        assert whole.has_vjp()


class TestGradients:

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_grad_runs_the_forward_half_then_the_backward_half(self, loaded, x, name):
        calls = exported_calls(loaded, jax.grad(LOSSES[name][0](loaded)), loaded.params, x)
        spec = function_spec(loaded, name)
        assert calls == [spec.vjp.forward, spec.vjp.backward]

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_gradients_match_the_original_function(self, loaded, x, name):
        module_loss, loss = LOSSES[name]
        grads = jax.jit(jax.grad(module_loss(loaded)))(loaded.params, x)
        assert_trees_close(without_stats(grads), without_stats(jax.grad(loss)(mlp_params(), x)))
        np.testing.assert_array_equal(grads["stats"]["mean"], 0.0)

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_gradient_with_respect_to_the_inputs(self, loaded, x, name):
        module_loss, loss = LOSSES[name]
        grads = jax.grad(module_loss(loaded), 1)(loaded.params, x)
        np.testing.assert_allclose(grads, jax.grad(loss, 1)(mlp_params(), x), atol=ATOL)

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_per_example_gradients(self, loaded, name):
        """vmap(grad): the halves are batched (folded or mapped) like the function."""
        module_loss, loss = LOSSES[name]
        xs = jax.random.normal(jax.random.key(1), (3, 2, 50))
        per_example = lambda f, p: jax.vmap(jax.grad(f), (None, 0))(p, xs)
        assert_trees_close(without_stats(per_example(module_loss(loaded), loaded.params)),
                           without_stats(per_example(loss, mlp_params())), atol=1e-4)

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_gradient_of_a_vmapped_loss(self, loaded, name):
        """grad(vmap): the backward half takes residuals with a mapped axis."""
        module_loss, loss = LOSSES[name]
        xs = jax.random.normal(jax.random.key(2), (3, 2, 50))
        of_batches = lambda f: lambda p: jnp.sum(jax.vmap(f, (None, 0))(p, xs))
        grads = jax.grad(of_batches(module_loss(loaded)))(loaded.params)
        assert_trees_close(without_stats(grads),
                           without_stats(jax.grad(of_batches(loss))(mlp_params())), atol=1e-4)

    def test_gradient_over_stacked_params(self, loaded, x):
        stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), mlp_params(0), mlp_params(1))
        module_loss, loss = LOSSES["default"]
        grads = jax.vmap(jax.grad(module_loss(loaded)), (0, None))(stacked, x)
        ref = jax.vmap(jax.grad(loss), (0, None))(stacked, x)
        assert_trees_close(without_stats(grads), without_stats(ref), atol=1e-4)


class TestModulesWithoutHalves:

    def test_grad_runs_the_function_then_its_exported_vjp(self, without_split_vjp, x):
        spec = function_spec(without_split_vjp, "default")
        assert spec.vjp is None
        loss = LOSSES["default"][0](without_split_vjp)
        assert exported_calls(without_split_vjp, jax.grad(loss), without_split_vjp.params,
                              x) == [spec.file, None]

    @pytest.mark.parametrize("name", sorted(LOSSES))
    def test_gradients_agree_with_the_split_vjp(self, without_split_vjp, loaded, x, name):
        module_loss = LOSSES[name][0]
        assert_trees_close(jax.grad(module_loss(without_split_vjp))(loaded.params, x),
                           jax.grad(module_loss(loaded))(loaded.params, x))

    def test_reader_ignores_manifest_fields_and_files_it_does_not_know(self, mlp_dir,
                                                                       tmp_path, x):
        """What lets a reader that predates split VJPs load modules that have them."""
        path = shutil.copytree(mlp_dir, tmp_path / "m")
        manifest = json.loads((path / "jaxhub_module.json").read_text())
        for fn in manifest["functions"]:
            fn["from_a_later_version"] = {"file": "functions/later.bin"}
        manifest["from_a_later_version"] = [1, 2]
        (path / "jaxhub_module.json").write_text(json.dumps(manifest))
        (path / "functions" / "later.bin").write_bytes(b"\0")
        module = jaxhub.load(path)
        np.testing.assert_allclose(module(x), mlp(mlp_params(), x), atol=ATOL)


def test_upgrade_relowers_the_halves(loaded, mlp_dir, tmp_path, x):
    from jaxhub._src.upgrade import upgrade
    upgraded = upgrade(mlp_dir, tmp_path / "upgraded")
    for name, (module_loss, loss) in LOSSES.items():
        spec = function_spec(upgraded, name)
        assert spec.vjp == function_spec(loaded, name).vjp
        assert exported_calls(upgraded, jax.grad(module_loss(upgraded)), upgraded.params,
                              x) == [spec.vjp.forward, spec.vjp.backward]
        assert_trees_close(without_stats(jax.grad(module_loss(upgraded))(upgraded.params, x)),
                           without_stats(jax.grad(loss)(mlp_params(), x)))


def test_sizes_that_no_residual_has_are_passed_back():
    """Mean pooling over any image size: the backward half needs the size, not the image."""
    def pool(params, images):
        return jnp.mean(images, axis=(1, 2)) @ params["w"]

    params = {"w": jax.random.normal(jax.random.key(0), (3, 4))}
    module = jaxhub.create_module(params, signatures={
        "default": (pool, jaxhub.TensorSpec([None, None, None, 3], "float32"))})
    spec = function_spec(module, "default")
    assert len(params) in spec.vjp.saved_inputs  # the images, for their height and width
    for size in (5, 8):
        images = jax.random.normal(jax.random.key(size), (2, size, size, 3))
        loss = lambda f: lambda p, x: jnp.sum(f(p, x) ** 2)
        assert_trees_close(jax.grad(loss(module.apply), (0, 1))(params, images),
                           jax.grad(loss(pool), (0, 1))(params, images))


def test_a_function_whose_gradient_cannot_be_traced_is_stored_forward_only(x):
    """The module runs, and its gradient fails only when asked for, naming the reason."""
    @jax.custom_vjp
    def broken(v):
        return v

    broken.defvjp(lambda v: (v, None), lambda _, ct: (ct.reshape(-1),))  # wrong shape

    params = {"w": jnp.ones((50, 3))}
    with pytest.warns(UserWarning, match="signature 'default' is stored forward-only"):
        module = jaxhub.create_module(params, signatures={
            "default": (lambda p, v: broken(v) @ p["w"], jaxhub.TensorSpec([None, 50]))})
    assert function_spec(module, "default").vjp is None
    assert "Custom VJP bwd rule" in function_spec(module, "default").forward_only
    np.testing.assert_allclose(module(x), x @ params["w"], atol=ATOL)
    with pytest.raises(jaxhub.SignatureError, match="signature 'default' is forward-only"):
        jax.grad(lambda v: jnp.sum(module(v)))(x)


def test_an_earlier_export_is_reused_for_its_key_and_types_only():
    """What converting a model again with gradients takes instead of lowering anew."""
    from jaxhub._src import serialization

    def trace(n):
        return serialization.trace(lambda x: (jnp.sin(x),), [jaxhub.TensorSpec(["b", n])])

    traced = trace(3)
    earlier = serialization.export(traced.fn, [jaxhub.TensorSpec(["b", 3])],
                                   scope=traced.scope)
    with serialization.reusing({"f": earlier}):
        assert serialization.earlier_export("f", traced) is earlier
        assert serialization.earlier_export("f", trace(3)) is earlier
        assert serialization.earlier_export("f", trace(4)) is None  # other types
        assert serialization.earlier_export("g", traced) is None
    assert serialization.earlier_export("f", traced) is None
