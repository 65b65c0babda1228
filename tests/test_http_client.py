"""The load generator's HTTP/1.1 client against scripted servers: framing, keep-alive, errors, TLS."""

from __future__ import annotations

import re
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from mcbench.bench.http_client import (
    Connection,
    ConnectionPool,
    Origin,
    ProtocolError,
    ServerClosed,
    encode_post,
    parse_server_timing,
)

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer-Timing: model;dur=1.5\r\n\r\nhello"
CHUNKED = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nTrailer: 1\r\n\r\n"


def read_request(conn: socket.socket) -> bytes | None:
    """One whole request (head and Content-Length body), or None when the client closed."""
    got = b""
    while b"\r\n\r\n" not in got:
        chunk = conn.recv(65536)
        if not chunk:
            return None
        got += chunk
    head, _, body = got.partition(b"\r\n\r\n")
    fields = dict(line.lower().split(b":", 1) for line in head.split(b"\r\n")[1:])
    length = int(fields[b"content-length"])
    while len(body) < length:
        body += conn.recv(65536)
    return got


@contextmanager
def scripted_server(connections: list[list[bytes]], wrap=None) -> Iterator[tuple[int, list[bytes]]]:
    """A server answering each request on its i-th connection with the next of connections[i]'s replies (sent in
    two writes, to make the client read twice), closing the connection after its last; the requests it got."""
    listener = socket.create_server(("127.0.0.1", 0))
    seen: list[bytes] = []

    def serve() -> None:
        for replies in connections:
            conn, _ = listener.accept()
            conn = wrap(conn) if wrap else conn
            with conn:
                for reply in replies:
                    request = read_request(conn)
                    if request is None:
                        break
                    seen.append(request)
                    conn.sendall(reply[:10])
                    conn.sendall(reply[10:])

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], seen
    finally:
        listener.close()
        thread.join(5)


def test_origin_and_the_encoded_request() -> None:
    origin = Origin.parse("http://127.0.0.1:8000/ignored")
    assert origin == Origin("127.0.0.1", 8000, False) and Origin.parse("https://h.example").port == 443
    assert Origin.parse("http://[::1]:9").host_header == "[::1]:9" and Origin.parse("http://h").host_header == "h"
    with pytest.raises(ValueError, match="'ftp://h' is not an http:// or https:// URL"):
        Origin.parse("ftp://h")
    request = encode_post(origin, "/v2/models/m/infer", {"Authorization": "Bearer t", "Host": "dropped"}, b"{}")
    assert request == (b"POST /v2/models/m/infer HTTP/1.1\r\nHost: 127.0.0.1:8000\r\nContent-Length: 2\r\n"
                       b"Authorization: Bearer t\r\n\r\n{}")


def test_keep_alive_answers_by_length_and_by_chunks() -> None:
    with scripted_server([[OK, CHUNKED, OK]]) as (port, seen):
        origin = Origin("127.0.0.1", port, False)
        conn = Connection(origin, 5)
        answers = [conn.exchange(encode_post(origin, "/p", {}, b"abc")) for _ in range(3)]
        conn.close()
    assert [(a.status, a.body) for a in answers] == [(200, b"hello")] * 3
    assert answers[0].headers["server-timing"] == "model;dur=1.5"
    assert len(seen) == 3 and all(r.endswith(b"\r\n\r\nabc") for r in seen)  # all three on the one connection


def test_a_closed_keep_alive_connection_is_replaced_once() -> None:
    """The server closes the first connection after one answer (its idle timeout): the pool's second request
    finds it closed and goes out again on a new one; a connection that never answered is not retried."""
    with scripted_server([[OK], [OK, OK]]) as (port, seen):
        pool = ConnectionPool(Origin("127.0.0.1", port, False), 4, 5)
        request = encode_post(pool.origin, "/p", {}, b"x")
        assert [pool.exchange(request).status for _ in range(3)] == [200, 200, 200]
        pool.close()
    assert len(seen) == 3
    with scripted_server([[]]) as (port, _):
        with pytest.raises((ServerClosed, ConnectionResetError)):  # reset, where the request was still unread
            Connection(Origin("127.0.0.1", port, False), 5).exchange(request)


@pytest.mark.parametrize(("reply", "message"), [
    (b"SSH-2.0-OpenSSH\r\n\r\n", "not an HTTP/1.1 status line: 'SSH-2.0-OpenSSH'"),
    (b"HTTP/1.1 200 OK\r\nbroken\r\n\r\n", "not a header line: 'broken'"),
    (b"HTTP/1.1 200 OK\r\nX: 1\r\n\r\n", "neither a Content-Length nor chunks"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "not a chunk size: b'zz'"),
])
def test_an_answer_this_client_cannot_read_is_a_protocol_error(reply: bytes, message: str) -> None:
    with scripted_server([[reply]]) as (port, _):
        conn = Connection(Origin("127.0.0.1", port, False), 5)
        with pytest.raises(ProtocolError, match=re.escape(message)):
            conn.exchange(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert conn.closed


def test_connection_close_and_a_refused_connection() -> None:
    with scripted_server([[b"HTTP/1.1 503 Busy\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"]]) as (port, _):
        conn = Connection(Origin("127.0.0.1", port, False), 5)
        answer = conn.exchange(b"POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n")
        assert (answer.status, answer.body, conn.closed) == (503, b"", True)
    with pytest.raises(ConnectionRefusedError):
        Connection(Origin("127.0.0.1", port, False), 5)  # the server is gone


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("no openssl command to make a test certificate with")
    folder = tmp_path_factory.mktemp("tls")
    key, cert = folder / "key.pem", folder / "cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-keyout", str(key),
                    "-out", str(cert), "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost"],
                   check=True, capture_output=True)
    return key, cert


def test_https_is_verified_against_ssl_cert_file(certificate, monkeypatch) -> None:
    key, cert = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)

    def wrap(conn: socket.socket) -> socket.socket:
        try:
            return context.wrap_socket(conn, server_side=True)
        except ssl.SSLError:  # the client refused the certificate: nothing more on this connection
            return conn

    with scripted_server([[], [OK]], wrap=wrap) as (port, _):
        origin = Origin.parse(f"https://localhost:{port}")
        with pytest.raises(ssl.SSLCertVerificationError):  # self-signed: not among the system's certificates
            Connection(origin, 5)
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        conn = Connection(origin, 5)
        assert conn.exchange(encode_post(origin, "/p", {}, b"")).body == b"hello"
        conn.close()


def test_server_timing_as_mcbench_and_other_servers_write_it() -> None:
    assert parse_server_timing("model;dur=1.250, app;dur=1.500") == {"model": 1.25, "app": 1.5}
    assert parse_server_timing('cache;desc="Cache Read";dur=23.2, db;dur=53, miss, x;dur=fast') == {
        "cache": 23.2, "db": 53.0}
    assert parse_server_timing("") == {}
