"""Streaming HTTP(S) downloads with progress, retries, resumption and clear errors.

Built on `urllib.request`, whose default opener follows redirects and takes proxies
from the standard `http_proxy` / `https_proxy` / `no_proxy` environment variables.
"""

from __future__ import annotations

import dataclasses
import hashlib
import http.client
import logging
import pathlib
import socket
import time
import urllib.error
import urllib.request

import tqdm

from jaxhub.hub.errors import DownloadError
from jaxhub.version import __version__

_log = logging.getLogger(__name__)
_CHUNK = 1 << 20
# Statuses worth another try: the server or a proxy may recover.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclasses.dataclass(frozen=True)
class Options:
    """How to download.

    Attributes:
        timeout: Seconds to wait to connect, and for each read of the body.
        retries: Extra attempts after a transient failure.
        backoff: Seconds before the first retry, doubled for each further one.
        progress: Show a tqdm progress bar on stderr.
        max_bytes: Abort when the body grows beyond this many bytes.
    """

    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    progress: bool = False
    max_bytes: int | None = None


@dataclasses.dataclass(frozen=True)
class Downloaded:
    """A finished download: where it is, its sha256 and size, and the URL that served it."""

    path: pathlib.Path
    sha256: str
    size: int
    url: str


class _Transient(Exception):
    """A failure that another attempt may not have."""


@dataclasses.dataclass
class _Partial:
    """Bytes received so far, kept across attempts so a retry can resume with Range."""

    path: pathlib.Path
    digest: hashlib._Hash = dataclasses.field(default_factory=hashlib.sha256)
    size: int = 0
    validator: str | None = None  # ETag or Last-Modified of the body being received

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.digest = hashlib.sha256()
        self.size = 0
        self.validator = None

    def resume_headers(self) -> dict[str, str]:
        if not (self.size and self.validator):
            return {}
        # If-Range: the server sends the rest only if the file is unchanged, else all of it,
        # so a resumed download never splices two versions together.
        return {"Range": f"bytes={self.size}-", "If-Range": self.validator}


def download(url: str, dest: pathlib.Path, options: Options = Options()) -> Downloaded:
    """Downloads `url` to `dest`, retrying transient failures with exponential backoff.

    A retry resumes where the previous attempt stopped when the server honours `Range`
    and starts over otherwise.

    Args:
        url: An http(s) URL.
        dest: File to write; created or truncated.
        options: Timeouts, retries, progress.

    Returns:
        The finished download.

    Raises:
        DownloadError: HTTP 4xx (other than 408/429), or still failing after the last retry.
    """
    partial = _Partial(dest)
    partial.restart()
    for attempt in range(options.retries + 1):
        try:
            final_url = _attempt(url, partial, options)
            return Downloaded(dest, partial.digest.hexdigest(), partial.size, final_url)
        except _Transient as e:
            if attempt == options.retries:
                raise DownloadError(
                    f"Downloading {url} failed after {attempt + 1} attempts: {e}") from e
            delay = options.backoff * 2**attempt
            _log.warning("Downloading %s: %s; retrying in %.1fs.", url, e, delay)
            time.sleep(delay)
    raise AssertionError("unreachable")


def _attempt(url: str, partial: _Partial, options: Options) -> str:
    headers = {"User-Agent": f"jaxhub/{__version__}", **partial.resume_headers()}
    request = urllib.request.Request(url, headers=headers)
    # A fresh opener reads the proxy variables now; urlopen's global one froze them at
    # its first use (proxy support: tensorflow/hub#53, #146).
    opener = urllib.request.build_opener(urllib.request.ProxyHandler())
    try:
        with opener.open(request, timeout=options.timeout) as response:
            if response.status != 206 and partial.size:
                partial.restart()  # no resume offered or the file changed: take it all again
            if partial.validator is None:
                partial.validator = (response.headers.get("ETag")
                                     or response.headers.get("Last-Modified"))
            _receive(response, partial, options)
            return response.url
    except urllib.error.HTTPError as e:
        if e.code == 416 and partial.size:
            partial.restart()
            raise _Transient("server refused to resume; starting over") from e
        if e.code in _TRANSIENT_STATUSES:
            raise _Transient(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason} for {url}{_hint(e.code)}") from e
    except (TimeoutError, socket.timeout) as e:
        raise _Transient(f"no data for {options.timeout:g}s (JAXHUB_DOWNLOAD_TIMEOUT)") from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise _Transient(
                f"no connection within {options.timeout:g}s (JAXHUB_DOWNLOAD_TIMEOUT)") from e
        raise _Transient(f"cannot connect: {e.reason}") from e
    except (http.client.HTTPException, ConnectionError) as e:
        raise _Transient(f"connection lost: {e!r}") from e


def _receive(response: http.client.HTTPResponse, partial: _Partial, options: Options) -> None:
    length = response.headers.get("Content-Length")
    expected = partial.size + int(length) if length is not None else None
    if options.max_bytes is not None and expected is not None and expected > options.max_bytes:
        raise DownloadError(f"{response.url} is {expected} bytes, more than the limit of "
                            f"{options.max_bytes} (JAXHUB_MAX_ARCHIVE_BYTES)")
    name = response.url.rsplit("/", 1)[-1].split("?", 1)[0] or "download"
    with tqdm.tqdm(total=expected, initial=partial.size, unit="B", unit_scale=True,
                   unit_divisor=1024, desc=name, disable=not options.progress,
                   leave=False) as bar, open(partial.path, "ab") as out:
        while chunk := response.read1(_CHUNK):
            out.write(chunk)
            partial.digest.update(chunk)
            partial.size += len(chunk)
            bar.update(len(chunk))
            if options.max_bytes is not None and partial.size > options.max_bytes:
                raise DownloadError(f"{response.url} exceeds the limit of {options.max_bytes} "
                                    f"bytes (JAXHUB_MAX_ARCHIVE_BYTES)")
    if expected is not None and partial.size < expected:
        raise _Transient(f"connection closed after {partial.size} of {expected} bytes")


def _hint(status: int) -> str:
    if status == 404:
        return " (no such module: check the handle)"
    if status in (401, 403):
        return " (access denied: the module may be private or the URL expired)"
    return ""
