"""A real websocket client for the chat socket, signed in as a user."""

from __future__ import annotations

import time

from django.conf import settings

from chatweb.testing.support import LiveServer


def session_cookie(user) -> str:
    from django.test import Client

    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


class ChatSocket:
    """A real websocket client on the live daphne, signed in as a user."""

    def __init__(self, server: LiveServer, user, conversation_id: int, *, cookie: str | None = None) -> None:
        """`cookie`: the session to sign in with (default: a new one of `user`'s)."""
        from websockets.sync.client import connect

        self._connection = connect(
            f"{server.ws_url}/ws/chat/{conversation_id}/",
            additional_headers={
                "Cookie": f"{settings.SESSION_COOKIE_NAME}={cookie or session_cookie(user)}",
                "Origin": server.url,
            },
            open_timeout=10,
            max_size=2**24,
        )
        self.ws = self._connection.__enter__()

    def send(self, **message) -> None:
        import json

        self.ws.send(json.dumps(message))

    ready: dict | None = None  # the server's greeting on connect (which answer is active)

    def recv(self, timeout: float = 60) -> dict:
        """The next event, after the greeting (kept in self.ready)."""
        import json

        while True:
            event = json.loads(self.ws.recv(timeout=timeout))
            if event.get("type") != "ready":
                return event
            self.ready = event

    def until(self, *types: str, timeout: float = 120) -> list[dict]:
        """All events up to and including the first of `types`."""
        events = []
        deadline = time.monotonic() + timeout
        while True:
            event = self.recv(timeout=max(0.1, deadline - time.monotonic()))
            events.append(event)
            if event["type"] in types:
                return events

    def close(self) -> None:
        self._connection.__exit__(None, None, None)


def ask(server: LiveServer, user, conversation, content: str, **params) -> list[dict]:
    """One message sent on a socket of its own: its events, up to the answer's end."""
    socket = ChatSocket(server, user, conversation.pk)
    try:
        socket.send(type="send", content=content, params=params)
        return socket.until("done", "error", timeout=180)
    finally:
        socket.close()


def page_text(events: list[dict]) -> str:
    """The answer as the chat page shows it: deltas appended, a resume or a recovered end replacing them."""
    text = ""
    for event in events:
        if event["type"] == "delta":
            text += event.get("content", "")
        elif event["type"] == "resume" or (event["type"] == "done" and event.get("recovered")):
            text = event.get("content", "")
    return text
