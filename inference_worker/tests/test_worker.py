"""The real path: websocket -> daphne -> Celery -> worker -> vLLM (CPU) -> Redis -> websocket.

Real Redis, a real daphne, real Celery workers holding the real vLLM engine with
the local SmolLM2 (float32, greedy). Nothing is mocked.
"""

from __future__ import annotations

import asyncio
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from accounts.models import UsageDay
from conftest import ChatSocket, ask, ensure_model_row, page_text, turn_job, wait_for
from conversations.models import Conversation, Message
from inference_worker.models import ChatModel

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]  # `worker`: from the fixtures

FRANCE = "What is the capital of France?"
LONG = "Write a very long story about a dragon who learns to bake bread. Use many chapters."


def conversation(user, model) -> Conversation:
    # titled already: these tests watch the engine, and a first exchange would queue a title job
    return Conversation.objects.create(owner=user, title="test", title_auto=False, model=model)


def test_answer_streams_in_pieces_and_is_stored_as_streamed(live_daphne, users, smollm2):
    conv = conversation(users.alice, smollm2)
    events = ask(live_daphne, users.alice, conv, FRANCE, temperature=0)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "queued" and "start" in kinds and kinds[-1] == "done", events
    deltas = [e for e in events if e["type"] == "delta"]
    assert len(deltas) >= 2, "the answer must arrive in several pieces"
    assert [d["seq"] for d in deltas] == list(range(len(deltas)))
    streamed = "".join(d.get("content", "") for d in deltas)
    assert streamed == "The capital of France is Paris."

    done = events[-1]
    assert done["status"] == "done" and done["finish_reason"] == "stop"
    assert done["usage"]["completion_tokens"] >= 7 and done["usage"]["prompt_tokens"] > 10
    start = next(e for e in events if e["type"] == "start")
    assert start["prompt_tokens"] == done["usage"]["prompt_tokens"] and start["queue_wait_ms"] >= 0

    stored = Message.objects.get(pk=events[0]["message_id"])
    assert stored.status == "done" and stored.content == streamed
    assert stored.model_name == "smollm2-test" and stored.worker.startswith("smollm2-test-cpu@")
    assert stored.completion_tokens == done["usage"]["completion_tokens"]
    assert stored.time_to_first_token_ms > 0 and stored.tokens_per_second > 0
    usage = UsageDay.objects.get(user=users.alice)
    assert usage.requests == 1 and usage.completion_tokens == stored.completion_tokens


def test_the_answer_is_stored_even_if_nobody_listens(live_daphne, users, smollm2):
    conv = conversation(users.alice, smollm2)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    socket.send(type="send", content=FRANCE)
    queued = socket.until("queued")[-1]
    socket.close()  # the tab is closed at once
    message = Message.objects.get(pk=queued["message_id"])
    deadline = time.monotonic() + 120
    while message.status in ("queued", "streaming") and time.monotonic() < deadline:
        time.sleep(0.2)
        message.refresh_from_db()
    assert message.status == "done"
    assert message.content == "The capital of France is Paris."


def test_concurrent_requests_run_together(live_daphne, users, smollm2, smollm2_worker):
    """Batched: six answers sent at once stream side by side, in the order their events
    arrive (not by how long they took: that is for bench/)."""
    arrivals: list[tuple[int, str]] = []  # (answer, event type), in the order received
    lock = threading.Lock()

    def one(index: int, conv) -> None:
        socket = ChatSocket(live_daphne, users.alice, conv.pk)
        try:
            socket.send(type="send", content=LONG, params={"max_tokens": 48, "temperature": 0})
            while True:
                event = socket.recv(timeout=180)
                with lock:
                    arrivals.append((index, event["type"]))
                if event["type"] in ("done", "error"):
                    break
        finally:
            socket.close()
        assert event["type"] == "done", event
        assert event["usage"]["completion_tokens"] == 48

    convs = [conversation(users.alice, smollm2) for _ in range(6)]
    peak = {"in_flight": 0}
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            beat = smollm2_worker.heartbeat() or {}
            peak["in_flight"] = max(peak["in_flight"], beat.get("in_flight", 0))
            time.sleep(0.2)

    watcher = threading.Thread(target=watch)
    watcher.start()
    with ThreadPoolExecutor(len(convs)) as pool:
        for future in [pool.submit(one, n, conv) for n, conv in enumerate(convs)]:
            future.result()
    stop.set()
    watcher.join()
    assert Message.objects.filter(conversation__in=convs, role="assistant", status="done").count() == 6
    # Side by side: at some moment several answers had started and not yet ended.
    streaming, together = set(), 0
    for index, kind in arrivals:
        if kind == "start":
            streaming.add(index)
        elif kind in ("done", "error"):
            streaming.discard(index)
        together = max(together, len(streaming))
    assert together >= 3, arrivals
    assert peak["in_flight"] >= 3, peak


def test_stop_aborts_the_request_inside_the_engine_and_keeps_the_partial_answer(
    live_daphne, users, smollm2, smollm2_worker
):
    conv = conversation(users.alice, smollm2)
    wait_for(lambda: (smollm2_worker.heartbeat() or {}).get("engine_unfinished") == 0, 60, "an idle engine")
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    socket.send(type="send", content=LONG, params={"max_tokens": 1000, "temperature": 0})
    queued = socket.until("queued")[-1]
    deltas = 0
    while deltas < 3:
        deltas += socket.recv()["type"] == "delta"
    # the request in the engine (a busy beat written while it was claimed can say 0)
    wait_for(lambda: (smollm2_worker.heartbeat() or {}).get("engine_unfinished") == 1, 5, "the request in the engine")
    socket.send(type="stop", request_id=queued["request_id"])
    done = socket.until("done", timeout=10)[-1]
    socket.close()
    assert done["status"] == "stopped" and done["finish_reason"] == "abort"
    assert done["usage"]["completion_tokens"] < 1000

    # The engine no longer runs it: its unfinished-request count is back to zero.
    beat = smollm2_worker.wait_state(("ready",), 10)
    assert beat["engine_unfinished"] == 0 and beat["running"] == 0
    message = Message.objects.get(pk=queued["message_id"])
    for _ in range(50):
        if message.status != "streaming":
            break
        time.sleep(0.1)
        message.refresh_from_db()
    assert message.status == "stopped"
    assert message.content and message.completion_tokens == done["usage"]["completion_tokens"]


def test_no_live_worker_is_an_immediate_clear_error(live_daphne, users):
    orphan = ChatModel.objects.create(name="nobody-serves-me", display_name="Orphan", path="/nowhere", queue="orphan")
    conv = conversation(users.alice, orphan)
    events = ask(live_daphne, users.alice, conv, "hello")
    # immediate: the refusal is the answer to the send, before anything is queued
    assert [e["type"] for e in events] == ["error"], events
    assert events[-1]["type"] == "error" and events[-1]["code"] == "no_worker"
    assert "No worker is serving Orphan" in events[-1]["message"]
    assert not Message.objects.filter(conversation=conv).exists(), "a refused send stores nothing"


def test_a_message_too_long_for_the_context_says_so_with_numbers(live_daphne, users, smollm2):
    conv = conversation(users.alice, smollm2)
    events = ask(live_daphne, users.alice, conv, "lorem ipsum " * 1200, max_tokens=64)
    error = events[-1]
    assert error["type"] == "error" and error["code"] == "context_length_exceeded"
    assert f"this model accepts {2048 - 64}" in error["message"] and error["prompt_tokens"] > 2048
    assert not any(e["type"] == "start" for e in events), "no engine call"
    stored = Message.objects.get(pk=events[0]["message_id"])
    assert (stored.status, stored.error_code) == ("failed", "context_length_exceeded")  # a late reader gets it too


def test_another_users_conversation_cannot_be_continued_or_stopped(live_daphne, users, fake_worker):
    conv = conversation(users.alice, fake_worker)
    from websockets.exceptions import ConnectionClosed

    socket = ChatSocket(live_daphne, users.bob, conv.pk)
    with pytest.raises(ConnectionClosed) as closed:
        socket.send(type="send", content="hijack")
        socket.recv(timeout=5)
    assert closed.value.rcvd.code == 4004
    assert not Message.objects.filter(conversation=conv).exists()


def test_bad_frames_get_an_error_and_the_socket_survives(live_daphne, users, fake_worker):
    conv = conversation(users.alice, fake_worker)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        socket.ws.send("{not json")
        assert socket.recv()["code"] == "bad_json"
        socket.ws.send("x" * 300_000)
        assert socket.recv()["code"] == "too_large"
        socket.send(type="send", content="hi", params={"temperature": "hot"})
        assert socket.recv()["code"] == "invalid_params"
        socket.send(type="send", content="   ")
        assert socket.recv()["code"] == "empty_message"
        socket.send(type="ping")
        assert socket.recv()["type"] == "pong"
    finally:
        socket.close()
    assert not Message.objects.filter(conversation=conv).exists()


def test_killed_worker_gives_a_clear_error_and_the_next_request_is_served(live_daphne, users, smollm2, start_worker):
    victim = start_worker("smollm2-test", tag="victim")
    conv = conversation(users.alice, smollm2)
    for _attempt in range(8):
        socket = ChatSocket(live_daphne, users.alice, conv.pk)
        socket.send(type="send", content=LONG, params={"max_tokens": 1000})
        events = socket.until("start", "error")
        assert events[-1]["type"] == "start", events
        if events[-1]["worker"] == victim.name:
            break
        socket.send(type="stop", request_id=events[0]["request_id"])  # the other worker got it: try again
        socket.until("done")
        socket.close()
    else:
        pytest.fail("the second worker never received a request")
    message_id = events[0]["message_id"]
    seen = []
    while len(page_text(seen)) < 20:
        seen.append(socket.recv())
    partial = page_text(seen)
    victim.kill()
    after = socket.until("error", "done", timeout=60)  # told, not left waiting (how soon: bench/)
    error = after[-1]
    # Only what was on its way; or, when the surviving worker's reaper failed the answer
    # before this socket's watchdog looked, the whole text kept, then the end.
    assert {e["type"] for e in after[:-1]} <= {"delta", "resume"}, after
    assert error["type"] == "error", error
    assert error["code"] == "worker_lost" and "partial answer is kept" in error["message"]
    socket.close()
    message = Message.objects.get(pk=message_id)
    assert message.status == "failed" and message.content.startswith(partial)
    assert page_text(seen + after) == message.content  # the page shows what is kept

    ensure_model_row("smollm2-test")
    events = ask(live_daphne, users.alice, conv, FRANCE, temperature=0)
    assert events[-1]["type"] == "done", events[-1]
    assert next(e for e in events if e["type"] == "start")["worker"] != victim.name


def test_health_lists_the_live_workers(client, users, smollm2, smollm2_worker):
    client.force_login(users.admin)  # the workers' details are for admins
    response = client.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "ready"
    names = [w["name"] for w in body["workers"]["smollm2-test"]]
    assert smollm2_worker.name in names
    assert all(w["memory_used"] > 0 and w["memory_total"] > 0 for w in body["workers"]["smollm2-test"])


def test_web_and_worker_recover_from_a_redis_restart(live_daphne, users, smollm2, smollm2_worker, redis_server):
    redis_server.restart()  # queues, heartbeats and channel-layer subscriptions are gone
    smollm2_worker.wait_state(("ready",), 20)  # the worker reconnected by itself
    conv = conversation(users.alice, smollm2)
    events = ask(live_daphne, users.alice, conv, FRANCE, temperature=0)
    assert events[-1]["type"] == "done", events
    assert "".join(e.get("content", "") for e in events if e["type"] == "delta") == "The capital of France is Paris."


def test_a_second_send_while_answering_is_refused_and_the_answer_goes_on(live_daphne, users, smollm2):
    conv = conversation(users.alice, smollm2)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        socket.send(type="send", content=LONG, params={"max_tokens": 40})
        socket.until("start")
        socket.send(type="send", content="another question")
        events = socket.until("done")
    finally:
        socket.close()
    assert [e["code"] for e in events if e["type"] == "error"] == ["busy"]
    assert events[-1]["status"] == "done" and events[-1]["usage"]["completion_tokens"] == 40
    assert Message.objects.filter(conversation=conv).count() == 2


def test_a_reconnecting_socket_resumes_the_answer_in_progress(live_daphne, users, smollm2):
    conv = conversation(users.alice, smollm2)
    first = ChatSocket(live_daphne, users.alice, conv.pk)
    first.send(type="send", content=LONG, params={"max_tokens": 160, "ignore_eos": True})
    queued = first.until("queued")[-1]
    seen = "".join(e.get("content", "") for e in first.until("delta"))
    first.close()  # the connection drops mid-answer
    wait_for(  # the worker goes on meanwhile
        lambda: len(Message.objects.get(pk=queued["message_id"]).content) > len(seen), 20, "the answer to go on"
    )
    second = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        resume = second.recv()
        assert resume["type"] == "resume" and resume["message_id"] == queued["message_id"]
        assert second.ready == {"type": "ready", "active": queued["message_id"]}
        assert resume["content"].startswith(seen) and len(resume["content"]) > len(seen), (seen, resume)
        rest = second.until("done")
    finally:
        second.close()
    stored = Message.objects.get(pk=queued["message_id"])
    assert stored.status == "done" and stored.completion_tokens == rest[-1]["usage"]["completion_tokens"]
    # The resumed page (snapshot + later deltas) shows exactly the stored answer: no gap, no repeat.
    later = "".join(e.get("content", "") for e in rest if e["type"] == "delta")
    assert resume["content"] + later == stored.content


def test_a_job_whose_message_was_taken_meanwhile_is_dropped_without_a_word(users, smollm2, smollm2_worker):
    """The engine builds the prompt while the task claims the message; a message no longer
    queued (here failed by the web tier) loses the claim: no event, no answer, its running
    slot given back. A job queued behind it still runs."""
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from accounts.quotas import PREFIX, quota_acquire
    from conversations.jobs import enqueue
    from inference_worker import presence
    from inference_worker.presence import new_request_id

    conv = conversation(users.alice, smollm2)
    question = Message.objects.create(conversation=conv, role="user", content=FRANCE)
    jobs = []
    for status in ("failed", "queued"):
        request_id = new_request_id()
        answer = Message.objects.create(
            conversation=conv,
            parent=question,
            role="assistant",
            status=status,
            request_id=request_id,
            model_name=smollm2.name,
        )
        quota_acquire(user=users.alice, request_id=request_id)
        jobs.append(
            turn_job(
                request_id=request_id,
                message_id=answer.pk,
                user_id=users.alice.pk,
                conversation_id=conv.pk,
                model=smollm2.name,
                messages=[{"role": "user", "content": FRANCE}],
                params={"temperature": 0, "max_tokens": 8},
            )
        )
    taken, behind = jobs

    async def listen() -> tuple[list[dict], list[dict]]:
        layer = get_channel_layer()
        channels = []
        for job in jobs:
            channels.append(await layer.new_channel())
            await layer.group_add(presence.reply_group(job.request_id), channels[-1])
        for job in jobs:  # one queue, in this order: the worker meets `taken` first
            enqueue(job, smollm2.queue)
        events = [await asyncio.wait_for(layer.receive(channels[1]), 180)]
        while events[-1]["event"] not in ("done", "error"):
            events.append(await asyncio.wait_for(layer.receive(channels[1]), 180))
        try:  # `taken` was dropped long before `behind` finished: anything it sent is here by now
            said = [await asyncio.wait_for(layer.receive(channels[0]), 1)]
        except TimeoutError:
            said = []
        return said, events

    said, events = async_to_sync(listen)()
    assert events[-1]["event"] == "done", events
    assert said == [], said
    assert Message.objects.get(pk=behind.message_id).status == "done"
    dropped = Message.objects.get(pk=taken.message_id)
    assert dropped.status == "failed" and dropped.content == "" and not dropped.worker
    running = presence.client().zrange(f"{PREFIX}running:{users.alice.pk}", 0, -1)
    assert running == [], running
