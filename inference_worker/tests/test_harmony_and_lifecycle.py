"""gpt-oss end to end through the real engine, and a worker's idle unload / reload.

The tiny gpt-oss has random weights, which never emit harmony's channel tokens, so
the worker (started with CHATWEB_SCRIPTED_LOGITS=1) forces a scripted harmony
sequence through a test-only logits processor. Everything else is the real path:
harmony prompt, vLLM, StreamableParser, coalescing, Redis, storage.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from conftest import (
    GPT_OSS_ANSWER,
    GPT_OSS_IDLE_SECONDS,
    GPT_OSS_REASONING,
    ensure_model_row,
    gpt_oss_script,
    turn_job,
)
from conversations.jobs import enqueue
from conversations.models import Conversation, Message
from inference_worker import presence
from inference_worker.presence import new_request_id

pytestmark = [pytest.mark.worker, pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

IDLE_SECONDS = GPT_OSS_IDLE_SECONDS
IDLE_MODEL = "gpt-oss-idle"  # served by idle_gpt_oss_worker, which unloads it after IDLE_SECONDS
REASONING = GPT_OSS_REASONING
ANSWER = GPT_OSS_ANSWER


def new_turn(user, content: str, model_name: str = "gpt-oss-test") -> tuple[dict, Message, str]:
    """A stored question and its queued answer, and the job that answers it (not yet enqueued)."""
    model = ensure_model_row(model_name)
    conv = Conversation.objects.create(owner=user, model=model)
    question = Message.objects.create(conversation=conv, role="user", content=content)
    request_id = new_request_id()
    answer = Message.objects.create(
        conversation=conv,
        parent=question,
        role="assistant",
        status="queued",
        request_id=request_id,
        model_name=model.name,
    )
    job = turn_job(
        request_id=request_id,
        message_id=answer.pk,
        user_id=user.pk,
        messages=[{"role": "user", "content": content}],
        params={"max_tokens": 64, "reasoning_effort": "low"},
        enqueued_at=time.time(),
        script=gpt_oss_script(),
    )
    return job, answer, model.queue


def run_turn(user, content: str, model_name: str = "gpt-oss-test") -> tuple[list[dict], Message]:
    job, answer, queue = new_turn(user, content, model_name)
    events = follow(job, queue)
    answer.refresh_from_db()
    return events, answer


def follow(job: dict, queue: str, on_event=None) -> list[dict]:
    """Enqueue a job and collect its reply group's events up to done / error.

    on_event (async) sees each event as it arrives (to stop the request mid-way)."""
    return follow_all([(job, queue, on_event)])[0]


def follow_all(jobs: list[tuple[object, str, object]]) -> list[list[dict]]:
    """follow() for several jobs at once, enqueued in the order given."""

    async def listen(channel: str, on_event) -> list[dict]:
        events = []
        while True:
            event = await asyncio.wait_for(layer.receive(channel), 180)
            events.append(event)
            if on_event is not None:
                await on_event(event)
            if event["event"] in ("done", "error"):
                return events

    async def main() -> list[list[dict]]:
        channels = []
        for job, _queue, _ in jobs:
            channels.append(await layer.new_channel())
            await layer.group_add(presence.reply_group(job.request_id), channels[-1])
        for job, queue, _ in jobs:
            enqueue(job, queue)
        return list(await asyncio.gather(*(listen(c, on) for c, (_, _, on) in zip(channels, jobs, strict=True))))

    layer = get_channel_layer()
    return async_to_sync(main)()


def test_reasoning_and_answer_arrive_separately_and_are_stored(users, gpt_oss_worker):
    events, stored = run_turn(users.alice, "What is the answer?")
    assert events[-1]["event"] == "done", events[-1]
    deltas = [e for e in events if e["event"] == "delta"]
    reasoning = "".join(d.get("reasoning", "") for d in deltas)
    content = "".join(d.get("content", "") for d in deltas)
    assert reasoning == REASONING
    assert content == ANSWER
    # reasoning streams first, on its own, before any answer text
    first_content = next(i for i, d in enumerate(deltas) if d.get("content"))
    assert any(d.get("reasoning") for d in deltas[:first_content])
    assert events[-1]["usage"]["reasoning_tokens"] > 0
    assert stored.status == "done" and stored.finish_reason == "stop"
    assert stored.reasoning == REASONING and stored.content == ANSWER


def test_an_idle_worker_frees_the_model_and_requests_landing_mid_unload_are_answered_or_stopped(
    users, idle_gpt_oss_worker
):
    """An idle worker unloads its engine, and an engine shutdown takes seconds (vLLM waits
    5 s before it kills the engine process). Two requests land in that window: both are
    told the model loads and wait; the one stopped meanwhile ends before the engine has
    it, the other is answered by the reloaded engine. Between the two engines the memory
    is given back, and the worker's heartbeat never lapses, however long the load holds
    the GIL. (One unload and reload for all of it: each costs a model load, 35 s here.)"""
    import json
    import threading

    run_turn(users.alice, "Warm up.", IDLE_MODEL)  # whatever state an earlier test left the worker in
    loaded = idle_gpt_oss_worker.wait_state(("ready",), 60)
    r = presence.client()
    key = presence.WORKER_PREFIX + idle_gpt_oss_worker.name
    seen: list[tuple[str | None, int, int]] = []
    watching = threading.Event()

    def watch() -> None:
        while not watching.is_set():
            with r.pipeline() as pipe:
                raw, ttl = pipe.get(key).ttl(key).execute()
            beat = json.loads(raw) if raw else {}
            seen.append((beat.get("state"), ttl, beat.get("memory_used", 0)))
            time.sleep(0.05)

    model = ensure_model_row(IDLE_MODEL)
    stopped = turn_job(
        request_id=new_request_id(),
        user_id=users.alice.pk,
        messages=[{"role": "user", "content": "Stop me."}],
        params={"max_tokens": 64},
        script=gpt_oss_script(),
    )

    async def stop_while_loading(event: dict) -> None:
        if event["event"] == "status" and event["state"] == "loading":
            await asyncio.to_thread(presence.request_stop, stopped.request_id)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        # The idle watcher starts the unload IDLE_SECONDS (+ up to 1 s) after the answer:
        # the requests land as soon as it is seen (a read at one fixed instant can miss it on a slow machine).
        idle_gpt_oss_worker.wait_state(("unloading",), IDLE_SECONDS + 10)
        answered, stored, queue = new_turn(users.alice, "Still there?", IDLE_MODEL)
        stop_events, events = follow_all([(stopped, model.queue, stop_while_loading), (answered, queue, None)])
    finally:
        watching.set()
        watcher.join(5)

    assert stop_events[0]["event"] == "status" and stop_events[-1]["event"] == "done", stop_events
    assert stop_events[-1]["status"] == "stopped" and stop_events[-1]["usage"]["completion_tokens"] == 0
    assert not any(e["event"] in ("start", "delta") for e in stop_events), "the engine never had it"

    stored.refresh_from_db()
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and events[0]["state"] == "loading" and "Loading" in events[0]["message"]
    assert kinds[-1] == "done" and stored.status == "done" and stored.content == ANSWER
    assert idle_gpt_oss_worker.wait_state(("ready", "busy"), 10)["loads"] == loaded["loads"] + 1

    states = [state for state, _, _ in seen]
    assert None not in states, "the heartbeat lapsed"
    assert "unloading" in states and "loading" in states
    loading = [(ttl, memory) for state, ttl, memory in seen if state == "loading"]
    assert max(ttl for ttl, _ in loading) > presence.HEARTBEAT_TTL, "a loading worker's heartbeat outlives a long stall"
    # A loading worker counts no engine process until its new engine is built.
    assert min(memory for _, memory in loading) < loaded["memory_used"], "the engine's memory is given back"


def test_a_worker_whose_consumer_stops_taking_jobs_starts_again_and_answers(users, idle_gpt_oss_worker):
    """Its Celery consumer told to stop taking jobs from its queue (Celery's own
    cancel_consumer: the state celery#8030 reports workers left in after the broker went
    away), the worker sees a job wait with a slot free, starts itself again in the same
    process (the same pid: a supervisor sees no exit) and answers it. Before: the job
    waited for ever behind a worker that looked alive."""
    from chatweb.celery import app

    pid = idle_gpt_oss_worker.process.pid  # loaded or not: the new process loads its engine anyway
    queue = ensure_model_row(IDLE_MODEL).queue
    replies = app.control.cancel_consumer(queue, destination=[idle_gpt_oss_worker.name], reply=True, timeout=10)
    assert replies, "the worker took the order"
    events, stored = run_turn(users.alice, "Still there?", IDLE_MODEL)
    assert events[-1]["event"] == "done", events
    assert (stored.status, stored.content) == ("done", ANSWER), (stored.error, events)
    assert idle_gpt_oss_worker.process.poll() is None and idle_gpt_oss_worker.process.pid == pid
    assert "the Celery consumer is stuck" in idle_gpt_oss_worker.log.read_text()
