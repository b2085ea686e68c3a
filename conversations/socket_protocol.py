"""The chat socket's own names, shared with the page: what the socket says beside the
worker's events, the frames the page sends, and the close codes. `page_protocol()`
hands them, with the worker's event kinds, to the page's JavaScript (static/js/chat/protocol.js), so each
name is spelled once."""

from __future__ import annotations

from enum import StrEnum

from inference_worker.events import Event

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_APPROVED = 4003
CLOSE_NOT_FOUND = 4004


class SocketEvent(StrEnum):
    """What the socket itself says to the page, beside the worker's events (inference_worker.events)."""

    READY = "ready"  # on connect: which answer is being written, if any
    QUEUED = "queued"  # a turn was stored and queued (with the new message ids)
    QUEUE = "queue"  # how many answers wait ahead of this one
    RESUME = "resume"  # the answer's whole text so far (a reconnect, or deltas lost on the way)
    TITLE = "title"  # the conversation's new title
    PONG = "pong"


class Frame(StrEnum):
    """What the page sends on the socket."""

    SEND = "send"
    REGENERATE = "regenerate"
    STOP = "stop"
    SYNC = "sync"  # the stored outcome of an answer followed before a reconnect
    PING = "ping"


def page_protocol() -> dict:
    """The names the chat page's JavaScript reads (static/js/chat/protocol.js): spelled once, here."""
    return {
        "event": {e.name: e.value for e in (*Event, *SocketEvent)},
        "frame": {f.name: f.value for f in Frame},
        "close": {
            "UNAUTHENTICATED": CLOSE_UNAUTHENTICATED,
            "NOT_APPROVED": CLOSE_NOT_APPROVED,
            "NOT_FOUND": CLOSE_NOT_FOUND,
        },
    }
