"""Flax support: ``from_flax`` and ``HubLayer`` for ``flax.nnx`` and ``flax.linen``."""
