"""What every generating endpoint shares (chat completions, responses): subscribing before the
admission enqueues, waiting for the answer's first event (until then an error is still a
proper HTTP error), collecting a whole answer, and the engine's errors as ApiErrors."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import redis
from asgiref.sync import sync_to_async

from conversations.api.errors import ApiError
from conversations.api.reply_stream import ReplyStream, abandon, follow
from conversations.follower import Follower

STOPPED = {
    "event": "error",
    "code": "request_aborted",
    "message": "The request was stopped before the answer was complete (stopped in the chat, or its worker shut down).",
}


class Admission(Protocol):
    user_id: int
    model_name: str
    message_id: int | None  # the queued answer of a key that saves history
    streaming: bool


A = TypeVar("A", bound=Admission)


@dataclass(slots=True)
class Begun(Generic[A]):
    admitted: A
    stream: ReplyStream
    replies: AsyncIterator[dict]
    first: dict  # start, delta, done, or (streaming) waiting


async def begin(request_id: str, admit: Callable[[], A]) -> Begun[A]:
    """Subscribe, admit (one thread hop: `admit` does everything up to the enqueue), and wait
    for the first event. A stream still queued after SILENCE_BEFORE_CHECK begins anyway
    (with `waiting`), and reports a later error in-stream."""
    stream = ReplyStream(request_id)
    stream.open()
    try:
        await stream.ready()  # subscribed before the admission enqueues: the first events must find us
        admitted = await sync_to_async(admit)()
    except BaseException as exc:
        await stream.close()
        if isinstance(exc, OSError | redis.RedisError):
            raise ApiError(
                503, "The queue is unreachable; try again shortly.", code="queue_down", retry_after=5
            ) from exc
        raise
    follower = Follower(request_id, model=admitted.model_name, message_id=admitted.message_id)
    replies = follow(stream, admitted.user_id, follower)
    first = None
    opening = ("start", "delta", "done", "error") + (("waiting",) if admitted.streaming else ())
    try:
        async for event in replies:
            if event.get("event") in opening:
                first = event
                break
    except BaseException:
        await abandon(stream, request_id)
        raise
    if first is None or first.get("event") == "error":
        await stream.close()
        raise engine_error(first or {"code": "engine_error"})
    return Begun(admitted, stream, replies, first)


def was_stopped(event: dict) -> bool:
    return event.get("event") == "done" and event.get("status") == "stopped"


def engine_error(event: dict) -> ApiError:
    if event.get("code") == "context_length_exceeded":
        return ApiError(400, event.get("message", ""), param="messages", code="context_length_exceeded")
    if event.get("code") == "invalid_params":  # the engine refused a parameter before it began
        return ApiError(400, event.get("message", ""), param=event.get("param"), code="invalid_value")
    if event.get("code") in ("worker_lost", "no_worker", "queue_down", "request_aborted", "stream_lost"):
        return ApiError(503, event.get("message", ""), code=event["code"], retry_after=10)
    return ApiError(500, event.get("message", "The model failed."), code=event.get("code") or "engine_error")


@dataclass(frozen=True, slots=True)
class Answer:
    content: str
    reasoning: str  # all of it: whether the caller may see it is the endpoint's to say
    end: dict  # the done event
    logprobs: list[dict] | None = None  # the content tokens', when asked for
    deltas: tuple[dict, ...] = ()  # every delta, in order (the Responses API's items follow them)

    @property
    def tool_calls(self) -> list[dict]:
        return self.end.get("tool_calls") or []


async def collect(begun: Begun, request_id: str) -> Answer:
    """The whole answer, for a request that does not stream; an error as an ApiError."""
    content, reasoning, logprobs, deltas, final = [], [], [], [], begun.first
    try:
        pending = [begun.first]
        while True:
            event = pending.pop() if pending else await anext(begun.replies, None)
            if event is None:
                break
            if event.get("event") == "delta":
                deltas.append(event)
                content.append(event.get("content", ""))
                reasoning.append(event.get("reasoning", ""))
                logprobs += event.get("logprobs") or []
            if event.get("event") in ("done", "error"):
                final = STOPPED if was_stopped(event) else event
                break
    except BaseException:
        await abandon(begun.stream, request_id)
        raise
    await begun.stream.close()
    if final.get("event") == "error":
        raise engine_error(final)
    return Answer("".join(content), "".join(reasoning), final, logprobs, tuple(deltas))
