"""Publishing and discovery: module repositories that any static web server can host.

`publish` packs a module into a repository as `<org>/<model>/<N>.tar.gz` with its metadata
and updates `index.json`; `build_catalog` writes a browsable static site beside it;
`search` finds modules by reading `index.json`. Importing this package registers the
resolver that lets `jaxhub.load("http://host/<org>/<model>/<N>")` (or `.../latest`)
find archives through a repository's index, checking their sha256.
"""

from jaxhub.catalog.publish import Published as Published
from jaxhub.catalog.publish import publish as publish
from jaxhub.catalog.publish import reindex as reindex
from jaxhub.catalog.publish import upgrade as upgrade
from jaxhub.catalog.resolver import RepositoryResolver as RepositoryResolver
from jaxhub.catalog.search import SearchResult as SearchResult
from jaxhub.catalog.search import search as search
from jaxhub.catalog.site import build_catalog as build_catalog
from jaxhub.hub import register_resolver as _register_resolver

_register_resolver(RepositoryResolver())
