"""The engine's lifecycle: built from its spec, loaded, put to sleep or shut down when idle.

On a GPU an idle engine sleeps (its weights and KV cache leave the device) and wakes
for the next request; on the CPU it is shut down and built again.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import psutil

from inference_worker.events import SERVING, WorkerState
from inference_worker.prompts import prompt_builder_for

if TYPE_CHECKING:
    from inference_worker.engine.generation import RequestState
    from inference_worker.engine.host import EngineHost

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineSpec:
    """What a worker needs to know about its model (a ChatModel row, flattened)."""

    name: str
    path: str
    prompt_format: str
    context_length: int
    dtype: str
    max_num_seqs: int
    tensor_parallel_size: int
    gpu_memory_utilization: float
    cpu_kv_cache_gib: float
    enforce_eager: bool
    default_temperature: float
    default_top_p: float
    default_max_tokens: int
    default_reasoning_effort: str

    @classmethod
    def from_model(cls, model) -> EngineSpec:
        return cls(**{f: getattr(model, f) for f in cls.__dataclass_fields__})


def _stat_logger_factory(host: EngineHost):
    from vllm.v1.metrics.loggers import StatLoggerBase

    class EngineStats(StatLoggerBase):
        """Keeps the engine scheduler's running / waiting counts for the heartbeat."""

        def __init__(self, vllm_config, engine_index: int = 0) -> None:
            pass

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx: int = 0) -> None:
            if scheduler_stats is not None:
                host.engine_running = scheduler_stats.num_running_reqs
                host.engine_waiting = scheduler_stats.num_waiting_reqs

        def log_engine_initialized(self) -> None:
            pass

    return EngineStats


class ProcessMemory:
    """The resident memory of this worker and of its engine's processes.

    Finding the processes reads every process on the host (psutil scans /proc), on the
    loop that relays tokens, at every beat (docs/PERFORMANCE.md, "Where the cores go").
    So they are found once per engine, and again when one of them is gone.
    """

    def __init__(self) -> None:
        self.procs: list[psutil.Process] | None = None
        self.engine = None  # the engine procs were found for

    def rss(self, engine) -> int:
        if self.procs is None or self.engine is not engine:
            me = psutil.Process()
            self.procs, self.engine = [me, *me.children(recursive=True)], engine
        rss = 0
        for proc in self.procs:
            try:
                rss += proc.memory_info().rss
            except psutil.Error:
                self.procs = None  # it ended (an unload): look again next beat
        return rss


class Lifecycle:
    """A mixin of EngineHost: it owns the engine and the host's state, and tells the web
    tier of each change of state through Heartbeat's _beat()."""

    spec: EngineSpec
    loop: asyncio.AbstractEventLoop
    scripted_logits: bool
    idle_seconds: float
    requests: dict[str, RequestState]
    last_activity: float
    engine: Any
    state: str
    is_cpu: bool
    builder: Any
    loads: int
    load_error: str
    _load_lock: asyncio.Lock | None
    _process_memory: ProcessMemory

    def _engine_args(self):
        from vllm.config import StructuredOutputsConfig
        from vllm.engine.arg_utils import AsyncEngineArgs

        spec = self.spec
        kwargs: dict[str, Any] = {
            "model": spec.path,
            "tokenizer": spec.path,
            "dtype": spec.dtype,
            "max_model_len": spec.context_length,
            "max_num_seqs": spec.max_num_seqs,
            "tensor_parallel_size": spec.tensor_parallel_size,
            "enforce_eager": spec.enforce_eager,
            "seed": 0,
            "disable_log_stats": False,
            # Structured outputs write JSON with no free whitespace, as OpenAI's own answers
            # are: with whitespace free a model can pad forever (the tiny test model filled
            # a strict call's 300 tokens with spaces and tabs after the last value). xgrammar
            # reads this for the whole engine, not per request.
            "structured_outputs_config": StructuredOutputsConfig(backend="xgrammar", disable_any_whitespace=True),
        }
        if self.is_cpu:
            kwargs["kv_cache_memory_bytes"] = int(spec.cpu_kv_cache_gib * 2**30)
        else:
            kwargs["gpu_memory_utilization"] = spec.gpu_memory_utilization
            kwargs["enable_sleep_mode"] = True
        if self.scripted_logits:
            kwargs["logits_processors"] = ["inference_worker.testing:ScriptedTokens"]
        return AsyncEngineArgs(**kwargs)

    def _build_engine(self):
        from vllm.platforms import current_platform
        from vllm.v1.engine.async_llm import AsyncLLM

        self.is_cpu = current_platform.device_type == "cpu"
        if self.builder is None:
            self.builder = prompt_builder_for(
                prompt_format=self.spec.prompt_format, context_length=self.spec.context_length, path=self.spec.path
            )
        return AsyncLLM.from_engine_args(self._engine_args(), stat_loggers=[_stat_logger_factory(self)])

    async def _load(self) -> None:
        """Load the engine, or wake it from sleep (GPU)."""
        async with self._load_lock:
            if self.state in SERVING:
                return
            started = time.monotonic()
            if self.engine is not None and self.state == WorkerState.SLEEPING:
                self.state = WorkerState.LOADING
                await self.engine.wake_up()
            else:
                self.state = WorkerState.LOADING
                await self._beat()
                try:
                    self.engine = await self.loop.run_in_executor(None, self._build_engine)
                except Exception as exc:  # noqa: BLE001 - reported through the heartbeat
                    log.exception("engine failed to load")
                    self.state = WorkerState.ERROR
                    self.load_error = f"{exc.__class__.__name__}: {exc}"
                    await self._beat()
                    return
            self.loads += 1
            self.state = WorkerState.READY
            self.last_activity = time.monotonic()
            log.info("engine %s ready in %.1f s", self.spec.name, time.monotonic() - started)
            await self._beat()

    async def _unload(self, *, final: bool = False) -> None:
        async with self._load_lock:
            if self.engine is None:
                return
            if not final and (self.requests or self.state != WorkerState.READY):
                return  # a request came in while the lock was awaited: stay loaded
            # Not "ready" from here on: a request arriving during the unload (an engine
            # shutdown takes seconds) waits for the lock in _load and reloads, instead of
            # finding the engine gone under it.
            self.state = WorkerState.UNLOADING
            await self._beat()
            try:
                if not final and not self.is_cpu:
                    await self.engine.sleep(level=1)  # weights and KV cache leave the GPU
                else:
                    engine, self.engine = self.engine, None
                    await self.loop.run_in_executor(None, engine.shutdown)
            except Exception:  # noqa: BLE001 - a failed sleep leaves the engine awake and usable
                log.exception("unloading %s failed", self.spec.name)
                self.state = WorkerState.READY if self.engine is not None else WorkerState.SLEEPING
                self.last_activity = time.monotonic()
                await self._beat()
                return
            self.state = WorkerState.SLEEPING
            log.info("engine %s unloaded after %.0f s idle", self.spec.name, self.idle_seconds)
            await self._beat()

    async def _idle_watcher(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, max(self.idle_seconds / 4, 0.1)))
            idle = time.monotonic() - self.last_activity
            if self.state == WorkerState.READY and not self.requests and idle >= self.idle_seconds:
                try:
                    await self._unload()
                except Exception:  # noqa: BLE001 - keep watching; the next idle period tries again
                    log.exception("idle unload failed")

    def memory(self) -> tuple[int, int]:
        if not self.is_cpu:
            try:
                import pynvml

                pynvml.nvmlInit()
                index = int((os.environ.get("CUDA_VISIBLE_DEVICES") or "0").split(",")[0])
                info = pynvml.nvmlDeviceGetMemoryInfo(pynvml.nvmlDeviceGetHandleByIndex(index))
                return int(info.used), int(info.total)
            except Exception:  # noqa: BLE001 - fall back to host memory
                pass
        return self._process_memory.rss(self.engine), psutil.virtual_memory().total


def cpu_engine_env() -> None:
    """Give a CPU engine every core this process may use (unless told otherwise).

    Call before vLLM is imported; the worker and the benchmarks both do."""
    cores = sorted(os.sched_getaffinity(0))
    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", f"{cores[0]}-{cores[-1]}" if cores else "auto")
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
