"""The load generator's HTTP/1.1 client: a request encoded to bytes once, sent on a keep-alive connection.

A load step sends the same few requests thousands of times, and everything the client does per request is in the
latency it records. Locust's FastHttpSession builds each request anew (URL, headers, a response object) and cost
0.2 ms a request more than a plain socket on this machine, alternating in one process (benchmarks/RESULTS.md):
10% of a 2 ms model's latency. Here a request is one `sendall` of bytes made before the step, and an answer is read
by its Content-Length (or its chunks) into bytes; nothing else.

Plain socket code: in the Locust process gevent has patched `socket` and `ssl`, so a connection waits cooperatively.
"""

from __future__ import annotations

import socket
import ssl
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

HEAD_LIMIT = 64 * 1024  # an answer's status line and headers; more is not an HTTP server we can time


class ProtocolError(ConnectionError):
    """The server's answer is not HTTP/1.1 this client can read."""


class ServerClosed(ConnectionError):
    """The server closed the connection before a whole answer."""


@dataclass(frozen=True)
class Origin:
    """Where requests go: host, port, and whether over TLS."""

    host: str
    port: int
    tls: bool

    @classmethod
    def parse(cls, url: str) -> Origin:
        """`http://host:port` or `https://host:port` (a path after it is ignored); ValueError otherwise."""
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        tls = parts.scheme == "https"
        return cls(parts.hostname, parts.port or (443 if tls else 80), tls)

    @property
    def host_header(self) -> str:
        default = 443 if self.tls else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == default else f"{host}:{self.port}"


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: bytes


def encode_post(origin: Origin, path: str, headers: dict[str, str], body: bytes) -> bytes:
    """The whole request, ready to send as it is."""
    lines = [f"POST {path} HTTP/1.1", f"Host: {origin.host_header}", f"Content-Length: {len(body)}",
             *(f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("host", "content-length")), "", ""]
    return "\r\n".join(lines).encode("latin-1") + body


class Connection:
    """One keep-alive connection. `exchange` sends a request and returns its answer; an error leaves it closed."""

    def __init__(self, origin: Origin, timeout_s: float) -> None:
        sock = socket.create_connection((origin.host, origin.port), timeout=timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if origin.tls:  # verified against the system's certificates, or SSL_CERT_FILE's
            sock = ssl.create_default_context().wrap_socket(sock, server_hostname=origin.host)
        self._sock: socket.socket | None = sock
        self._buffer = bytearray()  # appended in place: a large answer read in pieces is not copied again each time
        self.used = False  # whether an answer came on it: a reused connection the server has since closed is retried

    @property
    def closed(self) -> bool:
        return self._sock is None

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def exchange(self, request: bytes) -> Answer:
        if self._sock is None:
            raise ServerClosed("the connection is closed")
        try:
            self._sock.sendall(request)
            answer = self._read_answer()
        except BaseException:
            self.close()
            raise
        self.used = True
        if answer.headers.get("connection", "").lower() == "close":
            self.close()
        return answer

    def _read_answer(self) -> Answer:
        head = self._read_until(b"\r\n\r\n", HEAD_LIMIT)
        lines = head.decode("latin-1").split("\r\n")
        version, _, rest = lines[0].partition(" ")
        if not version.startswith("HTTP/1.") or not rest[:3].isdigit():
            raise ProtocolError(f"not an HTTP/1.1 status line: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep:
                raise ProtocolError(f"not a header line: {line[:80]!r}")
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            body = self._read_chunks()
        elif headers.get("content-length", "").isdigit():
            body = self._read_exactly(int(headers["content-length"]))
        else:
            raise ProtocolError("an answer with neither a Content-Length nor chunks")
        return Answer(int(rest[:3]), headers, body)

    def _fill(self) -> None:
        chunk = self._sock.recv(65536)
        if not chunk:
            raise ServerClosed("the server closed the connection before its answer was whole")
        self._buffer += chunk

    def _read_until(self, marker: bytes, limit: int) -> bytes:
        while (end := self._buffer.find(marker)) < 0:
            if len(self._buffer) > limit:
                raise ProtocolError(f"no {marker!r} in the first {limit} bytes")
            self._fill()
        return self._take(end, len(marker))

    def _read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            self._fill()
        return self._take(n)

    def _take(self, n: int, skip: int = 0) -> bytes:
        """The buffer's first `n` bytes, dropped from it with the `skip` bytes after them (a marker)."""
        out = bytes(self._buffer[:n])
        del self._buffer[:n + skip]
        return out

    def _read_chunks(self) -> bytes:
        parts = []
        while True:
            line = self._read_until(b"\r\n", 1024).split(b";")[0].strip()
            try:
                size = int(line, 16)
            except ValueError:
                raise ProtocolError(f"not a chunk size: {line[:20]!r}") from None
            if size == 0:
                while self._read_until(b"\r\n", HEAD_LIMIT):  # trailers, up to the empty line
                    pass
                return b"".join(parts)
            parts.append(self._read_exactly(size))
            self._read_exactly(2)


class ConnectionPool:
    """Keep-alive connections to one origin, up to `size` at once: a caller beyond them waits for one to come back.

    A connection reused after a while may have been closed by the server (its idle keep-alive timeout): a request
    that finds it so is sent once more on a new connection. Inference requests are idempotent.
    """

    def __init__(self, origin: Origin, size: int, timeout_s: float) -> None:
        self.origin, self.timeout_s = origin, timeout_s
        self._idle: list[Connection] = []
        self._slots = threading.BoundedSemaphore(size)  # gevent's, in a patched process

    def exchange(self, request: bytes) -> Answer:
        with self._slots:
            conn = self._idle.pop() if self._idle else Connection(self.origin, self.timeout_s)
            try:
                answer = conn.exchange(request)
            except (ServerClosed, ConnectionResetError, BrokenPipeError):
                if not conn.used:
                    raise
                conn = Connection(self.origin, self.timeout_s)
                answer = conn.exchange(request)
            if not conn.closed:
                self._idle.append(conn)
            return answer

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


def parse_server_timing(header: str) -> dict[str, float]:
    """{metric: ms} of a Server-Timing header (W3C: `name;desc="...";dur=1.5, other`): metrics without a
    duration, or with one that is not a number, are left out."""
    out = {}
    for metric in header.split(","):
        name, *params = (part.strip() for part in metric.split(";"))
        for param in params:
            key, _, value = param.partition("=")
            if key.strip().lower() == "dur":
                try:
                    out[name] = float(value.strip().strip('"'))
                except ValueError:
                    pass
    return out
