"""Params trees: nested dicts of arrays with string keys, addressed by paths.

A module stores its params as one nested dict; the manifest and the serialized functions
see them as a flat list of leaves in sorted path order.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax

Path = tuple[str, ...]


def flatten(tree: Any) -> list[tuple[Path, Any]]:
    """The leaves of ``tree`` with their paths, sorted by path.

    Keys become strings (list indices too), so trees from Flax or Haiku flatten the same
    way once stored.
    """
    paths, _ = paths_in_own_order(tree)
    leaves = jax.tree_util.tree_leaves(tree)
    return sorted(zip(paths, leaves), key=lambda item: item[0])


def paths_in_own_order(tree: Any) -> tuple[list[Path], jax.tree_util.PyTreeDef]:
    """The string paths of the leaves in ``tree``'s own flattening order, and its treedef.

    Raises:
      ValueError: two leaves get the same path once keys are strings.
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    paths = [tuple(_key_str(k) for k in path) for path, _ in leaves]
    if len(set(paths)) != len(paths):
        raise ValueError("params tree has two leaves at the same path once keys are strings")
    return paths, treedef


def unflatten(items: Iterable[tuple[Path, Any]]) -> dict[str, Any]:
    """Builds the nested dict that :func:`flatten` came from."""
    tree: dict[str, Any] = {}
    for path, leaf in items:
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = leaf
    return tree


def merge_params(params: Mapping[str, Any], updates: Mapping[str, Any]) -> dict[str, Any]:
    """``params`` with the leaves that ``updates`` holds replaced.

    Use it to fold the state a train variant returns (batch-norm statistics) back in.

    Examples:
      >>> params = {"dense": {"w": jnp.ones(2)}, "norm": {"mean": jnp.zeros(2)}}
      >>> state = {"norm": {"mean": jnp.ones(2)}}   # from a train variant: new statistics
      >>> jaxhub.merge_params(params, state)["norm"]["mean"]
      Array([1., 1.], dtype=float32)
    """
    merged = dict(params)
    for key, value in updates.items():
        if isinstance(value, Mapping):
            merged[key] = merge_params(params.get(key, {}), value)
        else:
            merged[key] = value
    return merged


def mask(params: Any, trainable: bool | Mapping[str, Any] | Callable[[Path, Any], bool]
         ) -> dict[str, Any]:
    """A nested dict of bools like ``params``: which leaves are trainable.

    Args:
      params: the params tree.
      trainable: ``True``/``False`` for every leaf, a tree of bools shaped like ``params``
        (leaves it lacks count as trainable), or ``fn(path, leaf) -> bool``.
    """
    items = flatten(params)
    if isinstance(trainable, bool):
        flags = [trainable] * len(items)
    elif callable(trainable):
        flags = [bool(trainable(path, leaf)) for path, leaf in items]
    else:
        given = dict(flatten(trainable))
        flags = [bool(given.get(path, True)) for path, _ in items]
    return unflatten((path, flag) for (path, _), flag in zip(items, flags))


def path_str(path: Path) -> str:
    return "/".join(path)


def _key_str(key: Any) -> str:
    for attr in ("key", "idx", "name"):
        if hasattr(key, attr):
            return str(getattr(key, attr))
    return str(key)
