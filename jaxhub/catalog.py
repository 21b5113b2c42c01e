"""Publishing and discovery: module repositories that any static web server can host.

``publish`` packs a module into a repository as ``<org>/<model>/<N>.tar.gz`` with its
metadata and updates ``index.json``; ``build_catalog`` writes a browsable static site
beside it; ``search`` finds modules by reading ``index.json``. ``jaxhub.load`` reads
``http://host/<org>/<model>/<N>`` (or ``.../latest``) through a repository's index,
checking the archive's sha256 (``RepositoryResolver``, registered by ``import jaxhub``).
"""

from jaxhub._src.catalog.publish import Published as Published
from jaxhub._src.catalog.publish import publish as publish
from jaxhub._src.catalog.publish import reindex as reindex
from jaxhub._src.catalog.resolver import RepositoryResolver as RepositoryResolver
from jaxhub._src.catalog.search import SearchResult as SearchResult
from jaxhub._src.catalog.search import search as search
from jaxhub._src.catalog.site import build_catalog as build_catalog

__all__ = (
    "Published",
    "RepositoryResolver",
    "SearchResult",
    "build_catalog",
    "publish",
    "reindex",
    "search",
)
