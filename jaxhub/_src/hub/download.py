"""Streaming HTTP(S) downloads with progress, retries, resumption and clear errors.

Built on ``urllib.request``, whose default opener follows redirects and takes proxies
from the standard ``http_proxy`` / ``https_proxy`` / ``no_proxy`` environment variables.
A download is bounded in time as a whole (``deadline``) and must keep up a minimum rate,
so a server that trickles bytes cannot hold a download, and the cache lock behind it,
forever. Messages name the URL in its canonical form, never its credentials.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import http.client
import itertools
import logging
import pathlib
import re
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable

import tqdm

from jaxhub._src.hub.config import Settings
from jaxhub._src.hub.errors import DownloadError
from jaxhub._src.hub.urls import canonical_url, url_problem
from jaxhub._src.version import __version__

_log = logging.getLogger(__name__)
_CHUNK = 1 << 20
_FREE_SPACE_RECHECK_BYTES = 64 * 2**20
# Statuses worth another try: the server or a proxy may recover.
_TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")


@dataclasses.dataclass(frozen=True)
class Options:
    """How to download.

    Attributes:
      timeout: Seconds to wait to connect, and for each read of the body; also the
        window over which ``min_rate`` is measured.
      retries: Extra attempts after a transient failure.
      backoff: Seconds before the first retry, doubled for each further one.
      progress: Show a tqdm progress bar on stderr.
      max_bytes: Abort when the body grows beyond this many bytes.
      deadline: Seconds the whole download may take, retries included (None: no limit).
      min_rate: Bytes per second the body must average over each ``timeout`` window
        (0: no minimum).
      min_free_bytes: Disk space the download must leave free.
      allow_insecure_redirects: Follow redirects from https to http.
      secret_params: Extra query parameters that carry credentials (see ``urls``).
    """

    timeout: float = 60.0
    retries: int = 4
    backoff: float = 0.5
    progress: bool = False
    max_bytes: int | None = None
    deadline: float | None = 7200.0
    min_rate: float = 1024.0
    min_free_bytes: int = 0
    allow_insecure_redirects: bool = False
    secret_params: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings, **overrides) -> Options:
        """The options ``settings`` ask for; ``overrides`` replace single fields."""
        fields = dict(timeout=settings.timeout, retries=settings.retries,
                      backoff=settings.backoff, progress=settings.progress,
                      max_bytes=settings.max_archive_bytes, deadline=settings.deadline,
                      min_rate=settings.min_rate, min_free_bytes=settings.min_free_bytes,
                      allow_insecure_redirects=settings.allow_insecure_redirects,
                      secret_params=settings.secret_params)
        return cls(**{**fields, **overrides})


@dataclasses.dataclass(frozen=True)
class Downloaded:
    """A finished download: where it is, its sha256 and size, and the URL that served it
    (canonical: without credentials)."""

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
    resumable: bool = True  # False once the server answered a resume with the wrong bytes

    def restart(self) -> None:
        self.path.write_bytes(b"")
        self.digest = hashlib.sha256()
        self.size = 0
        self.validator = None

    def resume_headers(self) -> dict[str, str]:
        if not (self.size and self.validator and self.resumable):
            return {}
        # If-Range: the server sends the rest only if the file is unchanged, else all of it,
        # so a resumed download never splices two versions together.
        return {"Range": f"bytes={self.size}-", "If-Range": self.validator}


@dataclasses.dataclass(frozen=True)
class _Clock:
    """The deadline of one download, across all its attempts."""

    label: str
    options: Options
    start: float = dataclasses.field(default_factory=time.monotonic)

    def remaining(self) -> float:
        if self.options.deadline is None:
            return float("inf")
        return self.options.deadline - (time.monotonic() - self.start)

    def socket_timeout(self, received: int) -> float:
        self.check(received)
        return min(self.options.timeout, self.remaining())

    def check(self, received: int, expected: int | None = None) -> None:
        if self.remaining() > 0:
            return
        of = f" of {expected}" if expected is not None else ""
        raise DownloadError(
            f"Downloading {self.label} did not finish within {self.options.deadline:g}s "
            f"({received}{of} bytes received); raise JAXHUB_DOWNLOAD_DEADLINE if the "
            "server is genuinely this slow")


def download(url: str, dest: pathlib.Path, options: Options = Options()) -> Downloaded:
    """Downloads ``url`` to ``dest``, retrying transient failures with exponential backoff.

    A retry resumes where the previous attempt stopped when the server honours ``Range``
    (and answers with the bytes asked for) and starts over otherwise.

    Args:
      url: An http(s) URL.
      dest: File to write; created or truncated.
      options: Timeouts, retries, limits, progress.

    Returns:
      The finished download.

    Raises:
      DownloadError: HTTP 4xx (other than 408/429), a refused connection, an unknown
        host, an invalid answer, the deadline passed, a limit exceeded, or still
        failing after the last retry. The message names the URL without credentials.
    """
    label = canonical_url(url, options.secret_params)
    clock = _Clock(label, options)
    partial = _Partial(dest)
    partial.restart()
    for attempt in itertools.count():
        try:
            final_url = _attempt(url, partial, options, clock)
            return Downloaded(dest, partial.digest.hexdigest(), partial.size,
                              canonical_url(final_url, options.secret_params))
        except _Transient as e:
            clock.check(partial.size)  # past the deadline: say so, not the symptom
            delay = options.backoff * 2**attempt
            if attempt >= options.retries:
                raise DownloadError(f"Downloading {label} failed after {attempt + 1} "
                                    f"attempts: {e} (JAXHUB_DOWNLOAD_RETRIES)") from e
            if clock.remaining() <= delay:
                raise DownloadError(f"Downloading {label} failed: {e}; no time is left for "
                                    "another attempt (JAXHUB_DOWNLOAD_DEADLINE)") from e
            _log.warning("Downloading %s: %s; retrying in %.1fs.", label, e, delay)
            time.sleep(delay)
    raise AssertionError("itertools.count() never ends")


def _attempt(url: str, partial: _Partial, options: Options, clock: _Clock) -> str:
    headers = {"User-Agent": f"jaxhub/{__version__}", **partial.resume_headers()}
    request = urllib.request.Request(url, headers=headers)
    # A fresh opener reads the proxy variables now; urlopen's global one froze them at
    # its first use (proxy support: tensorflow/hub#53, #146).
    watchdog = _Watchdog(clock.remaining())
    opener = urllib.request.build_opener(
        urllib.request.ProxyHandler(), _RedirectHandler(clock.label, options),
        _WatchedHTTPHandler(watchdog), _WatchedHTTPSHandler(watchdog))
    try:
        with watchdog, opener.open(request,
                                   timeout=clock.socket_timeout(partial.size)) as response:
            _start_body(response, partial, clock.label)
            if partial.validator is None:
                partial.validator = (response.headers.get("ETag")
                                     or response.headers.get("Last-Modified"))
            _receive(response, partial, options, clock)
            if watchdog.fired:  # a cut connection can look like a complete (empty) answer
                clock.check(partial.size)
            return response.url
    except urllib.error.HTTPError as e:
        if e.code == 416 and partial.size:
            partial.restart()
            raise _Transient("server refused to resume; starting over") from e
        if e.code in _TRANSIENT_STATUSES:
            raise _Transient(f"HTTP {e.code} {e.reason}") from e
        raise DownloadError(f"HTTP {e.code} {e.reason} for {clock.label}{_hint(e.code)}") from e
    except (TimeoutError, socket.timeout) as e:
        raise _Transient(f"no data for {options.timeout:g}s (JAXHUB_DOWNLOAD_TIMEOUT)") from e
    except urllib.error.URLError as e:
        _fail_fast(e.reason, partial, clock.label)
        if isinstance(e.reason, (TimeoutError, socket.timeout)):
            raise _Transient(
                f"no connection within {options.timeout:g}s (JAXHUB_DOWNLOAD_TIMEOUT)") from e
        raise _Transient(f"cannot connect: {e.reason}") from e
    except (http.client.HTTPException, ConnectionError) as e:
        raise _Transient(f"connection lost: {e!r}") from e


def _fail_fast(reason: object, partial: _Partial, label: str) -> None:
    # Retrying cannot help when nothing listens or the name does not exist; a refusal in
    # the middle of a download (a server restarting) is still retried.
    host = urllib.parse.urlsplit(label).netloc
    if isinstance(reason, ConnectionRefusedError) and not partial.size:
        raise DownloadError(f"Cannot connect to {host}: connection refused. Is the server "
                            f"running, and is the URL right? ({label})") from None
    if isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME:
        raise DownloadError(f"Cannot find the host {host!r}: check the URL ({label}), your "
                            "network, or the proxy settings (https_proxy)") from None


def _start_body(response: http.client.HTTPResponse, partial: _Partial, label: str) -> None:
    """Decides whether the answer continues ``partial`` or replaces it."""
    if not partial.size:
        return
    if response.status != 206:
        partial.restart()  # no resume offered or the file changed: take it all again
        return
    match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
    start = int(match.group(1)) if match else None
    if start != partial.size:
        # Splicing these bytes after ours would corrupt the file.
        asked = partial.size
        partial.restart()
        partial.resumable = False
        raise _Transient(f"asked to resume at byte {asked}, the server answered "
                         f"with Content-Range {response.headers.get('Content-Range')!r}; "
                         "starting over without resuming")


def _content_length(response: http.client.HTTPResponse, label: str) -> int | None:
    text = response.headers.get("Content-Length")
    if text is None:
        return None
    if not text.strip().isascii() or not text.strip().isdigit():  # "²" is a digit too
        raise DownloadError(f"{label}: the server sent an invalid Content-Length {text!r}; "
                            "the server (or a proxy in between) is broken, try again later "
                            "or report it to its operator")
    return int(text)


def _check_space(path: pathlib.Path, needed: int, options: Options, label: str) -> None:
    free = shutil.disk_usage(path.parent).free
    if free - needed < options.min_free_bytes:
        raise DownloadError(
            f"Downloading {label} needs {needed} more bytes, which would leave less than "
            f"{options.min_free_bytes} bytes free on the disk of {path.parent} ({free} "
            "free); free some space, move the cache (JAXHUB_CACHE_DIR) or lower "
            "JAXHUB_MIN_FREE_BYTES")


def _receive(response: http.client.HTTPResponse, partial: _Partial, options: Options,
             clock: _Clock) -> None:
    length = _content_length(response, clock.label)
    expected = partial.size + length if length is not None else None
    if options.max_bytes is not None and expected is not None and expected > options.max_bytes:
        raise DownloadError(f"{clock.label} is {expected} bytes, more than the limit of "
                            f"{options.max_bytes} (JAXHUB_MAX_ARCHIVE_BYTES)")
    _check_space(partial.path, length or 0, options, clock.label)
    name = response.url.rsplit("/", 1)[-1].split("?", 1)[0] or "download"
    rate = _RateWatch(options, partial.size)
    unchecked = 0
    with tqdm.tqdm(total=expected, initial=partial.size, unit="B", unit_scale=True,
                   unit_divisor=1024, desc=name, disable=not options.progress,
                   leave=False) as bar, open(partial.path, "ab") as out:
        while chunk := response.read1(_CHUNK):
            out.write(chunk)
            partial.digest.update(chunk)
            partial.size += len(chunk)
            bar.update(len(chunk))
            if options.max_bytes is not None and partial.size > options.max_bytes:
                raise DownloadError(f"{clock.label} exceeds the limit of {options.max_bytes} "
                                    f"bytes (JAXHUB_MAX_ARCHIVE_BYTES)")
            clock.check(partial.size, expected)
            rate.check(partial.size)
            unchecked += len(chunk)
            if expected is None and unchecked >= _FREE_SPACE_RECHECK_BYTES:
                _check_space(partial.path, 0, options, clock.label)
                unchecked = 0
    if expected is not None and partial.size < expected:
        raise _Transient(f"connection closed after {partial.size} of {expected} bytes")


class _RateWatch:
    """Fails an attempt whose body arrives slower than ``min_rate`` over a ``timeout`` window."""

    def __init__(self, options: Options, size: int):
        self.options = options
        self.since = time.monotonic()
        self.size_then = size

    def check(self, size: int) -> None:
        elapsed = time.monotonic() - self.since
        if not self.options.min_rate or elapsed < self.options.timeout:
            return
        rate = (size - self.size_then) / elapsed
        if rate < self.options.min_rate:
            raise _Transient(f"{rate:.0f} bytes/s over the last {elapsed:.1f}s, below the "
                             f"minimum of {self.options.min_rate:g} (JAXHUB_DOWNLOAD_MIN_RATE)")
        self.since, self.size_then = time.monotonic(), size


class _Watchdog:
    """Shuts down an attempt's connections when the deadline passes, whatever they wait on.

    Socket timeouts bound each read, not their sum: a server sending its headers a byte
    at a time would otherwise hold a download past its deadline.
    """

    def __init__(self, seconds: float):
        self._connections: list[http.client.HTTPConnection] = []
        self.fired = False
        self._timer = threading.Timer(max(0.0, min(seconds, threading.TIMEOUT_MAX)),
                                      self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Watchdog:
        self._timer.start()
        return self

    def __exit__(self, *exc) -> None:
        self._timer.cancel()

    def watch(self, http_class: type) -> Callable[..., http.client.HTTPConnection]:
        """A factory of ``http_class`` connections that the watchdog can shut down."""
        def connection(*args, **kwargs) -> http.client.HTTPConnection:
            made = http_class(*args, **kwargs)
            self._connections.append(made)
            return made
        return connection

    def _fire(self) -> None:
        self.fired = True
        for connection in self._connections:
            if connection.sock is not None:
                with contextlib.suppress(OSError):
                    connection.sock.shutdown(socket.SHUT_RDWR)


class _Watched:
    """Mixin for urllib's HTTP(S) handlers: connections are made through the watchdog."""

    def __init__(self, watchdog: _Watchdog):
        super().__init__()
        self.watchdog = watchdog

    def do_open(self, http_class, req, **kwargs):
        return super().do_open(self.watchdog.watch(http_class), req, **kwargs)


class _WatchedHTTPHandler(_Watched, urllib.request.HTTPHandler):
    pass


class _WatchedHTTPSHandler(_Watched, urllib.request.HTTPSHandler):
    pass


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follows redirects to valid http(s) URLs only, and from https to http only when the
    settings allow it.

    A server must not send a download where the handle could not go: to another scheme
    (``ftp://`` would also escape the deadline's watchdog, ``file://`` read the local
    disk) or to a URL urllib would fail on with a bare ``ValueError``.
    """

    def __init__(self, label: str, options: Options):
        self.label = label
        self.options = options

    def http_error_302(self, req, fp, code, msg, headers):
        try:
            return super().http_error_302(req, fp, code, msg, headers)
        except ValueError as e:  # urllib parses the Location before redirect_request
            fp.close()
            raise self._refused(headers.get("Location", ""), str(e)) from None

    http_error_301 = http_error_303 = http_error_307 = http_error_308 = http_error_302

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        problem = url_problem(newurl)
        if problem is not None:
            fp.close()
            raise self._refused(newurl, problem)
        old = urllib.parse.urlsplit(req.full_url).scheme.lower()
        new = urllib.parse.urlsplit(newurl).scheme.lower()
        if old == "https" and new == "http" and not self.options.allow_insecure_redirects:
            fp.close()
            raise DownloadError(
                f"{self.label} redirects from https to http "
                f"({canonical_url(newurl, self.options.secret_params)}), which would send "
                "the rest unencrypted; use an https URL, or set "
                "JAXHUB_ALLOW_INSECURE_REDIRECTS=1 if you trust the network")
        return super().redirect_request(req, fp, code, msg, headers, newurl)

    def _refused(self, location: str, problem: str) -> DownloadError:
        shown = canonical_url(location, self.options.secret_params)[:200]
        return DownloadError(f"{self.label} redirects to {shown!r}, which jaxhub does not "
                             f"follow: {problem}; ask the server's operator for a direct "
                             "http(s) URL of the archive")


def _hint(status: int) -> str:
    if status == 404:
        return " (no such module: check the handle)"
    if status in (401, 403):
        return " (access denied: the module may be private or the URL expired)"
    return ""
