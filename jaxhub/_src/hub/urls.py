"""The canonical form of a URL handle: what names a module, without the credentials.

A signed URL (S3, GCS, Azure, CloudFront, a bearer token in the query) carries secrets
that change with every signature but do not change which file it names. The canonical
form drops them, together with ``user:password@`` and the ``#fragment``, and keeps every
other query parameter (``?version=2``, ``?versionId=…`` do name different files). The cache
key, the entry's directory and lock names, its record, log lines and ``jaxhub cache ls``
use only the canonical form, so secrets never reach the disk, and two signatures of the
same file share one cache entry. A server that passes a secret in a parameter not listed
here needs it named in ``JAXHUB_URL_SECRET_PARAMS``.
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterable

# Lowercase names of query parameters that carry credentials, not identity.
SECRET_PARAMS = frozenset({
    # Generic tokens and keys.
    "token", "access_token", "id_token", "auth", "authorization", "apikey", "api_key",
    "api-key", "password", "secret", "signature", "sig", "expires", "expiry",
    # AWS query signing (V2) and CloudFront signed URLs.
    "awsaccesskeyid", "policy", "key-pair-id", "x-amz-security-token",
    # Azure shared access signatures.
    "sv", "ss", "srt", "sp", "se", "st", "spr", "sr", "si", "skoid", "sktid", "skt", "ske",
    "sks", "skv", "sdd",
    # Google Cloud Storage V2 signing.
    "googleaccessid",
})
# AWS SigV4 (`X-Amz-Signature`, `X-Amz-Credential`, ...) and GCS V4 (`X-Goog-...`).
SECRET_PREFIXES = ("x-amz-", "x-goog-")


def is_secret_param(name: str, extra: Iterable[str] = ()) -> bool:
    """Whether query parameter ``name`` carries a credential (case-insensitive)."""
    lowered = name.lower()
    return (lowered in SECRET_PARAMS or lowered.startswith(SECRET_PREFIXES)
            or lowered in extra)


def canonical_url(url: str, secret_params: Iterable[str] = ()) -> str:
    """Returns ``url`` without credentials: userinfo, fragment and secret query parameters.

    Strings that are not http(s) URLs are returned unchanged.

    Args:
      url: A handle.
      secret_params: Extra lowercase parameter names to drop (``JAXHUB_URL_SECRET_PARAMS``).

    Returns:
      The canonical handle; safe to write to disk and to logs.

    Examples:
      >>> canonical_url("https://b.s3.amazonaws.com/m.tar.gz?versionId=3&X-Amz-Signature=ab")
      'https://b.s3.amazonaws.com/m.tar.gz?versionId=3'
      >>> canonical_url("https://user:pw@host/m.tgz#x")
      'https://host/m.tgz'
    """
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:  # not a URL anything could fetch; keep nothing after the path
        return url.split("?", 1)[0].split("#", 1)[0]
    if parts.scheme.lower() not in ("http", "https"):
        return url
    extra = frozenset(secret_params)
    pairs = urllib.parse.parse_qsl(parts.query, keep_blank_values=True)
    kept = [(name, value) for name, value in pairs if not is_secret_param(name, extra)]
    # Rebuild the query only when something was dropped, so plain URLs stay as typed.
    query = parts.query if len(kept) == len(pairs) else urllib.parse.urlencode(kept)
    netloc = parts.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, ""))


def has_credentials(url: str, secret_params: Iterable[str] = ()) -> bool:
    """Whether ``url`` carries anything ``canonical_url`` drops."""
    return canonical_url(url, secret_params) != url


def url_problem(url: str) -> str | None:
    """Why ``url`` is not an http(s) URL that a download can use, or None when it is.

    What urllib would report only deep inside a connection attempt, or as a bare
    ``ValueError`` or ``UnicodeError``: a malformed host or port, no host, a host name
    that DNS cannot carry, spaces or control characters, another scheme.

    Examples:
      >>> url_problem("https://example.com/m.tar.gz") is None
      True
      >>> url_problem("ftp://example.com/m.tar.gz")
      "its scheme is 'ftp'; jaxhub downloads over http and https only"
    """
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 (parsing the port validates it)
    except ValueError as e:
        return str(e)
    if parts.scheme.lower() not in ("http", "https"):
        return (f"its scheme is {parts.scheme.lower()!r}; jaxhub downloads over http and "
                "https only")
    if not parts.hostname:
        return "it names no host"
    if any(c.isspace() or ord(c) < 32 for c in url):
        return "it holds spaces or control characters; percent-encode them (%20)"
    try:
        parts.hostname.encode("idna")
    except UnicodeError:
        return (f"its host name {parts.hostname[:80]!r} has an empty label or one longer "
                "than 63 characters")
    return None
