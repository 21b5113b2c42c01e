"""A jaxhub module as a ``flax.nnx`` layer (``HubLayer``); see docs/training.md."""

from jaxhub._src.flax.nnx import HubLayer as HubLayer
from jaxhub._src.flax.nnx import HubState as HubState

__all__ = ("HubLayer", "HubState")
