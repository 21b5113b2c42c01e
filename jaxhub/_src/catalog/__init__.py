"""Publishing and discovery: module repositories that any static web server can host.

The public names are in :mod:``jaxhub.catalog``. This package's ``__init__`` imports
nothing, so that registering the repository resolver (``resolver``) does not import the
static-site builder.
"""
