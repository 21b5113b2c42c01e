"""A module applies like its publisher's functions, before and after export and load."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import jaxhub
from tests.conftest import double, l2, make_mlp_module, mlp, mlp_params, mlp_train

ATOL = 1e-5


def assert_trees_close(a, b, atol=ATOL):
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, atol=atol, rtol=1e-5), a, b)


class TestApply:

    def test_default_signature_matches_the_function(self, mlp_module, x):
        np.testing.assert_allclose(mlp_module(x), mlp(mlp_params(), x), atol=ATOL)

    def test_named_signature_with_dict_inputs(self, mlp_module, x):
        out = mlp_module({"a": x}, signature="double", as_dict=True)
        assert set(out) == {"doubled", "total"}
        assert_trees_close(out, double(mlp_params(), {"a": x}))

    def test_several_outputs_without_default_come_as_a_dict(self, mlp_module, x):
        # As a TF2 SavedModel's signature: the dict, ready to feed a signature taking
        # those names (``encoder(preprocess(strings))``).
        out = mlp_module({"a": x}, signature="double")
        assert set(out) == {"doubled", "total"}
        assert_trees_close(out, double(mlp_params(), {"a": x}))

    def test_batch_size_is_symbolic(self, mlp_module):
        for batch in (1, 3, 17):
            x = jnp.ones((batch, 50))
            assert mlp_module(x).shape == (batch, 10)

    def test_apply_under_jit_matches(self, mlp_module, x):
        params = mlp_module.params
        out = jax.jit(lambda p, x: mlp_module.apply(p, x))(params, x)
        np.testing.assert_allclose(out, mlp(mlp_params(), x), atol=ATOL)

    def test_signatures_and_variants_are_described(self, mlp_module):
        sig = mlp_module.signatures["default"]
        assert sig.inputs["default"] == jaxhub.TensorSpec(["batch", 50], "float32")
        assert sig.outputs["default"] == jaxhub.TensorSpec(["batch", 10], "float32")
        assert set(mlp_module.signatures) == {"default", "double"}
        assert mlp_module.variants == (frozenset(), frozenset({"train"}))
        assert mlp_module.get_attached_message("task") == "regression"
        assert "default(default: float32[batch, 50])" in repr(mlp_module)


class TestTrainVariant:

    def test_matches_the_train_function_with_the_same_key(self, mlp_module, x):
        key = jax.random.key(7)
        out, state = mlp_module(x, tags={"train"}, rng=key)
        ref_out, ref_state = mlp_train(mlp_params(), x, key)
        np.testing.assert_allclose(out, ref_out, atol=ATOL)
        assert_trees_close(state, ref_state)

    def test_dropout_follows_the_key(self, mlp_module, x):
        a, _ = mlp_module(x, tags="train", rng=jax.random.key(1))
        b, _ = mlp_module(x, tags="train", rng=jax.random.key(1))
        c, _ = mlp_module(x, tags="train", rng=jax.random.key(2))
        np.testing.assert_array_equal(a, b)
        assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e-3

    def test_state_merges_back_into_params(self, mlp_module, x):
        _, state = mlp_module(x, tags="train", rng=jax.random.key(1))
        merged = jaxhub.merge_params(mlp_module.params, state)
        np.testing.assert_array_equal(merged["stats"]["mean"], state["stats"]["mean"])
        np.testing.assert_array_equal(merged["dense1"]["kernel"],
                                      mlp_module.params["dense1"]["kernel"])
        assert np.abs(np.asarray(merged["stats"]["mean"])).max() > 0

    def test_missing_rng_is_an_error(self, mlp_module, x):
        with pytest.raises(jaxhub.SignatureError, match="rng"):
            mlp_module(x, tags="train")

    def test_variant_without_randomness_takes_no_key(self, x):
        module = jaxhub.create_module(
            mlp_params(), {"default": (mlp, jaxhub.TensorSpec([None, 50]))},
            variants={"train": lambda p, x, rng: (mlp(p, x), {})})
        out, state = module(x, tags="train")
        np.testing.assert_allclose(out, mlp(mlp_params(), x), atol=ATOL)
        assert state == {}


class TestFineTuning:

    def loss(self, apply, params, x):
        return jnp.mean((apply(params, x) - 1.0) ** 2)

    def test_gradient_matches_the_original_function(self, mlp_module, x):
        grads = jax.grad(self.loss, 1)(mlp_module.apply, mlp_module.params, x)
        ref = jax.grad(self.loss, 1)(mlp, mlp_params(), x)
        assert_trees_close({k: grads[k] for k in ("dense1", "dense2")},
                           {k: ref[k] for k in ("dense1", "dense2")})

    def test_non_trainable_params_get_no_gradient(self, mlp_module, x):
        def loss(params):  # the new statistics depend on the old ones inside the module
            out, state = mlp_module.apply(params, x, tags="train", rng=jax.random.key(0))
            return jnp.sum(out) + jnp.sum(state["stats"]["mean"])

        grads = jax.grad(loss)(mlp_module.params)
        np.testing.assert_array_equal(grads["stats"]["mean"], 0.0)
        assert np.abs(np.asarray(grads["dense1"]["kernel"])).max() > 0
        assert mlp_module.trainable_mask == {
            "dense1": {"bias": True, "kernel": True}, "dense2": {"bias": True, "kernel": True},
            "scale": True, "stats": {"mean": False}}

    def test_regularization_loss_and_its_gradient(self, mlp_module):
        params = mlp_module.params
        np.testing.assert_allclose(mlp_module.regularization_loss(), l2(mlp_params()),
                                   rtol=1e-5)
        assert_trees_close(jax.grad(mlp_module.regularization_loss)(params)["dense1"],
                           jax.grad(l2)(mlp_params())["dense1"])

    def test_optax_fine_tuning_lowers_the_loss_and_exports(self, mlp_module, x, tmp_path):
        optimizer = optax.masked(optax.adamw(1e-2), mlp_module.trainable_mask)
        params = mlp_module.params
        state = optimizer.init(params)
        step = jax.jit(lambda p, s: self._step(mlp_module, optimizer, p, s, x))
        first = None
        for _ in range(30):
            params, state, loss = step(params, state)
            first = loss if first is None else first
        assert loss < 0.5 * first
        np.testing.assert_array_equal(params["stats"]["mean"], mlp_module.params["stats"]["mean"])
        reloaded = jaxhub.load(mlp_module.export(tmp_path / "tuned", params=params))
        np.testing.assert_allclose(reloaded(x), mlp(params, x), atol=ATOL)
        assert np.abs(np.asarray(reloaded(x)) - np.asarray(mlp_module(x))).max() > 1e-2

    def _step(self, module, optimizer, params, state, x):
        loss, grads = jax.value_and_grad(
            lambda p: self.loss(module.apply, p, x) + module.regularization_loss(p))(params)
        updates, state = optimizer.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss


class TestVmap:

    def test_vmap_over_examples_matches(self, mlp_module):
        xs = jax.random.normal(jax.random.key(1), (3, 5, 50))
        out = jax.vmap(mlp_module)(xs)
        np.testing.assert_allclose(out, jax.vmap(lambda x: mlp(mlp_params(), x))(xs), atol=ATOL)

    def test_vmap_over_params_matches(self, mlp_module, x):
        stacked = jax.tree.map(lambda a, b: jnp.stack([a, b]), mlp_params(0), mlp_params(1))
        out = jax.vmap(lambda p: mlp_module.apply(p, x))(stacked)
        ref = jax.vmap(lambda p: mlp(p, x))(stacked)
        np.testing.assert_allclose(out, ref, atol=ATOL)

    def test_per_example_gradients(self, mlp_module):
        xs = jax.random.normal(jax.random.key(1), (3, 2, 50))

        def grad_of(apply):
            return jax.vmap(jax.grad(lambda p, x: jnp.sum(apply(p, x) ** 2)), (None, 0))

        grads = grad_of(mlp_module.apply)(mlp_module.params, xs)
        ref = grad_of(mlp)(mlp_params(), xs)
        assert_trees_close(grads["dense2"], ref["dense2"], atol=1e-4)


class TestExportAndLoad:

    def test_directory_layout(self, mlp_dir):
        names = {p.relative_to(mlp_dir).as_posix() for p in mlp_dir.rglob("*") if p.is_file()}
        assert "jaxhub_module.json" in names
        assert "functions/inference/default.jaxexport" in names
        assert "functions/train/default.jaxexport" in names
        assert "functions/regularizer.jaxexport" in names
        assert any(n.startswith("params/") for n in names)
        manifest = json.loads((mlp_dir / "jaxhub_module.json").read_text())
        assert manifest["format_version"] == 1
        assert manifest["written_by"]["jax"] == jax.__version__

    def test_loaded_module_matches_in_a_fresh_process(self, mlp_dir, x, tmp_path):
        """The consumer imports only jaxhub: not the functions that made the module."""
        np.save(tmp_path / "x.npy", np.asarray(x))
        script = textwrap.dedent(f"""
            import sys, jax, jax.numpy as jnp, numpy as np, jaxhub
            m = jaxhub.load({str(mlp_dir)!r})
            x = jnp.asarray(np.load({str(tmp_path / 'x.npy')!r}))
            y = m(x)
            g = jax.grad(lambda p: jnp.mean((m.apply(p, x) - 1.0) ** 2))(m.params)
            t, _ = m(x, tags="train", rng=jax.random.key(7))
            assert not any(name.startswith(("tests", "flax")) for name in sys.modules)
            np.savez({str(tmp_path / 'out.npz')!r}, y=y, g=g["dense1"]["kernel"], t=t)
        """)
        subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
        out = np.load(tmp_path / "out.npz")
        params = mlp_params()
        np.testing.assert_allclose(out["y"], mlp(params, x), atol=ATOL)
        ref_g = jax.grad(lambda p: jnp.mean((mlp(p, x) - 1.0) ** 2))(params)
        np.testing.assert_allclose(out["g"], ref_g["dense1"]["kernel"], atol=ATOL)
        np.testing.assert_allclose(out["t"], mlp_train(params, x, jax.random.key(7))[0],
                                   atol=ATOL)

    def test_signatures_of_one_function_share_its_files(self, x, tmp_path):
        spec = jaxhub.TensorSpec([None, 50])
        twice = lambda p, x: 2.0 * mlp(p, x)  # noqa: E731
        module = jaxhub.create_module(mlp_params(), {"a": (mlp, spec), "b": (mlp, spec),
                                                     "twice": (twice, spec)})
        files = {f.signature_name: f.files for f in module.manifest.functions}
        assert files["a"] == files["b"] and files["a"] != files["twice"]
        loaded = jaxhub.load(module.export(tmp_path / "m"))
        stored = {p.name for p in (tmp_path / "m" / "functions" / "inference").glob("*")}
        assert stored == {"a.jaxexport", "a.stablehlo", "twice.jaxexport",
                          "twice.stablehlo", "vjp"}
        for name, fn in (("a", mlp), ("b", mlp), ("twice", twice)):
            np.testing.assert_allclose(loaded(x, signature=name), fn(mlp_params(), x),
                                       atol=ATOL)
        grads = [jax.grad(lambda p, s=s: jnp.sum(loaded.apply(p, x, signature=s)))(
            loaded.params) for s in ("a", "b")]
        assert_trees_close(grads[0], grads[1])

    def test_export_refuses_a_non_empty_directory(self, mlp_module, tmp_path):
        (tmp_path / "taken").mkdir()
        (tmp_path / "taken" / "file").write_text("keep me")
        with pytest.raises(FileExistsError):
            mlp_module.export(tmp_path / "taken")
        assert (tmp_path / "taken" / "file").read_text() == "keep me"

    def test_assets_and_model_card_travel_with_the_module(self, tmp_path, x):
        (tmp_path / "vocab.txt").write_text("a\nb\n")
        (tmp_path / "card.md").write_text("# MLP\n")
        module = make_mlp_module(assets={"vocab.txt": tmp_path / "vocab.txt",
                                         "README.md": tmp_path / "card.md"})
        loaded = jaxhub.load(module.export(tmp_path / "m"))
        assert loaded.assets["vocab.txt"].read_text() == "a\nb\n"
        assert (tmp_path / "m" / "README.md").read_text() == "# MLP\n"
        np.testing.assert_allclose(loaded(x), module(x), atol=ATOL)

    def test_assets_given_as_bytes_are_written_on_export(self, tmp_path):
        module = make_mlp_module(assets={"models/tok.model": b"\x00\x01binary"})
        assert module.assets["models/tok.model"] == b"\x00\x01binary"
        loaded = jaxhub.load(module.export(tmp_path / "m"))
        assert loaded.assets["models/tok.model"].read_bytes() == b"\x00\x01binary"

    def test_params_of_other_containers_keep_their_structure(self, x):
        params = [{"w": jnp.ones((50, 3))}, {"w": jnp.full((3, 2), 0.5)}]
        module = jaxhub.create_module(
            params, {"default": (lambda p, x: x @ p[0]["w"] @ p[1]["w"],
                                 jaxhub.TensorSpec([None, 50]))})
        assert set(module.params) == {"0", "1"}
        np.testing.assert_allclose(module(x), x @ params[0]["w"] @ params[1]["w"], rtol=1e-5)


class TestModuleIsAValue:
    """A module is a pytree: params as leaves, a static, hashable description as aux data."""

    def test_crosses_jit_as_an_argument(self, mlp_module, x):
        calls = []

        @jax.jit
        def apply(module, x):
            calls.append(1)
            return module(x)

        np.testing.assert_allclose(apply(mlp_module, x), mlp_module(x), atol=ATOL)
        doubled = jax.tree.map(lambda p: 2 * p, mlp_module)
        apply(doubled, x)
        assert len(calls) == 1  # same description: the compiled call is reused

    def test_leaves_are_the_params_and_tree_map_keeps_the_description(self, mlp_module):
        leaves = jax.tree.leaves(mlp_module)
        assert len(leaves) == len(jax.tree.leaves(mlp_module.params))
        zeroed = jax.tree.map(jnp.zeros_like, mlp_module)
        assert isinstance(zeroed, jaxhub.Module)
        assert zeroed.definition is mlp_module.definition
        assert all(float(jnp.abs(p).sum()) == 0 for p in jax.tree.leaves(zeroed.params))
        assert hash(zeroed.definition) == hash(mlp_module.definition)

    def test_grad_with_respect_to_the_module(self, mlp_module, x):
        grads = jax.grad(lambda m: jnp.sum(m(x)))(mlp_module)
        expected = jax.grad(lambda p: jnp.sum(mlp_module.apply(p, x)))(mlp_module.params)
        assert_trees_close(grads.params, expected)


def test_a_function_jax_cannot_differentiate_is_stored_forward_only(tmp_path):
    def spectrum(params, x):   # no JVP rule for full-matrices SVD
        return jnp.linalg.svd(x * params["scale"], full_matrices=True)[1]

    with pytest.warns(UserWarning, match="signature 'default' is stored forward-only"):
        module = jaxhub.create_module({"scale": jnp.ones(())},
                                      {"default": (spectrum, jaxhub.TensorSpec([None, 3, 2]))})
    x = np.random.default_rng(0).standard_normal((2, 3, 2)).astype(np.float32)
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    for m in (module, loaded):
        np.testing.assert_allclose(jax.jit(m)(x), np.linalg.svd(x, compute_uv=False),
                                   rtol=1e-5)
        with pytest.raises(jaxhub.SignatureError, match="signature 'default' is forward-only"
                                                        ".*JVP not implemented"):
            jax.grad(lambda p: jnp.sum(m.apply(p, x)))(m.params)
    assert "forward-only" in repr(loaded)


def test_a_module_created_without_gradients_runs_and_names_the_fix(tmp_path, x):
    module = make_mlp_module(gradients=False)
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    manifest = json.loads((tmp_path / "m" / "jaxhub_module.json").read_text())
    assert manifest["gradients"] is False and not list((tmp_path / "m").rglob("vjp"))
    upgraded = jaxhub.upgrade(tmp_path / "m", tmp_path / "upgraded")  # lowered anew
    for m in (module, loaded, upgraded):
        assert all(f.vjp is None and f.forward_only is None for f in m.manifest.functions)
        np.testing.assert_allclose(jax.jit(m)(x), mlp(mlp_params(), x), atol=ATOL)
        with pytest.raises(jaxhub.SignatureError, match="signature 'default' has no gradient"
                                                        ".*written without gradients.*"
                                                        "jaxhub convert"):
            jax.grad(lambda p: jnp.sum(m.apply(p, x)))(m.params)
        # The regularizer keeps its gradient: fine-tuning a head over it still works.
        assert_trees_close(jax.grad(m.regularization_loss)(m.params)["dense1"],
                           jax.grad(l2)(mlp_params())["dense1"])
        assert "gradients=None" in repr(m)


def test_a_module_without_gradients_differentiates_through_its_copy_with_them(
        tmp_path, mlp_module, mlp_dir, x):
    from jaxhub._src import loading
    fetched = []
    module = loading.read(make_mlp_module(gradients=False).export(tmp_path / "m"),
                          gradients=lambda: fetched.append(mlp_dir) or mlp_dir)
    assert "gradients='on first use'" in repr(module)
    np.testing.assert_allclose(module(x), mlp_module(x), atol=ATOL)
    assert fetched == []  # inference never asks for the copy
    expected = jax.grad(lambda p: jnp.sum(mlp_module.apply(p, x)))(mlp_module.params)
    grads = jax.jit(jax.grad(lambda p: jnp.sum(module.apply(p, x))))(module.params)
    assert_trees_close(grads, expected)
    key = jax.random.key(3)

    def train_loss(m, p):
        outputs, state = m.apply(p, x, tags="train", rng=key)
        return jnp.sum(outputs) + jnp.sum(state["stats"]["mean"])

    assert_trees_close(jax.grad(lambda p: train_loss(module, p))(module.params),
                       jax.grad(lambda p: train_loss(mlp_module, p))(mlp_module.params))
    per_example = jax.vmap(jax.grad(lambda p, xi: jnp.sum(module.apply(p, xi[None]))),
                           in_axes=(None, 0))(module.params, x)
    assert_trees_close(jax.tree.map(lambda g: g.sum(0), per_example), expected)
    assert fetched == [mlp_dir]  # read once, for every gradient
    # Exported, it is the module with gradients: split VJPs a publisher ships.
    exported = jaxhub.load(module.export(tmp_path / "published"))
    assert all(f.vjp is not None for f in exported.manifest.functions)


def test_a_copy_with_gradients_of_another_module_is_refused(tmp_path, x):
    from jaxhub._src import loading
    other = jaxhub.create_module(mlp_params(), {"default": (
        mlp, jaxhub.TensorSpec([None, 50]))}).export(tmp_path / "other")
    module = loading.read(make_mlp_module(gradients=False).export(tmp_path / "m"),
                          gradients=lambda: other)
    with pytest.raises(jaxhub.SignatureError, match="does not take and return what the "
                                                    "loaded module does"):
        jax.grad(lambda p: jnp.sum(module.apply(p, x)))(module.params)


def test_a_function_some_platforms_cannot_run_is_exported_for_the_others(tmp_path):
    # JAX's general eigendecomposition lowers on CPUs only: no rule for TPUs, and GPU
    # library calls without a compatibility guarantee.
    def eigenvalues(params, x):
        return jnp.sort(jnp.real(jnp.linalg.eigvals(x * params["scale"])), axis=-1)

    with pytest.warns(UserWarning, match=r"exported for \['cpu'\] only"):
        module = jaxhub.create_module({"scale": jnp.ones(())},
                                      {"default": (eigenvalues, jaxhub.TensorSpec([None, 3, 3]))})
    x = np.random.default_rng(0).standard_normal((2, 3, 3)).astype(np.float32)
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    expected = np.sort(np.linalg.eigvals(x).real, axis=-1)
    for m in (module, loaded):
        file = m.manifest.function(frozenset(), "default").file
        assert m.functions[file].platforms == ("cpu",)
        np.testing.assert_allclose(jax.jit(m)(x), expected, rtol=1e-4, atol=1e-5)


def test_a_function_exported_for_other_platforms_says_where_it_runs():
    module = jaxhub.create_module({"w": jnp.ones(3)}, {"default": (
        lambda p, x: x * p["w"], jaxhub.TensorSpec([None, 3]))}, platforms=("tpu",))
    with pytest.raises(jaxhub.SignatureError, match=r"signature 'default' was exported for "
                                                    r"\['tpu'\] only and cannot run on"):
        module(np.ones((2, 3), np.float32))


def test_signatures_that_draw_random_numbers_or_assign_params(tmp_path):
    def noisy(params, x, rng):
        return x + params["scale"] * jax.random.normal(rng, x.shape)

    def count(params, x, rng):   # declared with_rng, but draws nothing: asks for no key
        n = params["seen"] + x.shape[0]
        return {"n": n}, {"seen": n}

    spec = jaxhub.TensorSpec([None, 2])
    module = jaxhub.create_module(
        {"scale": jnp.float32(0.5), "seen": jnp.float32(0)},
        {"noisy": (noisy, spec), "count": (count, spec)},
        with_rng=["noisy", "count"], with_state=["count"])
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    x = jnp.ones((3, 2))
    for m in (module, loaded):
        key = jax.random.key(7)
        expected = x + 0.5 * jax.random.normal(key, x.shape)
        np.testing.assert_allclose(jax.jit(lambda x, k: m(x, signature="noisy", rng=k))(x, key),
                                   expected, rtol=1e-6)
        with pytest.raises(jaxhub.SignatureError, match="rng=jax.random.key"):
            m(x, signature="noisy")
        outputs, state = m(x, signature="count")
        assert float(outputs) == 3.0 and float(state["seen"]) == 3.0
        assert m.manifest.function(frozenset(), "count").takes_rng is False


def test_each_function_is_traced_once_for_its_export_and_its_gradient(tmp_path, x):
    # A converted model's function interprets a whole source graph each time it runs in
    # Python: the forward export and both halves of the split VJP share one trace.
    runs = {"plain": 0, "noisy": 0}

    def plain(params, x):
        runs["plain"] += 1
        return mlp(params, x)

    def noisy(params, x, rng):
        runs["noisy"] += 1
        return mlp(params, x) + jax.random.normal(rng, (x.shape[0], 1))

    spec = jaxhub.TensorSpec([None, 50])
    module = jaxhub.create_module(mlp_params(), {"plain": (plain, spec),
                                                 "noisy": (noisy, spec)},
                                  with_rng=["noisy"])
    assert runs == {"plain": 1, "noisy": 1}
    assert all(f.vjp is not None for f in module.manifest.functions)
    loaded = jaxhub.load(module.export(tmp_path / "m"))
    np.testing.assert_allclose(loaded(x, signature="plain"), mlp(mlp_params(), x), atol=ATOL)
    grad = jax.grad(lambda p: jnp.sum(loaded.apply(p, x, signature="plain")))(loaded.params)
    assert_trees_close(grad, jax.grad(lambda p: jnp.sum(mlp(p, x)))(mlp_params()))
