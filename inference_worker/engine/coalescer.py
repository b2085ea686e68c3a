"""Publishing a request's answer: its deltas coalesced, all answers within the worker's budget.

Every message costs the web tier about the same CPU whatever it carries, so the worker
sends fewer, larger deltas when many answers stream at once (docs/PERFORMANCE.md, "Relay").
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from inference_worker import presence
from inference_worker.events import Event

log = logging.getLogger(__name__)


class Replier(Protocol):
    async def reply(self, request_id: str, event: dict[str, Any]) -> None: ...


class Coalescer:
    """Publishes one request's deltas: the first at once, then at most one per interval."""

    def __init__(self, host: Replier, request_id: str, interval: float | Callable[[], float]) -> None:
        # interval: seconds, or a function of the moment (EngineHost.publish_interval)
        self.host, self.request_id, self.interval = host, request_id, interval
        self.content = self.reasoning = self.arguments = ""  # waiting to be sent
        self.sent_content = self.sent_reasoning = self.sent_arguments = ""  # everything sent so far
        self.call: dict[str, str] | None = None  # the function call being written: id, name
        self.call_sent = False
        self.logprobs: list[dict] = []  # of content tokens waiting to be sent (when asked for)
        self.last_sent = 0.0
        self.sent_any = False
        self.seq = 0
        self.timer: asyncio.TimerHandle | None = None
        self.lock = asyncio.Lock()
        self.leading: asyncio.Future | None = None  # the "start" event, published beside prefill
        self.steps: dict[str, dict[str, Any]] = {}  # built-in tool steps by id, as last sent

    def lead(self, event: dict[str, Any]) -> None:
        """Publish `event` without waiting for it, ahead of every delta and snapshot: the
        engine starts on the prompt meanwhile instead of after a Redis round trip."""
        self.leading = asyncio.ensure_future(self.host.reply(self.request_id, event))

    async def led(self) -> None:
        """Wait until the leading event is out (before anything else of this request is sent)."""
        if self.leading is not None:
            await self.leading

    async def calling(self, call_id: str, name: str) -> None:
        """The model began a function call: what came before goes out first, and the call's
        id and name go with the first delta of its arguments."""
        await self.flush()
        self.call, self.call_sent = {"id": call_id, "name": name}, False

    async def step(self, step: dict[str, Any]) -> None:
        """A built-in tool step began or ended: the text before it goes out first, then the
        step (a reader replaces the step of the same id), numbered like the deltas."""
        await self.flush()
        async with self.lock:
            self.steps[step["id"]] = step
            event = {"event": Event.DELTA, "seq": self.seq, "step": step}
            self.seq += 1
            self.sent_any = True
            self.last_sent = time.monotonic()
            await self.led()
            await self.host.reply(self.request_id, event)

    async def push(self, content: str, reasoning: str, arguments: str = "", logprobs: list | None = None) -> None:
        self.logprobs += logprobs or []
        self.content += content
        self.reasoning += reasoning
        self.arguments += arguments
        if not (self.content or self.reasoning or self.arguments or self.logprobs):
            return
        interval = self.interval() if callable(self.interval) else self.interval
        wait = interval - (time.monotonic() - self.last_sent)
        if not self.sent_any or wait <= 0:
            await self.flush()
        elif self.timer is None:
            self.timer = asyncio.get_running_loop().call_later(wait, self._flush_soon)

    def _flush_soon(self) -> None:
        self.timer = None
        asyncio.ensure_future(self.flush())

    async def flush(self) -> None:
        async with self.lock:
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if not (self.content or self.reasoning or self.arguments or self.logprobs):
                return
            event: dict[str, Any] = {"event": Event.DELTA, "seq": self.seq}
            if self.content:
                event["content"] = self.content
            if self.reasoning:
                event["reasoning"] = self.reasoning
            if self.arguments:
                event["arguments"] = self.arguments
            if self.logprobs:
                event["logprobs"], self.logprobs = self.logprobs, []
            if self.call is not None and not self.call_sent:
                event["tool_call"], self.call_sent = self.call, True
            self.sent_content += self.content
            self.sent_reasoning += self.reasoning
            self.sent_arguments += self.arguments
            self.content = self.reasoning = self.arguments = ""
            self.seq += 1
            self.sent_any = True
            self.last_sent = time.monotonic()
            await self.led()
            await self.host.reply(self.request_id, event)

    async def snapshot(self) -> None:
        """Everything sent so far, in order with the deltas (for a socket that reconnected).

        A reader drops deltas it got before the snapshot (their seq is lower) and
        appends those after it.
        """
        async with self.lock:
            await self.led()
            await self.host.reply(
                self.request_id,
                {
                    "event": Event.SNAPSHOT,
                    "seq": self.seq,
                    "content": self.sent_content,
                    "reasoning": self.sent_reasoning,
                    "arguments": self.sent_arguments,
                    **({"tool_call": self.call} if self.call_sent else {}),
                    **({"steps": list(self.steps.values())} if self.steps else {}),
                },
            )


class Publishing:
    """The host's publisher: one channel-layer connection on the engine loop (a mixin of EngineHost)."""

    _layer: Any
    stream_interval: float
    publish_budget: float
    coalescers: dict[str, Coalescer]

    async def publish(self, group: str, event: dict[str, Any], *, kind: str = "chat.event") -> None:
        message = {"type": kind, **event}
        for attempt in range(3):
            try:
                await self._layer.group_send(group, message)
                return
            except Exception as exc:  # noqa: BLE001 - Redis restarted: retry on a new connection
                log.warning("publish to %s failed (%s), attempt %d", group, exc, attempt + 1)
                await asyncio.sleep(0.2 * (attempt + 1))

    async def reply(self, request_id: str, event: dict[str, Any]) -> None:
        """Publish one event of a request's answer to its reply group. Each names its request:
        a socket that has moved on to another answer drops the events of the last one that
        were already on their way to it."""
        await self.publish(presence.reply_group(request_id), {**event, "request_id": request_id})

    def publish_interval(self) -> float:
        """The least time between two deltas of one answer, now.

        stream_interval while the worker streams few answers; with many, the interval
        grows so that all of them together stay within publish_budget messages a
        second. Every message costs the web tier about the same CPU whatever it
        carries (docs/PERFORMANCE.md, "Relay"), so under load deltas get larger
        rather than more numerous. 0: no budget.
        """
        if not self.publish_budget:
            return self.stream_interval
        return max(self.stream_interval, len(self.coalescers) / self.publish_budget)
