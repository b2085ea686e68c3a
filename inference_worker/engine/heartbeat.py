"""The worker's heartbeat: what it tells the web tier about itself, every few seconds.

The web tier picks a worker, shows its state, and reaps the answers of a worker that
no longer holds them, all from the last beat in Redis (inference_worker.presence).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from typing import TYPE_CHECKING, Any

from inference_worker import presence
from inference_worker.events import WorkerState

if TYPE_CHECKING:
    from inference_worker.engine.lifecycle import EngineSpec, RequestState

log = logging.getLogger(__name__)


class Heartbeat:
    """A mixin of EngineHost; it reads the host's state (and Lifecycle's memory()) and changes none of it."""

    spec: EngineSpec
    worker_name: str
    queue: str
    state: str
    is_cpu: bool
    engine: Any
    engine_running: int
    engine_waiting: int
    loads: int
    load_error: str
    requests: dict[str, RequestState]
    held: set[str]
    _redis: Any
    vocab_size: Any  # Generating's

    def heartbeat(self) -> dict[str, Any]:
        used, total = self.memory()
        running = self.engine_running if self.requests else 0
        waiting = self.engine_waiting if self.requests else 0
        state = self.state
        if state == WorkerState.READY and self.requests:
            state = WorkerState.BUSY
        return {
            "name": self.worker_name,
            "model": self.spec.name,
            "queue": self.queue,
            "state": state,
            "device": "cpu" if self.is_cpu else "gpu",
            "memory_used": used,
            "memory_total": total,
            "running": running,
            "waiting": waiting,
            "in_flight": len(self.requests),
            "requests": list(self.held),  # the web tier reaps answers a live worker no longer holds
            "max_num_seqs": self.spec.max_num_seqs,
            "vocab_size": self.vocab_size(),  # admission checks token ids against it
            "engine_unfinished": self.engine.get_num_unfinished_requests() if self.engine is not None else 0,
            "loads": self.loads,
            "error": self.load_error,
            "pid": os.getpid(),
            "host": socket.gethostname(),
        }

    async def _beat(self) -> None:
        for attempt in range(2):  # the first command after a Redis restart fails on the dead connection
            try:
                beat = self.heartbeat()
                ttl = presence.LOADING_TTL if beat["state"] == WorkerState.LOADING else presence.HEARTBEAT_TTL
                await presence.beat(self._redis, self.worker_name, presence.heartbeat_payload(**beat), ttl)
                return
            except Exception as exc:  # noqa: BLE001 - Redis away: the next beat tries again
                if attempt:
                    log.warning("heartbeat failed: %s", exc)

    async def _heartbeat_loop(self) -> None:
        while True:
            await self._beat()
            await asyncio.sleep(presence.HEARTBEAT_SECONDS)
