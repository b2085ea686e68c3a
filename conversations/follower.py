"""The one reply follower: how every surface follows an answer's Event.

The worker publishes an answer's events to its reply group on the channel layer. A
surface (the chat socket, the API) joins the group before the job is enqueued (the
pub/sub layer drops what nobody listens to), keeps one `Follower` per answer, and
hands it each event. The follower passes them on in order and whole:

- a gap in the deltas' `seq` (Redis restarted while the worker published) holds the
  deltas that follow until the worker's snapshot of its text arrives, or the stored
  text after RESYNC_SECONDS; the missing text then goes out as one delta marked
  `mended` (the socket turns it into a `resume` of the whole text);
- an end that came after lost deltas is completed from the outcome the worker kept
  in Redis, or the stored message;
- after SILENCE_BEFORE_CHECK without an event, `check_after_silence` says whether the
  answer ended unheard, its worker died or let go of it with its end lost, or it is
  still served (queued or writing).

The surfaces differ only in transport: the socket is handed events by Channels, the
API reads them from its own channel; both use this module for everything else.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

import redis
from redis.backoff import ExponentialBackoff

from accounts.quotas import quota_release
from conversations.models import Message, MessageStatus
from conversations.services import FAILURES, message_fail, message_keep_seen
from inference_worker import presence
from inference_worker.events import ENDS, Event

SILENCE_BEFORE_CHECK = 6.0  # no event for this long: is the worker still there?
RESYNC_SECONDS = 1.5  # how long held deltas wait for the worker's snapshot
LAYER_RETRY = ExponentialBackoff(cap=1.0, base=0.1)  # a channel-layer call while Redis reconnects
LAYER_ATTEMPTS = 8
ACTIVE = (MessageStatus.QUEUED, MessageStatus.STREAMING)

LOST = {
    "event": Event.ERROR,
    "code": "stream_lost",
    "message": "Part of the answer was lost on its way (the message queue restarted). Retry the request.",
}


async def layer_call(method, *args) -> None:
    """A channel-layer call that rides out a Redis restart (the first call after one fails
    while the layer reconnects)."""
    for attempt in range(LAYER_ATTEMPTS):
        try:
            await method(*args)
            return
        except (OSError, redis.RedisError):
            if attempt == LAYER_ATTEMPTS - 1:
                raise
            await asyncio.sleep(LAYER_RETRY.compute(attempt + 1))


class Follower:
    """One answer followed by one reader: its place in the stream and the text passed on."""

    def __init__(
        self, request_id: str, *, model: str, message_id: int | None = None, worker: str | None = None
    ) -> None:
        self.request_id, self.model, self.message_id, self.worker = request_id, model, message_id, worker
        self.started = worker is not None
        self.next_seq = 0  # the seq of the next delta: one further on means some were lost
        self.sent = {
            "content": "",
            "reasoning": "",
            "arguments": "",
        }  # the text passed on so far (arguments: of a call)
        self.held: list[dict] | None = None  # deltas after a gap, waiting for the whole text
        self.held_since = 0.0
        self.last_event = time.monotonic()
        self.unheld = 0  # silence checks in a row that found the live worker no longer holding it

    replaces = False  # whether this reader can replace the text it passed on (the page can)

    @property
    def resyncing(self) -> bool:
        return self.held is not None

    def hold(self) -> None:
        """Wait for the whole text before passing on more (a gap, or a reader that reconnected)."""
        if self.held is None:
            self.held, self.held_since = [], time.monotonic()

    def overdue(self) -> bool:
        """Held deltas have waited for a snapshot longer than RESYNC_SECONDS."""
        return self.held is not None and time.monotonic() - self.held_since > RESYNC_SECONDS

    def silent(self) -> bool:
        return time.monotonic() - self.last_event >= SILENCE_BEFORE_CHECK

    def take(self, event: dict) -> list[dict] | None:
        """The events to pass on for `event`, in order. [] while deltas are held (after a
        gap: the caller asks the worker for a snapshot when `resyncing` turns True). None
        for an end that came after lost deltas: the caller completes it with `finish`."""
        kind = event.get("event")
        self.last_event = time.monotonic()
        if kind in (Event.START, Event.STATUS) and event.get("worker"):
            self.worker = event["worker"]  # the silence check asks after this worker from now on
        if kind == Event.START:
            self.started = True
        if kind == Event.SNAPSHOT:
            if self.held is None:
                return []  # another reader's
            return self.mend(event, seq=presence.delta_seq(event), replace=self.replaces)
        if kind == Event.DELTA:
            if self.held is None and presence.delta_seq(event) > self.next_seq:
                self.hold()
            if self.held is not None:
                self.held.append(event)
                return []
            return [self._pass(event)]
        if kind in ENDS and (self.held is not None or presence.deltas_sent(event) > self.next_seq):
            return None  # the worker is done: no snapshot will come
        return [event]

    def mend(self, whole: dict, *, seq: int | None = None, replace: bool = False) -> list[dict]:
        """Pass on what `whole` (a snapshot with its `seq`, or stored text without one) holds
        beyond the text passed on, as one delta marked `mended` whose `text` is the whole text
        at that point; then the held deltas it does not cover. Where the two disagree, the
        reader that can `replace` its text starts again from `whole`; one that cannot gets
        None."""
        held, self.held = self.held or [], None
        missing = self._missing(whole)
        if missing is None:
            if not replace:
                return None
            self.sent = {key: "" for key in self.sent}
            missing = self._missing(whole) or {}
        if seq is not None:
            self.next_seq = seq
        elif any(missing.values()) or any(self.sent.values()):
            # Stored text says nothing of seq: the held deltas may overlap it. Whatever
            # still comes continues after them.
            self.next_seq = max([self.next_seq] + [presence.delta_seq(d) + 1 for d in held])
            held = []
        mended = self._pass({"event": Event.DELTA, "mended": True, **missing})  # no seq: next_seq stays
        mended["text"] = dict(self.sent)
        if whole.get("steps"):  # the steps so far, whole (a reader replaces its own with them)
            mended["text"]["steps"] = whole["steps"]
        return [mended] + [self._pass(d) for d in held if presence.delta_seq(d) >= self.next_seq]

    def finish(self, whole: dict, end: dict) -> list[dict] | None:
        """The rest of the text and the end, for an end that came after lost deltas."""
        self.held = None
        missing = self._missing(whole)
        if missing is None:
            return None
        return ([self._pass({"event": Event.DELTA, "mended": True, **missing})] if missing else []) + [end]

    def _missing(self, whole: dict) -> dict | None:
        missing = {}
        for key, sent in self.sent.items():
            text = whole.get(key) or ""
            if not text.startswith(sent):
                return None
            if text[len(sent) :]:
                missing[key] = text[len(sent) :]
        return missing

    def _pass(self, delta: dict) -> dict:
        if "seq" in delta:
            self.next_seq = max(self.next_seq, presence.delta_seq(delta) + 1)
        for key in self.sent:
            self.sent[key] += delta.get(key) or ""
        return delta


# --- what the stored truth says (sync: run these in a thread) --------------------------


def stored_end(message: Message, *, show_reasoning: bool = True) -> dict:
    """The event that ends an answer, from its stored message (done, stopped or failed)."""
    if message.status == MessageStatus.FAILED:
        return {
            "event": Event.ERROR,
            "code": message.error_code or "failed",
            "message": message.error,
            "content": message.content,
            "steps": message.tool_steps,
        }
    return {
        "event": Event.DONE,
        "status": message.status,
        "finish_reason": message.finish_reason,
        "content": message.content,
        "reasoning": message.reasoning if show_reasoning else "",
        "steps": message.tool_steps,
        "recovered": True,
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "tokens_per_second": message.tokens_per_second,
        "usage": {  # as the worker's own end has it (the stored message keeps no reasoning count)
            "prompt_tokens": message.prompt_tokens,
            "completion_tokens": message.completion_tokens,
            "total_tokens": message.prompt_tokens + message.completion_tokens,
        },
    }


def whole_text(follower: Follower) -> tuple[dict | None, dict | None]:
    """An ended answer's whole text and end: the outcome its worker kept in Redis, else its
    stored message. (None, None) when neither is there."""
    with contextlib.suppress(OSError, redis.RedisError):
        outcome = presence.outcome(follower.request_id)
        if outcome is not None and isinstance(outcome.get("final"), dict):
            return outcome, outcome["final"]
    if follower.message_id is not None:
        message = Message.objects.filter(pk=follower.message_id).first()
        if message is not None and message.status not in ACTIVE:
            return _text_of(message), stored_end(message)
    return None, None


def stored_text(follower: Follower) -> dict | None:
    """The text stored so far (lags the stream by up to the worker's save interval)."""
    if follower.message_id is None:
        return None
    message = Message.objects.filter(pk=follower.message_id).only("content", "reasoning", "tool_steps").first()
    return None if message is None else _text_of(message)


def _text_of(message: Message) -> dict:
    """A stored message's text as a mend takes it (follower.mend): its steps with it."""
    return {"content": message.content, "reasoning": message.reasoning, "steps": message.tool_steps}


def _failure(code: str) -> dict:
    return {"event": Event.ERROR, "code": code, "message": FAILURES[code]}


def check_after_silence(follower: Follower, *, user_id: int | None) -> dict | None:
    """After a silence: None while the answer is still served (queued, or its worker alive);
    else the event that ends it for this reader. A worker found dead, or alive but done
    with the answer whose end is nowhere, fails the stored message (keeping the text
    passed on) and gives the user's running slot back."""
    whole, end = whole_text(follower)
    if end is not None:
        seen, kept = follower.sent["content"], (whole or {}).get("content") or ""
        failed = end.get("event") == Event.ERROR and follower.message_id is not None
        if failed and message_keep_seen(message_id=follower.message_id, stored=kept, seen=seen):
            whole = {**whole, "content": seen}  # the reaper failed it first, with less than was shown
            end = {**end, "content": seen}
        return {"event": "ended", "whole": whole, "end": end}
    worker = follower.worker
    if follower.message_id is not None:
        stored = Message.objects.filter(pk=follower.message_id).values_list("worker", flat=True).first()
        if stored is None:
            return {"event": Event.ERROR, "code": "deleted", "message": "This answer was deleted."}
        worker = worker or stored or None  # the worker that claimed it, if this reader missed its start
    if worker:
        beat = presence.worker_beat(worker)
        if beat is None:
            if presence.just_restarted():
                return None
            ending = _failure("worker_lost")
        elif follower.request_id in beat.get("requests", ()):
            follower.unheld = 0
            return None
        else:
            # Alive, but done with this answer, and its end is neither stored nor kept:
            # the store failed (what the reaper says later), or the end was lost in a
            # Redis outage longer than the worker waits (before: a stream without a
            # stored message waited for it for ever). Said after two checks, as a beat
            # can predate the request.
            follower.unheld += 1
            if follower.unheld < 2:
                return None
            if follower.message_id is None:
                ending = dict(LOST)
            else:
                ending = _failure("storage_error")
    elif presence.live_workers(follower.model) or presence.just_restarted():
        return None
    else:
        ending = _failure("no_worker")
    if follower.message_id is not None and not message_fail(
        message_id=follower.message_id,
        error=ending["message"],
        code=ending["code"],
        content=follower.sent["content"] or None,
    ):
        # It ended since it was read above (its worker's end, or another worker's reaper
        # with the last save, behind what this reader was shown): the stored end, then.
        return check_after_silence(follower, user_id=user_id)
    if user_id is not None:
        with contextlib.suppress(OSError, redis.RedisError):
            quota_release(user_id=user_id, request_id=follower.request_id)
    return {**ending, "content": follower.sent["content"]}
