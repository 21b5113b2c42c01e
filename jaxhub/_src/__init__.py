"""jaxhub's implementation. Nothing here is public API: import from ``jaxhub``,
``jaxhub.hub``, ``jaxhub.catalog``, ``jaxhub.nnx``, ``jaxhub.linen``,
``jaxhub.common_signatures`` or ``jaxhub.extend`` instead."""
