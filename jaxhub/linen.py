"""A jaxhub module as a ``flax.linen`` layer (``HubLayer``); see docs/training.md."""

from jaxhub._src.flax.linen import HubLayer as HubLayer
from jaxhub._src.flax.linen import module_params as module_params

__all__ = ("HubLayer", "module_params")
