"""Unknown input sizes: each gets a symbol of its own unless the function ties it to
another, and then they share one (``batch`` for most inputs' leading sizes)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxhub
from jaxhub._src.sizes import UnknownSizes


def _shapes(specs) -> dict[str, tuple]:
    return {k: s.shape for k, s in specs.items()}


def _module(fn, specs, **kwargs):
    return jaxhub.create_module({"w": jnp.ones(3)}, {"default": (fn, specs)}, **kwargs)


def _inputs(module) -> dict[str, tuple]:
    return _shapes(module.signatures["default"].inputs)


def test_each_unknown_size_starts_with_a_symbol_of_its_own():
    sizes = UnknownSizes({"ids": jaxhub.TensorSpec([None, None], "int32"),
                          "mask": jaxhub.TensorSpec([None, "seq"], "int32"),
                          "row_splits.0": jaxhub.TensorSpec([None], "int32")})
    assert _shapes(sizes.named()) == {"ids": ("batch", "d1"), "mask": ("n_mask", "seq"),
                                      "row_splits.0": ("n_row_splits_0",)}
    assert sizes.tie("d1", "seq") and sizes.tie("batch", "n_mask")
    assert _shapes(sizes.named()) == {"ids": ("batch", "seq"), "mask": ("batch", "seq"),
                                      "row_splits.0": ("n_row_splits_0",)}
    assert not sizes.tie("batch", "n_mask")  # already tied
    # The largest group of leading sizes is the batch.
    assert sizes.tie("n_row_splits_0", "batch")
    assert set(sizes.named()["row_splits.0"].shape) == {"batch"}


def test_named_sizes_keep_their_names_and_are_never_tied_to_each_other():
    sizes = UnknownSizes({"x": jaxhub.TensorSpec(["a", None]),
                          "y": jaxhub.TensorSpec(["b", None])})
    assert not sizes.tie("a", "b")
    assert sizes.tie("d2", "a")
    assert _shapes(sizes.named()) == {"x": ("a", "d1"), "y": ("b", "a")}


def test_unrelated_inputs_take_any_sizes():
    def stack(params, xs):
        return {"rows": jnp.concatenate([xs["a"], xs["b"]]) * params["w"],
                "a": xs["a"] * 2.0}

    module = _module(stack, {"a": jaxhub.TensorSpec([None, 3]),
                             "b": jaxhub.TensorSpec([None, 3])})
    assert _inputs(module) == {"a": ("batch", 3), "b": ("n_b", 3)}
    outputs = module.signatures["default"].outputs
    assert outputs["rows"].shape == ("n_b + batch", 3) and outputs["a"].shape == ("batch", 3)
    a, b = np.ones((2, 3), np.float32), np.arange(15, dtype=np.float32).reshape(5, 3)
    expected = np.concatenate([a, b])
    np.testing.assert_array_equal(module({"a": a, "b": b})["rows"], expected)
    np.testing.assert_array_equal(jax.jit(lambda x: module(x))({"a": b, "b": a})["rows"],
                                  np.concatenate([b, a]))
    grad = jax.grad(lambda x: jnp.sum(module(x)["rows"] ** 2))({"a": a, "b": b})
    np.testing.assert_array_equal(grad["b"], 2 * b)
    # vmap over b alone folds into its own symbol; over both, each call is mapped.
    bs = np.stack([b, b + 1])
    got = jax.vmap(lambda b: module({"a": a, "b": b})["rows"])(bs)
    np.testing.assert_array_equal(got[1], np.concatenate([a, b + 1]))
    got = jax.vmap(lambda a, b: module({"a": a, "b": b})["rows"])(np.stack([a, a]), bs)
    np.testing.assert_array_equal(got[1], np.concatenate([a, b + 1]))


def test_tied_inputs_share_the_batch_and_must_agree():
    module = _module(lambda p, xs: xs["x"] + xs["y"] * p["w"],
                     {"x": jaxhub.TensorSpec([None, 3]), "y": jaxhub.TensorSpec([None, 3])})
    assert _inputs(module) == {"x": ("batch", 3), "y": ("batch", 3)}
    with pytest.raises(jaxhub.SignatureError, match=r"input 'y' has batch=4 on axis 0, but "
                       r"input 'x' has batch=2"):
        module({"x": np.ones((2, 3), np.float32), "y": np.ones((4, 3), np.float32)})


def test_one_input_is_traced_once_and_tied_inputs_once_more_per_tie():
    calls = []

    def count(fn):
        def counted(params, xs):
            calls.append(1)
            return fn(params, xs)
        return counted

    _module(count(lambda p, x: x * p["w"]), jaxhub.TensorSpec([None, 3]))
    assert len(calls) == 1
    calls.clear()
    _module(count(lambda p, xs: xs["x"] + xs["y"] + xs["z"]),
            {k: jaxhub.TensorSpec([None, 3]) for k in "xyz"})
    assert len(calls) == 3  # two ties, then the trace that exports


def test_a_function_that_cannot_be_traced_fails_after_a_few_traces():
    calls = []

    def broken(params, xs):
        calls.append(1)
        total = sum(xs.values())  # ties every size
        raise ValueError(f"no way to compute {total.shape}")

    with pytest.raises(ValueError, match=r"no way to compute \(batch, 3\)"):
        _module(broken, {k: jaxhub.TensorSpec([None, 3]) for k in "abcdef"})
    assert len(calls) == 6  # five ties, then the error

    calls.clear()
    with pytest.raises(ValueError, match="no way"):
        _module(lambda p, xs: broken(p, {"a": xs["a"]}),
                {k: jaxhub.TensorSpec([None, 3]) for k in "abcdef"})
    assert len(calls) == 2  # the error; the leading sizes tied, the same error


def test_a_variant_starts_from_its_signatures_ties():
    calls = []

    def train(params, xs, rng):
        calls.append(1)
        return xs["x"] + xs["y"] + jax.random.normal(rng, (3,)), {}

    module = jaxhub.create_module(
        {"w": jnp.ones(3)},
        {"default": (lambda p, xs: xs["x"] + xs["y"],
                     {"x": jaxhub.TensorSpec([None, 3]), "y": jaxhub.TensorSpec([None, 3])})},
        variants={"train": train})
    assert len(calls) == 1
    spec = module.manifest.function(frozenset({"train"}), "default")
    assert _shapes(spec.signature.inputs) == {"x": ("batch", 3), "y": ("batch", 3)}


def test_later_axes_tie_too():
    module = _module(lambda p, x: x + x.T, jaxhub.TensorSpec([None, None]))
    assert _inputs(module) == {"default": ("batch", "batch")}
    x = np.arange(9, dtype=np.float32).reshape(3, 3)
    np.testing.assert_array_equal(module(x), x + x.T)


def test_an_unknown_size_tied_to_a_named_one_takes_its_name():
    module = _module(lambda p, xs: xs["x"] @ xs["y"],
                     {"x": jaxhub.TensorSpec([None, "k"]), "y": jaxhub.TensorSpec([None, 2])})
    assert _inputs(module) == {"x": ("batch", "k"), "y": ("k", 2)}


def test_a_function_that_ties_named_sizes_fails_to_trace():
    with pytest.raises(TypeError, match="incompatible shapes"):
        _module(lambda p, xs: xs["x"] + xs["y"],
                {"x": jaxhub.TensorSpec(["a", 3]), "y": jaxhub.TensorSpec(["b", 3])})


def test_symbols_survive_export_and_load(tmp_path):
    module = _module(lambda p, xs: {"rows": jnp.concatenate([xs["a"], xs["b"]])},
                     {"a": jaxhub.TensorSpec([None, 3]), "b": jaxhub.TensorSpec([None, 3])})
    module.export(tmp_path / "m")
    loaded = jaxhub.load(str(tmp_path / "m"))
    assert loaded.signatures == module.signatures
    a, b = np.ones((1, 3), np.float32), np.zeros((4, 3), np.float32)
    np.testing.assert_array_equal(loaded({"a": a, "b": b}), np.concatenate([a, b]))
    assert "n_b" in repr(loaded.signatures["default"])
