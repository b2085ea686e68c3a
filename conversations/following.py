"""How the chat socket follows one answer: the reply group, the watchdog, the resync.

A mixin of ChatConsumer (conversations/consumers.py). The stream logic itself (order,
gaps, mending, the silence check) is the one follower every surface shares
(conversations/follower.py); what is here is only the socket's side of it: the page
takes a `resume` that replaces the answer's text, hears its place in the queue, and
gets the watchdog's end only behind the deltas still on their way.
"""

from __future__ import annotations

import asyncio
import time

import redis
from channels.db import database_sync_to_async

from conversations.follower import (
    RESYNC_SECONDS,
    Follower,
    check_after_silence,
    layer_call,
    stored_text,
    whole_text,
)
from conversations.socket_protocol import SocketEvent
from inference_worker import presence
from inference_worker.events import ENDS, Event

WATCHDOG_SECONDS = 2.0  # how often the watchdog looks at a followed answer


class Answer(Follower):
    """The answer this socket follows: the follower's place in the stream, and what only the
    socket keeps (its watchdog, the queue position it last told the page, an end waiting
    for its barrier)."""

    replaces = True  # the page takes a `resume` that replaces the answer's text
    watchdog: asyncio.Task | None = None
    queue_ahead: int | None = None
    ending: dict | None = None  # the watchdog's end of this answer, waiting for its barrier


class FollowingMixin:
    """The socket's side of following an answer (needs self.channel_layer, channel_name,
    send_json, show_reasoning, scope and _queue_position)."""

    answer: Answer | None = None

    # --- following one answer ---------------------------------------------------------

    async def _follow(self, answer: Answer) -> Answer:
        """Join the answer's reply group (before its job is enqueued: the pub/sub layer drops
        what nobody listens to) and watch it."""
        await self._unfollow()
        self.answer = answer
        await layer_call(self.channel_layer.group_add, presence.reply_group(answer.request_id), self.channel_name)
        answer.watchdog = asyncio.create_task(self._watch(answer))
        return answer

    async def _unfollow(self) -> None:
        answer, self.answer = self.answer, None
        if answer is None:
            return
        if answer.watchdog is not None and answer.watchdog is not asyncio.current_task():
            answer.watchdog.cancel()
        try:
            await layer_call(
                self.channel_layer.group_discard, presence.reply_group(answer.request_id), self.channel_name
            )
        except (OSError, redis.RedisError):
            pass  # the subscription went with the connection anyway

    async def _watch(self, answer: Answer) -> None:
        """While the answer waits in the queue, tell the page its place; after a silence, ask
        whether the answer ended unheard or its worker died (kill -9, lost host)."""
        while self.answer is answer:
            slept = time.monotonic()
            await asyncio.sleep(WATCHDOG_SECONDS)
            stalled = time.monotonic() - slept > WATCHDOG_SECONDS + 1  # this process froze meanwhile
            if answer.ending is not None:
                if not stalled:  # the barrier should have come back long ago: the subscription is gone
                    await self._end(answer, answer.ending)
                    return
                continue  # let what reached us while frozen through first
            if answer.message_id is not None and not answer.started:
                position = await self._queue_position(answer.message_id)
                if position is not None and position != answer.queue_ahead:
                    await self.send_json(
                        {"type": SocketEvent.QUEUE, "message_id": answer.message_id, "ahead": position}
                    )
                    answer.queue_ahead = position
            if answer.message_id is None or not answer.silent():
                continue
            ending = await database_sync_to_async(check_after_silence)(answer, user_id=self.scope["user"].pk)
            if ending is not None:
                await self._end_behind_stream(answer, ending)

    async def _end_behind_stream(self, answer: Answer, ending: dict) -> None:
        """End the answer with what the watchdog found, once everything the worker sent
        before it has been relayed.

        The watchdog reads the stored truth while deltas may still be on their way to this
        socket: a daphne that froze for a few seconds (GC, a descheduled VM, swap) wakes to
        an answer finished in the database and its deltas unread. A barrier sent to the
        answer's reply group comes back behind them (Redis delivers one channel's messages
        in order), and the end goes out when it does. If it never comes back, the
        subscription is gone and the watchdog's next round ends the answer anyway.
        """
        answer.ending = ending
        barrier = {"type": "chat.event", "event": Event.BARRIER, "request_id": answer.request_id}
        try:
            await self.channel_layer.group_send(
                presence.reply_group(answer.request_id), {**barrier, "to": self.channel_name}
            )
        except (OSError, redis.RedisError):
            await self._end(answer, ending)  # nothing more comes through a Redis that is away

    async def _end(self, answer: Answer, ending: dict) -> None:
        if ending["event"] == "ended":  # it ended unheard: the whole text, then its end
            await self._resume(answer, ending["whole"])
            ending = ending["end"]
        await self._relay(answer, ending)
        if self.answer is answer:
            await self._unfollow()

    async def _resync(self, answer: Answer) -> None:
        """Ask the worker for everything it has streamed so far (the stored text lags by up
        to the worker's save interval); the deltas arriving meanwhile are held. On a
        reconnect, and when deltas went missing (Redis restarted while the worker published
        them). If no worker answers within RESYNC_SECONDS, the stored text is the base."""
        answer.hold()
        try:
            await database_sync_to_async(presence.request_snapshot)(answer.request_id)
        except (OSError, redis.RedisError):
            pass  # the stored text after RESYNC_SECONDS, then
        asyncio.get_running_loop().call_later(
            RESYNC_SECONDS, lambda: asyncio.ensure_future(self._resync_overdue(answer))
        )

    async def _resync_overdue(self, answer: Answer) -> None:
        if self.answer is not answer or not answer.resyncing:
            return
        stored = await database_sync_to_async(stored_text)(answer)
        if self.answer is answer and answer.resyncing:  # no snapshot came meanwhile
            await self._pass_on(answer, answer.mend(stored or dict(answer.sent), replace=True))

    async def chat_event(self, event: dict) -> None:
        """A worker's event for the answer this socket follows."""
        answer = self.answer
        if answer is None or event.get("request_id", answer.request_id) != answer.request_id:
            return  # the answer this socket followed before: its last events were already on their way
        if event.get("event") == Event.BARRIER:
            if event.get("to") == self.channel_name and answer.ending is not None:
                await self._end(answer, answer.ending)  # every event sent before the watchdog's end is out
            return  # another socket's
        holding = answer.resyncing
        passed = answer.take(event)
        if passed is None:  # an end after lost deltas: the worker stored the whole text before it
            whole, _ = await database_sync_to_async(whole_text)(answer)
            if whole is not None:
                await self._resume(answer, whole)
            await self._relay(answer, event)
            return
        if answer.resyncing and not holding:  # deltas went missing on the way: start again from the worker's text
            await self._resync(answer)
        await self._pass_on(answer, passed)

    async def _pass_on(self, answer: Answer, passed: list[dict]) -> None:
        for out in passed:
            if out.get("mended"):
                await self._resume(answer, out["text"])
            else:
                await self._relay(answer, out)

    async def _resume(self, answer: Answer, text: dict) -> None:
        """The page replaces the answer's text with this (the whole text so far)."""
        await self.send_json(
            {
                "type": SocketEvent.RESUME,
                "message_id": answer.message_id,
                "request_id": answer.request_id,
                "content": text.get("content") or "",
                "reasoning": (text.get("reasoning") or "") if self.show_reasoning else "",
                **({"steps": text["steps"]} if text.get("steps") else {}),
            }
        )

    async def _relay(self, answer: Answer, event: dict) -> None:
        kind = event.get("event")
        payload = {k: v for k, v in event.items() if k not in ("type", "event", "request_id")}
        if kind == Event.DELTA and not self.show_reasoning:
            payload.pop("reasoning", None)
            if "content" not in payload and "step" not in payload:  # a step is shown to all: what ran, not why
                return
        if kind == Event.DONE and not self.show_reasoning:
            payload.get("usage", {}).pop("reasoning_tokens", None)
        await self.send_json({"type": kind, "message_id": answer.message_id, **payload})
        if kind in ENDS and self.answer is answer:
            await self._unfollow()
