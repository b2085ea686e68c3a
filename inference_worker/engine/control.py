"""The control listener: stops and snapshot requests for this worker's answers, from Redis pub/sub.

The web tier publishes a request id on presence.ABORT_CHANNEL (the user pressed Stop)
or presence.SYNC_CHANNEL (a socket reconnected and needs the text so far). Every
worker hears every message; the one that holds the request acts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from inference_worker import presence

if TYPE_CHECKING:
    from inference_worker.engine.coalescer import Coalescer
    from inference_worker.engine.generation import RequestState

log = logging.getLogger(__name__)


class ControlListener:
    """A mixin of EngineHost."""

    engine: Any
    requests: dict[str, RequestState]
    coalescers: dict[str, Coalescer]
    _redis: Any

    async def _abort_listener(self) -> None:
        while True:
            try:
                pubsub = self._redis.pubsub()
                await pubsub.subscribe(presence.ABORT_CHANNEL, presence.SYNC_CHANNEL)
                async for message in pubsub.listen():
                    if message.get("type") != "message":
                        continue
                    request_id = message["data"].decode()
                    if request_id not in self.requests:
                        continue
                    if message["channel"].decode() == presence.ABORT_CHANNEL:
                        await self.abort(request_id)
                    elif (coalescer := self.coalescers.get(request_id)) is not None:
                        await coalescer.snapshot()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - Redis went away: resubscribe
                log.warning("abort listener lost Redis (%s); resubscribing", exc)
                await asyncio.sleep(0.5)

    async def abort(self, request_id: str) -> None:
        state = self.requests.get(request_id)
        if state is None or state.aborted:
            return
        state.aborted = True
        if self.engine is not None:
            await self.engine.abort(state.engine_id)
