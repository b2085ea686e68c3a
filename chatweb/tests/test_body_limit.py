"""An oversized request body is refused while it arrives, on the pages and on /api/ alike."""

from __future__ import annotations

import asyncio
import json
import select
import socket
from urllib.parse import urlparse

import pytest
from django.conf import settings

from chatweb.asgi import application

LIMIT = settings.MAX_REQUEST_BODY_BYTES
CHUNK = 64 * 1024
# Far more than the limit plus what the two sockets' buffers can hold: a client that gets this
# all out before any answer was read by a server that took the whole body in.
ENDLESS = 16 * LIMIT
PATHS = ["/api/v1/chat/completions", "/accounts/login/"]


def connect(server) -> socket.socket:
    url = urlparse(server.url)
    return socket.create_connection((url.hostname, url.port), timeout=30)


def head(path: str, server, *lines: str) -> bytes:
    host = urlparse(server.url).netloc
    text = "\r\n".join([f"POST {path} HTTP/1.1", f"Host: {host}", "Content-Type: application/json", *lines, "", ""])
    return text.encode()


def read_response(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(65536)
        assert more, f"the server closed without an answer: {data!r}"
        data += more
    top, body = data.split(b"\r\n\r\n", 1)
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, value in (line.split(":", 1) for line in header_lines)}
    chunked = headers.get("transfer-encoding") == "chunked"
    while not (body.endswith(b"0\r\n\r\n") if chunked else len(body) >= int(headers.get("content-length", 0))):
        more = sock.recv(65536)
        assert more, f"the server closed in the middle of its answer: {body!r}"
        body += more
    return int(status_line.split()[1]), headers, dechunk(body) if chunked else body


def dechunk(data: bytes) -> bytes:
    body = b""
    while True:
        size, data = data.split(b"\r\n", 1)
        if not int(size, 16):
            return body
        body, data = body + data[: int(size, 16)], data[int(size, 16) + 2 :]


def assert_refusal(path: str, status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body
    if path.startswith("/api/"):
        error = json.loads(body)["error"]
        assert error["code"] == "body_too_large" and error["type"] == "invalid_request_error"
    else:
        assert headers["content-type"].startswith("text/html") and b"413" in body


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PATHS)
def test_a_chunked_body_past_the_limit_is_refused_before_it_is_all_sent(live_daphne, path):
    sock = connect(live_daphne)
    sock.sendall(head(path, live_daphne, "Transfer-Encoding: chunked"))
    chunk = f"{CHUNK:x}\r\n".encode() + b"x" * CHUNK + b"\r\n"
    sent = 0
    try:
        # Until the server speaks (its answer, or the end of the connection) or stops reading.
        while sent < ENDLESS and not select.select([sock], [], [], 0)[0]:
            sock.sendall(chunk)
            sent += CHUNK
    except (ConnectionResetError, BrokenPipeError):
        pass  # it stopped reading past the limit
    assert sent < ENDLESS, "the server read the whole body before it answered"
    try:
        status, headers, body = read_response(sock)
    except ConnectionResetError:
        return  # allowed: a reset after the limit, instead of a 413 the client could read
    finally:
        sock.close()
    assert_refusal(path, status, headers, body)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("path", PATHS)
def test_a_huge_declared_length_is_refused_before_any_body(live_daphne, path):
    with connect(live_daphne) as sock:
        sock.settimeout(15)  # no body follows: a server waiting for it never answers
        sock.sendall(head(path, live_daphne, f"Content-Length: {10**12}"))
        assert_refusal(path, *read_response(sock))


@pytest.mark.django_db(transaction=True)
def test_a_chunked_body_under_the_limit_still_reaches_the_api(live_daphne):
    body = json.dumps({"model": "none", "messages": [{"role": "user", "content": "hi"}]}).encode()
    with connect(live_daphne) as sock:
        sock.sendall(head("/api/v1/chat/completions", live_daphne, "Transfer-Encoding: chunked"))
        sock.sendall(f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n")
        status, _, answer = read_response(sock)
    assert status == 401 and json.loads(answer)["error"]["code"] == "missing_api_key"


class LargeBody:
    """An ASGI server's `receive` for a client sending four times the limit; counts what was taken.
    (Bounded: without the limit the application would spool an endless body to disk.)"""

    def __init__(self) -> None:
        self.taken = 0

    async def __call__(self) -> dict:
        if self.taken >= 4 * LIMIT:
            await asyncio.Event().wait()  # all sent: the client waits for the answer
        self.taken += CHUNK
        return {"type": "http.request", "body": b"x" * CHUNK, "more_body": self.taken < 4 * LIMIT}


async def asgi_post(path: str, receive, *headers: tuple[bytes, bytes]) -> tuple[int, dict, bytes]:
    sent = []

    async def send(message: dict) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1"), (b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 80),
    }
    await application(scope, receive, send)
    start = next((m for m in sent if m["type"] == "http.response.start"), None)
    assert start, "no answer"

    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, body


@pytest.mark.parametrize("path", PATHS)
async def test_an_asgi_server_streaming_the_body_in_gets_413_once_past_the_limit(path):
    """Under an ASGI server that streams the body in (uvicorn, hypercorn), the application stops
    taking it at the limit."""
    body_source = LargeBody()
    status, headers, body = await asgi_post(path, body_source)
    assert_refusal(path, status, headers, body)
    assert body_source.taken <= LIMIT + CHUNK

    body_source = LargeBody()
    status, headers, body = await asgi_post(path, body_source, (b"content-length", str(10**12).encode()))
    assert_refusal(path, status, headers, body)
    assert body_source.taken == 0
