"""Names the worker, the web tier and the page share: reply event kinds and worker states.

The page reads the same definitions (conversations.views hands them to the chat page),
so a name is spelled once. StrEnum members are their strings: they go into JSON as is.
"""

from __future__ import annotations

from enum import StrEnum


class Event(StrEnum):
    """The events of one answer on its reply group."""

    STATUS = "status"  # the worker is loading the model before it can start
    START = "start"  # the engine has the request
    DELTA = "delta"  # more text (content and / or reasoning), numbered by `seq`
    DONE = "done"  # stored: done, stopped or cut at max_tokens
    ERROR = "error"  # stored as failed, or refused by the engine
    SNAPSHOT = "snapshot"  # the text so far, for a reader that lost deltas or reconnected
    BARRIER = "barrier"  # comes back behind every event published before it (the socket's watchdog)


ENDS = frozenset({Event.DONE, Event.ERROR})


class WorkerState(StrEnum):
    LOADING = "loading"
    READY = "ready"
    BUSY = "busy"
    UNLOADING = "unloading"
    SLEEPING = "sleeping"  # the model is unloaded after idling; the next request loads it
    ERROR = "error"  # the model could not be loaded (the heartbeat says why)


SERVING = frozenset({WorkerState.READY, WorkerState.BUSY})  # the engine is loaded and takes requests
