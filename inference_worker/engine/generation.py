"""Generation: one request from submit() to finish(), on the engine loop.

submit() is called from a Celery task thread; the request runs as a coroutine on the
engine loop (sampling parameters, prompt, the engine's stream, parsed into content and
reasoning), and the task thread calls finish() once it has stored the outcome, which
publishes the final event.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime
import logging
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from inference_worker import presence
from inference_worker.engine.coalescer import Coalescer
from inference_worker.engine.steering import Steering, format_grammar
from inference_worker.events import SERVING, Event, WorkerState
from inference_worker.jobs import Generation, ToolRunner
from inference_worker.prompts import PromptTooLong

if TYPE_CHECKING:
    from inference_worker.engine.lifecycle import EngineSpec

log = logging.getLogger(__name__)

OUTCOME_RETRY_SECONDS = 20.0  # within finish()'s 30 s: how long an end waits for Redis to come back


class InvalidParams(ValueError):
    """A sampling parameter the engine cannot take (`param` names it, as vLLM's own errors do)."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass
class RequestState:
    request_id: str
    enqueued_at: float
    started_at: float = field(default_factory=time.time)
    content: str = ""
    reasoning: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0
    first_token_at: float | None = None
    finished_at: float | None = None
    finish_reason: str = ""
    status: str = "queued"  # streaming / done / stopped / failed
    error: str = ""
    error_code: str = ""
    aborted: bool = False
    final_event: dict[str, Any] | None = None  # "done" or "error", sent once the result is stored
    tool_calls: list[dict[str, str]] = field(default_factory=list)  # id, name, arguments
    extra_choices: list[dict[str, Any]] = field(default_factory=list)  # n > 1: the other choices, whole
    engine_id: str = ""  # the engine's request now (a steered harmony answer takes more than one)
    tool_steps: list[dict[str, Any]] = field(default_factory=list)  # built-in tool calls, as users see them
    tool_limit_passed: bool = False  # the model called a tool again after being told a limit was reached

    def __post_init__(self) -> None:
        self.engine_id = self.engine_id or self.request_id

    def timings(self) -> dict[str, float | None]:
        ttft = (self.first_token_at - self.started_at) * 1000 if self.first_token_at else None
        tps = None
        if self.first_token_at and self.finished_at and self.completion_tokens > 1:
            span = self.finished_at - self.first_token_at
            tps = (self.completion_tokens - 1) / span if span > 0 else None
        return {"time_to_first_token_ms": ttft, "tokens_per_second": tps}

    def snapshot(self) -> dict[str, Any]:
        return {
            "content": self.content,
            "reasoning": self.reasoning,
            "status": self.status,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "reasoning_tokens": self.reasoning_tokens,
            "finish_reason": self.finish_reason,
            "error": self.error,
            "error_code": self.error_code,
            "tool_steps": self.tool_steps,
            **self.timings(),
        }


class Generating:
    """A mixin of EngineHost: it runs each request from submit() to finish(). It loads the
    engine through Lifecycle's _load(), streams through Streaming's _stream() and publishes
    through Publishing's reply()."""

    spec: EngineSpec
    worker_name: str
    loop: asyncio.AbstractEventLoop
    scripted_logits: bool
    default_script: list[int] | None
    scripts: dict[str, list[int]]
    state: str
    engine: Any
    builder: Any
    load_error: str
    requests: dict[str, RequestState]
    held: set[str]
    coalescers: dict[str, Coalescer]
    last_activity: float
    submitted: int
    _redis: Any

    def submit(
        self, job: Generation, claimed: concurrent.futures.Future | None = None, tools: ToolRunner | None = None
    ) -> tuple[RequestState, concurrent.futures.Future]:
        """Run `job` on the engine. `claimed`, if given, resolves to whether this worker won
        the job's message (the task thread claims it meanwhile): the engine checks for a
        stop and builds the prompt while it waits, and drops the request on False before
        anything is published or generated. `tools` runs the built-in tool calls of a job
        that enables them."""
        if job.builtin_tools and tools is None:
            raise ValueError("a job with built-in tools needs a ToolRunner")
        self.submitted += 1  # the consumer watch: a job was taken
        state = RequestState(request_id=job.request_id, enqueued_at=job.enqueued_at)
        self.held.add(state.request_id)
        self.requests[state.request_id] = state
        future = asyncio.run_coroutine_threadsafe(self._generate(job, state, claimed, tools), self.loop)
        return state, future

    def vocab_size(self) -> int | None:
        """The loaded model's vocabulary (token ids below it are the model's); None unloaded."""
        engine = self.engine
        return engine.model_config.get_vocab_size() if engine is not None else None

    @staticmethod
    async def _won(claimed: concurrent.futures.Future | None) -> bool:
        return claimed is None or bool(await asyncio.wrap_future(claimed))

    async def _stopped_before_start(self, request_id: str) -> bool:
        try:
            return bool(await self._redis.exists(presence.STOP_PREFIX + request_id))
        except Exception:  # noqa: BLE001
            return False

    def _sampling_params(self, job: Generation, prompt):
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        p = job.params
        spec = self.spec
        extra = None
        script = None
        if self.scripted_logits:
            by_question = self.scripts.get(job.messages[-1].content) if job.messages else None
            script = job.script or by_question or self.default_script
        if script:
            from inference_worker.testing import SCRIPT_ARG

            extra = {SCRIPT_ARG: script}
        vocab = self.vocab_size()
        if vocab and (outside := p.outside(vocab)) is not None:
            name = outside[0]
            raise InvalidParams(name, f"{name}: token ids outside the model's vocabulary of {vocab:,}")
        pick = lambda value, default: default if value is None else value  # noqa: E731
        return SamplingParams(
            temperature=pick(p.temperature, spec.default_temperature),
            top_p=pick(p.top_p, spec.default_top_p),
            top_k=pick(p.top_k, 0),
            min_p=pick(p.min_p, 0.0),
            max_tokens=p.max_tokens or spec.default_max_tokens,
            min_tokens=pick(p.min_tokens, 0),
            repetition_penalty=pick(p.repetition_penalty, 1.0),
            presence_penalty=pick(p.presence_penalty, 0.0),
            frequency_penalty=pick(p.frequency_penalty, 0.0),
            seed=p.seed,
            ignore_eos=bool(p.ignore_eos),  # benchmarks: fixed-length answers
            stop=p.stop or None,
            stop_token_ids=[*prompt.stop_token_ids, *(p.stop_token_ids or [])] or None,
            logit_bias={int(t): bias for t, bias in p.logit_bias.items()} if p.logit_bias else None,
            # harmony: only the final answer is constrained (Streaming._stream's second step)
            structured_outputs=format_grammar(job.response_format) if self.spec.prompt_format != "harmony" else None,
            output_kind=RequestOutputKind.DELTA,
            detokenize=self.spec.prompt_format != "harmony",
            extra_args=extra,
            logprobs=job.logprobs,
            n=job.n,
        )

    async def _generate(
        self,
        job: Generation,
        state: RequestState,
        claimed: concurrent.futures.Future | None = None,
        tools: ToolRunner | None = None,
    ) -> RequestState:
        rid = state.request_id
        # Before any await: a snapshot request must always find this request's coalescer.
        self.coalescers[rid] = Coalescer(self, rid, self.publish_interval)
        try:
            if await self._stopped_before_start(rid):
                return self._stopped(state)
            if self.state not in SERVING:
                if not await self._won(claimed):  # say nothing about a message that is not ours
                    return self._dropped(state)
                await self.reply(
                    rid,
                    {
                        "event": Event.STATUS,
                        "state": WorkerState.LOADING,
                        "worker": self.worker_name,
                        "message": f"Loading {self.spec.name}; your answer starts when it is ready.",
                    },
                )
                await self._load()
                if self.state not in SERVING:
                    raise RuntimeError(f"the model could not be loaded ({self.load_error})")
                if state.aborted or await self._stopped_before_start(rid):  # stopped while it loaded
                    return self._stopped(state)
            max_tokens = job.params.max_tokens or self.spec.default_max_tokens
            try:
                prompt = self.builder.build(
                    history=[m.model_dump() for m in job.messages],
                    system_prompt=job.system_prompt,
                    max_tokens=max_tokens,
                    options={
                        "reasoning_effort": job.params.reasoning_effort or self.spec.default_reasoning_effort,
                        "date": job.date or datetime.date.today().isoformat(),
                        "tools": [t.model_dump() for t in job.tools],
                        "tool_choice": job.tool_choice,
                        "builtin_tools": job.builtin_tools if self.spec.prompt_format == "harmony" else [],
                    },
                )
            except PromptTooLong as exc:
                state.status, state.error, state.error_code = "failed", str(exc), "context_length_exceeded"
                state.final_event = {
                    "event": Event.ERROR,
                    "message": str(exc),
                    "code": state.error_code,
                    "prompt_tokens": exc.tokens,
                    "limit": exc.limit,
                }
                return state
            state.prompt_tokens = len(prompt.token_ids)
            try:
                sampling = self._sampling_params(job, prompt)
            except ValueError as exc:  # admission checks these; a model it knew nothing of yet, here
                param = getattr(exc, "parameter", None) or getattr(exc, "param", None)
                state.status, state.error, state.error_code = "failed", str(exc), "invalid_params"
                state.final_event = {
                    "event": Event.ERROR,
                    "message": str(exc),
                    "code": state.error_code,
                    "param": param,
                }
                return state
            if not await self._won(claimed):
                return self._dropped(state)
            state.started_at = time.time()
            state.status = "streaming"
            self.coalescers[rid].lead(
                {
                    "event": Event.START,
                    "worker": self.worker_name,
                    "model": self.spec.name,
                    "queue_wait_ms": max(0.0, (state.started_at - state.enqueued_at) * 1000),
                    "prompt_tokens": state.prompt_tokens,
                    "dropped_messages": prompt.dropped,
                }
            )
            for step in job.steps:
                state.tool_steps.append(dict(step))
                await self.coalescers[rid].step(dict(step))
            await self._stream(
                prompt,
                sampling,
                state,
                Steering(job.tools, job.tool_choice, job.response_format),
                job.logprobs,
                tools,
                frozenset(job.builtin_tools),
            )
            return state
        except Exception as exc:  # noqa: BLE001 - every failure reaches the user as an error event
            log.exception("generation %s failed", rid)
            state.status = "failed"
            state.error = f"The model failed while answering ({exc.__class__.__name__}: {exc}). Retry, or ask an admin."
            state.error_code = "engine_error"
            state.final_event = {"event": Event.ERROR, "message": state.error, "code": state.error_code}
            return state
        finally:
            state.finished_at = state.finished_at or time.time()
            self.requests.pop(rid, None)
            coalescer = self.coalescers.pop(rid, None)
            self.last_activity = time.monotonic()
            if coalescer is not None:
                await coalescer.led()  # "start" goes out before the final event

    @staticmethod
    def _dropped(state: RequestState) -> RequestState:
        """A request whose message another claimed first (stopped, deleted or failed while queued)."""
        state.status, state.final_event = "dropped", None
        return state

    def _stopped(self, state: RequestState) -> RequestState:
        """A request stopped before the engine had it: nothing written, nothing to abort."""
        state.status, state.finish_reason = "stopped", "abort"
        state.final_event = {"event": Event.DONE, "status": "stopped", "finish_reason": "abort", **self._usage(state)}
        return state

    def finish(self, state: RequestState) -> None:
        """Publish the final event (from the task thread, after the result is stored)."""
        try:
            if state.final_event is not None:
                future = asyncio.run_coroutine_threadsafe(self._end(state), self.loop)
                future.result(timeout=30)
        finally:
            self.held.discard(state.request_id)

    async def _end(self, state: RequestState) -> None:
        """Keep the outcome, then publish the end. A reader that lost the end (Redis restarted
        as the answer ended) mends it from the outcome, so the outcome waits for Redis to be
        back, up to OUTCOME_RETRY_SECONDS; meanwhile the request stays in the heartbeat's
        `requests`, and a reader that finds neither the request there nor its outcome knows
        the end is lost (conversations.follower.check_after_silence)."""
        deadline = time.monotonic() + OUTCOME_RETRY_SECONDS
        delay = 0.2
        while True:
            try:
                await presence.keep_outcome(
                    self._redis,
                    state.request_id,
                    state.final_event,
                    state.content,
                    state.reasoning,
                    "".join(c["arguments"] for c in state.tool_calls),
                )
                break
            except Exception as exc:  # noqa: BLE001 - Redis away: wait for it
                if time.monotonic() + delay > deadline:
                    log.warning("keeping the outcome of %s failed (%s); given up", state.request_id, exc)
                    break
                log.warning("keeping the outcome of %s failed (%s); retrying", state.request_id, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)
        await self.reply(state.request_id, state.final_event)

    @staticmethod
    def _usage(state: RequestState) -> dict[str, Any]:
        return {
            "usage": {
                "prompt_tokens": state.prompt_tokens,
                "completion_tokens": state.completion_tokens,
                "total_tokens": state.prompt_tokens + state.completion_tokens,
                "reasoning_tokens": state.reasoning_tokens,
            },
            **state.timings(),
        }
