"""Refuse an oversized request body while it arrives, on every HTTP path.

Django's ASGI handler reads the whole body (spooled to a temporary file) before any view or
middleware can look at its size, and daphne's Twisted layer reads it all before it even calls
the application. So the limit is kept twice, in front of both:

- `BodyLimit` wraps the ASGI application: a declared Content-Length over the limit is refused at
  once, and the bytes an ASGI server streams in are counted as the application receives them.
- `BoundedWebRequest` takes the place of daphne's request class: it counts the bytes as Twisted
  decodes them off the socket, before anything is written to the temporary file.

Either answers 413 in the path's own shape: the API's JSON error under /api/, a page elsewhere.
File uploads (UPLOAD_PATHS) have their own, larger limit, MAX_UPLOAD_BYTES; the site's own
upload limit (admin panel) is checked by the view, below it.
"""

from __future__ import annotations

import io
from http import HTTPStatus

from daphne import http_protocol
from django.conf import settings
from django.utils.html import escape
from django.utils.translation import gettext

# How long a refused client may go on sending (discarded) after the answer: a client that writes
# its whole body before it reads (most do) then finds the 413 instead of a reset connection.
LINGER_SECONDS = 5.0


UPLOAD_PATHS = ("/knowledge/upload",)
MULTIPART_SLACK = 64 * 1024  # a form's other fields and boundaries around the file


def limit_for(path: str) -> int:
    """The largest body a request to `path` (without the server's root path) may send."""
    if path in UPLOAD_PATHS:
        return settings.MAX_UPLOAD_BYTES + MULTIPART_SLACK
    return settings.MAX_REQUEST_BODY_BYTES


def refusal(path: str) -> tuple[list[tuple[bytes, bytes]], bytes]:
    """The 413's headers and body for a request to `path` (without the server's root path)."""
    limit = limit_for(path)
    if path.startswith("/api/"):
        from conversations.api import ApiError  # the API's one error shape

        response = ApiError(413, f"The request body is over {limit:,} bytes.", code="body_too_large").response()
        body, content_type = response.content, response["Content-Type"]
    else:
        title = gettext("Request too large")
        text = gettext("The request body is over %(limit)s bytes.") % {"limit": f"{limit:,}"}
        title, text = escape(title), escape(text)
        page = f"<!doctype html>\n<title>{title}</title>\n<h1>{title} (413)</h1>\n<p>{text}</p>\n"
        body, content_type = page.encode(), "text/html; charset=utf-8"
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        (b"x-content-type-options", b"nosniff"),
        (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
    ]
    return headers, body


class BodyTooLarge(Exception):
    pass


class BodyLimit:
    """ASGI middleware: 413 for a body over settings.MAX_REQUEST_BODY_BYTES, as soon as it is known."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"].removeprefix(scope.get("root_path", ""))
        limit = limit_for(path)
        declared = next((value for name, value in scope["headers"] if name == b"content-length"), b"")
        if declared.isdigit() and int(declared) > limit:  # not a number: the application answers 400
            return await self._refuse(path, send)
        received = 0
        refused = False

        async def counted() -> dict:
            nonlocal received, refused
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # To the application the client is gone: Django drops what it spooled and
                    # returns without an answer; the 413 follows below.
                    refused = True
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)
        if refused:
            await self._refuse(path, send)

    @staticmethod
    async def _refuse(path: str, send) -> None:
        headers, body = refusal(path)
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class BoundedWebRequest(http_protocol.WebRequest):
    """daphne's request, refusing a body over the limit while Twisted reads it off the socket."""

    received = 0
    refused = False
    _linger = None

    def _limit(self) -> int:
        return limit_for(self._request_path().removeprefix(self.server.root_path or ""))

    def _request_path(self) -> str:
        # The request line's path: Twisted sets the request's own attributes only once the body is in.
        return getattr(self.channel, "_path", b"/").split(b"?", 1)[0].decode("latin-1")

    def gotLength(self, length: int | None) -> None:
        super().gotLength(length)
        if length is not None and length > self._limit():
            self.requestHeaders.removeHeader(b"Expect")  # no "100 Continue" after the refusal
            self._refuse()

    def handleContentChunk(self, data: bytes) -> None:
        if self.refused:
            return  # lingering: read and dropped
        self.received += len(data)
        if self.received > self._limit():
            self._refuse()
        else:
            super().handleContentChunk(data)

    def process(self):
        if self.refused:  # the rest of the body came in while lingering: nothing more to wait for
            self.channel.loseConnection()
            return None
        return super().process()

    def connectionLost(self, reason) -> None:
        if self._linger is not None and self._linger.active():
            self._linger.cancel()
        super().connectionLost(reason)

    def _refuse(self) -> None:
        self.refused = True
        self.content.close()  # a temporary file past Twisted's in-memory size: closing deletes it
        self.content = io.BytesIO()
        headers, body = refusal(self._request_path().removeprefix(self.server.root_path or ""))
        head = [f"HTTP/1.1 413 {HTTPStatus(413).phrase}".encode()]
        head += [name + b": " + value for name, value in headers]
        head += [b"connection: close", b"", b""]
        transport = self.channel.transport
        transport.write(b"\r\n".join(head) + body)
        transport.loseWriteConnection()  # the answer, then end of stream; reading goes on a while
        from twisted.internet import reactor  # here: importing it earlier would install Twisted's default

        self._linger = reactor.callLater(LINGER_SECONDS, transport.abortConnection)


def bound_daphne_bodies() -> None:
    """Make daphne build its requests from BoundedWebRequest (its HTTP factory looks the class up
    by name each time it builds a connection's protocol)."""
    http_protocol.WebRequest = BoundedWebRequest
