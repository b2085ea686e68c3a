"""Following one request's reply: its events from its reply group on the channel layer, passed
through the one follower (conversations.follower), as the websocket consumer follows a turn."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer

from conversations.follower import (
    LOST,
    RESYNC_SECONDS,
    SILENCE_BEFORE_CHECK,
    Follower,
    check_after_silence,
    stored_text,
    whole_text,
)
from inference_worker import presence
from inference_worker.events import ENDS, Event

# After each silence (SILENCE_BEFORE_CHECK) a stream that is still served says so to its
# client with an SSE comment; one still queued after the first such silence starts its
# response, so that no proxy between (nginx waits 60 s by default) or client gives up on
# a request that waits its turn behind others.
WAITING = {"event": "waiting"}  # follow(): a silence, and the request is still served


class ReplyStream:
    """The events of one request, from its reply group on the channel layer."""

    def __init__(self, request_id: str) -> None:
        self.group = presence.reply_group(request_id)
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.pending: asyncio.Task | None = None
        self.opening: asyncio.Future | None = None

    def open(self) -> None:
        """Subscribe, in the background: `await ready()` before the request is enqueued."""
        self.opening = asyncio.ensure_future(self._subscribe())

    async def _subscribe(self) -> None:
        with contextlib.suppress(OSError, redis.RedisError):  # only a speed-up: new_channel says if Redis is away
            await presence.keep_layer_listening(self.layer)
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)

    async def ready(self) -> None:
        await asyncio.shield(self.opening)

    async def next(self, timeout: float) -> dict | None:
        """The next event, or None after `timeout` seconds of silence (the wait goes on next call)."""
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        event, self.pending = self.pending.result(), None
        return event

    async def close(self) -> None:
        if self.opening is not None:  # a subscription still on its way must not outlive us
            with contextlib.suppress(Exception):
                await asyncio.shield(self.opening)
        if self.channel is None:
            return
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:  # noqa: BLE001 - the subscription goes with the connection anyway
            pass
        # A cancelled receive() is how the pub/sub layer drops a channel's subscription;
        # one that returns at once (a buffered event) must be followed by another.
        for _ in range(1000):
            if self.pending is None:
                self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
                await asyncio.sleep(0)
            if not self.pending.done():
                break
            self.pending = None
        if self.pending is not None:
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
            self.pending = None


async def follow(stream: ReplyStream, user_id: int, follower: Follower) -> AsyncIterator[dict]:
    """The request's events until done / error, through the one follower (conversations.follower):
    in order and whole, a silent dead worker turned into an error event; where nothing can
    mend a stream that lost events, it ends with a stream_lost error rather than a gap."""
    while True:
        event = await stream.next(RESYNC_SECONDS if follower.resyncing else SILENCE_BEFORE_CHECK)
        if event is None:
            if follower.overdue():  # no snapshot came: a saved call's stored text, else wait for the end
                stored = await sync_to_async(stored_text)(follower)
                if stored is not None:
                    mended = follower.mend(stored)
                    for out in mended or [LOST]:
                        yield out
                    if mended is None:
                        return
                    continue
            if not follower.silent():
                continue
            try:
                ending = await sync_to_async(check_after_silence)(follower, user_id=user_id)
            except (OSError, redis.RedisError):
                yield {"event": Event.ERROR, "code": "queue_down", "message": "The queue became unreachable."}
                return
            if ending is None:
                yield WAITING
                continue
            if ending["event"] == "ended":  # it ended, and its end was lost on the way
                for out in follower.finish(ending["whole"], ending["end"]) or [LOST]:
                    yield out
                return
            yield ending
            return
        passed = follower.take(event)
        if passed is None:  # the end came, but deltas before it were lost
            whole, end = await sync_to_async(whole_text)(follower)
            for out in (follower.finish(whole, end) if end is not None else None) or [LOST]:
                yield out
            return
        if follower.held == [event]:  # a gap, just now: ask the worker for its text so far
            with contextlib.suppress(OSError, redis.RedisError):  # else: mended at the end, from its outcome
                await sync_to_async(presence.request_snapshot)(follower.request_id)
        for out in passed:
            yield out
            if out.get("event") in ENDS:
                return


async def abandon(stream: ReplyStream, request_id: str) -> None:
    """The client went away: stop the request in the engine."""
    try:
        with contextlib.suppress(OSError, redis.RedisError):
            await sync_to_async(presence.request_stop)(request_id)
    finally:
        await stream.close()
