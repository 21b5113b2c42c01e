"""A real HTTP server on 127.0.0.1 that serves module archives and misbehaves on request.

Each path gets a `Route` saying what to send and how to misbehave: answer slowly, drop
the connection halfway through the body, fail with 500 a few times, answer 404/403,
redirect, or insist on `?tf-hub-format=compressed`; or, like a hostile server, trickle
bytes, lie in `Content-Length` or answer a resume with the wrong range. The server also
acts as a forward proxy (it serves absolute-URI requests), speaks TLS when given a
certificate, and counts what it served per path.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import http.server
import ssl
import threading
import time
import urllib.parse


@dataclasses.dataclass
class Route:
    """What the server does for one path.

    Attributes:
        body: Bytes of a successful answer.
        status: Status of the answer once any planned failures are used up.
        fail_first: Answer 500 to this many requests before behaving.
        drop_first: Close the connection halfway through the body on this many requests.
        header_delay: Seconds to wait before sending the status line.
        chunk_delay: Seconds to wait between 64 KiB chunks of the body.
        redirect: Answer 302 to this location.
        ranges: Honour `Range: bytes=N-` with 206 (unless `If-Range` names another ETag).
        require_query: Serve the body only when the query string contains this; answer an
            HTML page otherwise (like a model hub's web page).
        replace_after_drop: New body to serve once a dropped answer is cut (the file
            changed on the server between two attempts).
        byte_delay: Send the body one byte at a time, this many seconds apart.
        header_byte_delay: Send an endless header one byte at a time, this many seconds
            apart (each read is quick; only a deadline on the whole stops it).
        content_length: Send this `Content-Length` header instead of the true one.
        range_from_start: Answer a `Range` request with 206 and the body from byte 0
            (a broken cache or proxy), instead of from the byte asked for.
    """

    body: bytes = b""
    status: int = 200
    fail_first: int = 0
    drop_first: int = 0
    header_delay: float = 0.0
    chunk_delay: float = 0.0
    redirect: str | None = None
    ranges: bool = False
    require_query: str | None = None
    replace_after_drop: bytes | None = None
    byte_delay: float = 0.0
    header_byte_delay: float = 0.0
    content_length: str | None = None
    range_from_start: bool = False


class HubServer:
    """Threaded HTTP server; use as a context manager or call `close`."""

    def __init__(self, tls: tuple[str, str] | None = None):
        self.routes: dict[str, Route] = {}
        self.requests: collections.Counter[str] = collections.Counter()
        self.bodies: collections.Counter[str] = collections.Counter()  # 200/206 answers begun
        self.proxied: list[str] = []
        self.bytes_sent: collections.Counter[str] = collections.Counter()
        self._lock = threading.Lock()
        self._httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._httpd.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # (certificate file, key file)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def url(self, path: str) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}{path}"

    def add(self, path: str, route: Route) -> str:
        """Serves `route` at `path`; returns its URL."""
        self.routes[path] = route
        return self.url(path)

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> HubServer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _claim(self, path: str, attribute: str) -> bool:
        # Uses up one planned failure of `attribute` kind, atomically across threads.
        with self._lock:
            route = self.routes[path]
            remaining = getattr(route, attribute)
            if remaining > 0:
                setattr(route, attribute, remaining - 1)
                return True
            return False


def _handler_for(server: HubServer) -> type[http.server.BaseHTTPRequestHandler]:

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output clean
            pass

        def do_GET(self) -> None:
            target = urllib.parse.urlsplit(self.path)
            if target.scheme:
                server.proxied.append(self.path)
            path = target.path
            with server._lock:
                server.requests[path] += 1
            route = server.routes.get(path)
            if route is None:
                return self._simple(404, b"not found")
            time.sleep(route.header_delay)
            if route.header_byte_delay:
                return self._trickle_headers(route.header_byte_delay)
            if server._claim(path, "fail_first"):
                return self._simple(500, b"try again")
            if route.redirect is not None:
                self.send_response(302)
                self.send_header("Location", route.redirect)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return None
            if route.status != 200:
                return self._simple(route.status, b"no")
            if route.require_query and route.require_query not in target.query:
                return self._simple(200, b"<html>a model page</html>", "text/html")
            self._body(path, route)
            return None

        def _body(self, path: str, route: Route) -> None:
            body, status, start = route.body, 200, 0
            requested = self.headers.get("Range", "")
            etag = f'"{hashlib.sha256(body).hexdigest()[:16]}"'
            if (route.ranges and requested.startswith("bytes=")
                    and self.headers.get("If-Range", etag) == etag):
                start, status = int(requested[6:].split("-")[0]), 206
                if route.range_from_start:
                    start = 0
            with server._lock:
                server.bodies[path] += 1
            self.send_response(status)
            self.send_header("Content-Type", "application/gzip")
            self.send_header("Content-Length", route.content_length or str(len(body) - start))
            self.send_header("ETag", etag)
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.end_headers()
            end = start + (len(body) - start) // 2 if server._claim(path, "drop_first") else None
            if route.byte_delay:
                self._trickle(path, body[start:end], route.byte_delay)
            else:
                self._stream(path, body[start:end], route.chunk_delay)
            if end is not None:
                if route.replace_after_drop is not None:
                    route.body = route.replace_after_drop
                self.close_connection = True
                self.connection.close()

        def _stream(self, path: str, data: bytes, delay: float) -> None:
            for i in range(0, len(data), 1 << 16):
                if delay:
                    time.sleep(delay)
                try:
                    self.wfile.write(data[i:i + (1 << 16)])
                except (BrokenPipeError, ConnectionResetError):
                    return  # the client went away (timed out, or was killed)
                with server._lock:
                    server.bytes_sent[path] += len(data[i:i + (1 << 16)])

        def _trickle(self, path: str, data: bytes, delay: float) -> None:
            for i in range(len(data)):
                time.sleep(delay)
                try:
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError, OSError):
                    return
                with server._lock:
                    server.bytes_sent[path] += 1

        def _trickle_headers(self, delay: float) -> None:
            try:
                self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Padding: ")
                for _ in range(int(120 / delay)):  # two minutes at most
                    time.sleep(delay)
                    self.wfile.write(b"a")
            except OSError:
                pass  # the client gave up
            self.close_connection = True

        def _simple(self, status: int, body: bytes, kind: str = "text/plain") -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler
