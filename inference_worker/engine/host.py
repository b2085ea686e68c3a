"""One vLLM engine per worker process, on its own event-loop thread.

Celery runs tasks on a thread pool; each task hands its job to `EngineHost.submit`,
which schedules a coroutine on the engine loop (`run_coroutine_threadsafe`). All
requests of the process therefore share one `AsyncLLM`, and vLLM batches them
(continuous batching). The same loop owns the one channel-layer connection that
publishes replies, the heartbeat, and the control listener.

EngineHost is made of mixins, one module each: Lifecycle (the engine itself),
Generating (the requests), Publishing (their deltas), Heartbeat and ControlListener.
They share the host's state (the engine, its state, the per-request tables), which
__init__ below sets in one place; each mixin lists the attributes it reads.
"""

from __future__ import annotations

import asyncio
import threading
import time

from inference_worker import presence
from inference_worker.engine.coalescer import Coalescer, Publishing
from inference_worker.engine.control import ControlListener
from inference_worker.engine.generation import Generating, RequestState
from inference_worker.engine.heartbeat import Heartbeat
from inference_worker.engine.lifecycle import EngineSpec, Lifecycle, ProcessMemory
from inference_worker.engine.streaming import Streaming
from inference_worker.engine.tool_loop import ToolLoop
from inference_worker.events import WorkerState


class EngineHost(Lifecycle, Generating, Streaming, ToolLoop, Publishing, Heartbeat, ControlListener):
    def __init__(
        self,
        spec: EngineSpec,
        *,
        worker_name: str,
        queue: str,
        idle_seconds: float = 300.0,
        stream_interval: float = 0.03,
        publish_budget: float = 500.0,
        scripted_logits: bool = False,
        default_script: list[int] | None = None,
        scripts: dict[str, list[int]] | None = None,
    ) -> None:
        self.spec = spec
        self.worker_name = worker_name
        self.queue = queue
        self.idle_seconds = idle_seconds
        self.stream_interval = stream_interval
        self.publish_budget = publish_budget
        self.scripted_logits = scripted_logits
        self.default_script = default_script if scripted_logits else None
        self.scripts = (scripts or {}) if scripted_logits else {}
        self.submitted = 0  # jobs taken since the process started
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self._run_loop, name="engine-loop", daemon=True)
        self.engine = None
        self._process_memory = ProcessMemory()
        self.state = WorkerState.LOADING
        self.is_cpu = True
        self.requests: dict[str, RequestState] = {}
        # Request ids from submit() until finish(): through the outcome's storing, which
        # outlives the engine request (the heartbeat lists these; the web tier never
        # reaps an answer its worker still holds).
        self.held: set[str] = set()
        self.coalescers: dict[str, Coalescer] = {}
        self.last_activity = time.monotonic()
        self.engine_running = 0
        self.engine_waiting = 0
        self.load_error: str = ""
        self.loads = 0
        self.builder = None
        self._load_lock: asyncio.Lock | None = None
        self._layer = None
        self._redis = None  # presence.async_client(), made on the engine loop
        self._tasks: list[asyncio.Task] = []

    def start(self) -> None:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._startup(), self.loop).result(timeout=60)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _startup(self) -> None:
        from channels.layers import get_channel_layer

        self._load_lock = asyncio.Lock()
        self._layer = get_channel_layer()
        self._redis = presence.async_client()
        self._tasks = [
            asyncio.create_task(self._heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self._abort_listener(), name="abort-listener"),
            asyncio.create_task(self._idle_watcher(), name="idle-watcher"),
            asyncio.create_task(self._load(), name="initial-load"),
        ]

    def stop(self, timeout: float = 30) -> None:
        async def _shutdown() -> None:
            for task in self._tasks:
                task.cancel()
            for request_id in list(self.requests):
                await self.abort(request_id)
            await self._unload(final=True)
            try:
                await presence.unregister(self._redis, self.worker_name)
            except Exception:  # noqa: BLE001 - Redis may be gone at shutdown
                pass

        try:
            asyncio.run_coroutine_threadsafe(_shutdown(), self.loop).result(timeout=timeout)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.state == WorkerState.ERROR:
                return False
            if self.state != WorkerState.LOADING:
                return True
            time.sleep(0.1)
        return False
