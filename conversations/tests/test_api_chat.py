"""The official openai client against a live daphne, the real worker and engine: sync and async,
streaming and not; usage counted per user and per key; a client that leaves stops its request."""

from __future__ import annotations

import asyncio
import json
import os
import time

import httpx
import openai
import pytest

from accounts.models import ApiKey, UsageDay
from accounts.services import api_key_create
from conftest import BREAD, GPT_OSS_ANSWER, GPT_OSS_REASONING, ensure_model_row, wait_for
from conversations.models import Conversation, Message
from inference_worker import presence

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]  # `worker`: from the fixtures

FRANCE = [{"role": "user", "content": "What is the capital of France?"}]
PARIS = "The capital of France is Paris."
LONG = [{"role": "user", "content": "Write a very long story about a dragon who learns to bake bread."}]


def client(server, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/api", api_key=key, max_retries=0, timeout=180)


def test_sync_client_gets_a_well_formed_answer_and_usage(live_daphne, users, smollm2, key):
    answer = client(live_daphne, key).chat.completions.create(model="smollm2-test", messages=FRANCE, temperature=0)
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.model == "smollm2-test" and answer.created <= time.time()
    (choice,) = answer.choices
    assert choice.message.role == "assistant" and choice.message.content == PARIS
    assert choice.finish_reason == "stop"
    assert answer.usage.prompt_tokens > 10 and answer.usage.completion_tokens >= 7
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + answer.usage.completion_tokens
    assert answer.usage.completion_tokens_details.reasoning_tokens == 0

    row = ApiKey.objects.get(user=users.alice)
    wait_for(lambda: ApiKey.objects.get(pk=row.pk).requests == 1, 10, "the key's usage")
    row.refresh_from_db()
    assert row.completion_tokens == answer.usage.completion_tokens and row.last_used is not None
    assert UsageDay.objects.get(user=users.alice).completion_tokens == answer.usage.completion_tokens
    assert not Conversation.objects.exists(), "a key that does not save history stores no conversation"

    # content as text parts are fine
    parts = [
        {
            "role": "user",
            "content": [{"type": "text", "text": "What is the capital "}, {"type": "text", "text": "of France?"}],
        }
    ]
    again = client(live_daphne, key).chat.completions.create(
        model="smollm2-test", messages=parts, temperature=0, extra_body={"top_k": 5, "logit_bias": {}}
    )
    assert again.choices[0].message.content == PARIS


def test_vllms_sampling_extensions_change_the_answer_as_they_say(live_daphne, users, smollm2, key):
    """top_k, min_p, min_tokens, logit_bias and stop_token_ids, as clients send them in
    extra_body, reach the engine (before: all but top_k were refused as unknown, and top_k
    was dropped). Each is seen in what SmolLM2 writes: its greedy answer is PARIS."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(ensure_model_row("smollm2-test").path)
    (the,) = tokenizer.encode("The", add_special_tokens=False)
    (paris,) = tokenizer.encode(" Paris", add_special_tokens=False)
    api = client(live_daphne, key)

    def ask(**extra):
        answer = api.chat.completions.create(model="smollm2-test", messages=FRANCE, max_tokens=40, extra_body=extra)
        return answer.choices[0], answer.usage

    hot = {"temperature": 1.8, "seed": 7}
    assert ask(top_k=1, **hot)[0].message.content == PARIS  # one token to choose from: greedy
    assert ask(min_p=1.0, **hot)[0].message.content == PARIS  # only the likeliest token is kept
    banned, _ = ask(temperature=0, logit_bias={str(the): -100})
    assert banned.message.content and not banned.message.content.startswith("The")
    stopped, _ = ask(temperature=0, stop_token_ids=[paris])
    assert stopped.message.content == PARIS.split(" Paris")[0] and stopped.finish_reason == "stop"
    longer, usage = ask(temperature=0, min_tokens=25)
    assert longer.message.content.startswith(PARIS) and usage.completion_tokens >= 25

    # The live worker reports the model's vocabulary: an id past it is a 400 before any work.
    with pytest.raises(openai.BadRequestError) as refused:
        ask(logit_bias={str(len(tokenizer)): 5})
    assert refused.value.body["param"] == "logit_bias"


def test_sync_client_streams_in_chunks_ending_with_usage(live_daphne, users, smollm2, key):
    chunks = list(
        client(live_daphne, key).chat.completions.create(
            model="smollm2-test",
            messages=FRANCE,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.object == "chat.completion.chunk" and c.id == chunks[0].id for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == PARIS
    assert sum(1 for c in chunks if c.choices and c.choices[0].delta.content) >= 2, "several pieces"
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens >= 7


def test_ignore_eos_writes_exactly_max_tokens(live_daphne, users, smollm2, key):
    """vLLM's extension, so one benchmark client drives vLLM's server and chatweb alike."""
    answer = client(live_daphne, key).chat.completions.create(
        model="smollm2-test", messages=FRANCE, temperature=0, max_tokens=30, extra_body={"ignore_eos": True}
    )
    assert answer.choices[0].finish_reason == "length"
    assert answer.usage.completion_tokens == 30 and answer.choices[0].message.content.startswith(PARIS)


def test_async_client_streaming_and_not(live_daphne, users, smollm2, key):
    async def main() -> tuple[str, str]:
        aclient = openai.AsyncOpenAI(base_url=f"{live_daphne.url}/api/v1", api_key=key, max_retries=0)
        whole, stream = await asyncio.gather(
            aclient.chat.completions.create(model="smollm2-test", messages=FRANCE, temperature=0),
            aclient.chat.completions.create(model="smollm2-test", messages=FRANCE, temperature=0, stream=True),
        )
        streamed = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        return whole.choices[0].message.content, streamed

    whole, streamed = asyncio.run(main())
    assert whole == streamed == PARIS


def test_gpt_oss_reasoning_comes_as_reasoning_content(live_daphne, users, gpt_oss, key):
    api = client(live_daphne, key)
    answer = api.chat.completions.create(model="gpt-oss-test", messages=FRANCE, reasoning_effort="low")
    message = answer.choices[0].message
    assert message.content == GPT_OSS_ANSWER
    assert message.model_extra["reasoning_content"] == message.model_extra["reasoning"] == GPT_OSS_REASONING
    assert answer.usage.completion_tokens_details.reasoning_tokens > 0
    chunks = list(api.chat.completions.create(model="gpt-oss-test", messages=FRANCE, stream=True))
    reasoning = "".join((c.choices[0].delta.model_extra or {}).get("reasoning_content") or "" for c in chunks)
    content = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert reasoning == GPT_OSS_REASONING and content == GPT_OSS_ANSWER


def test_reasoning_stays_hidden_from_keys_of_users_the_site_excludes(live_daphne, users, gpt_oss, key):
    """Site settings' "who sees model reasoning" holds on the API as in the chat."""
    from accounts.models import SiteSettings

    site = SiteSettings.load()
    site.reasoning_visibility = "admins"
    site.save()
    api = client(live_daphne, key)  # alice's
    answer = api.chat.completions.create(model="gpt-oss-test", messages=FRANCE, reasoning_effort="low")
    extra = answer.choices[0].message.model_extra or {}
    assert answer.choices[0].message.content == GPT_OSS_ANSWER
    assert not extra.get("reasoning_content") and not extra.get("reasoning"), extra
    chunks = list(api.chat.completions.create(model="gpt-oss-test", messages=FRANCE, stream=True))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == GPT_OSS_ANSWER
    assert not any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in chunks if c.choices)
    assert not any((c.choices[0].delta.model_extra or {}).get("reasoning") for c in chunks if c.choices)


def test_the_days_last_tokens_cut_an_answer_short_and_then_refuse(live_daphne, users, smollm2, key):
    """max_tokens is reserved against what the day has left: the answer may write only that."""
    from accounts.models import User
    from accounts.quotas import quota_add_tokens

    User.objects.filter(pk=users.alice.pk).update(tokens_per_day=1000)
    quota_add_tokens(user_id=users.alice.pk, tokens=995)
    api = client(live_daphne, key)
    answer = api.chat.completions.create(model="smollm2-test", messages=LONG, max_tokens=64, temperature=0)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 5
    with pytest.raises(openai.RateLimitError) as refused:
        api.chat.completions.create(model="smollm2-test", messages=FRANCE, max_tokens=64)
    assert refused.value.body["code"] == "tokens_exhausted"


def test_a_prompt_over_the_context_is_400_with_the_numbers(live_daphne, users, smollm2, key):
    huge = [{"role": "user", "content": "bread " * 3000}]
    with pytest.raises(openai.BadRequestError) as refused:
        client(live_daphne, key).chat.completions.create(model="smollm2-test", messages=huge)
    error = refused.value.body
    assert refused.value.status_code == 400 and error["code"] == "context_length_exceeded"
    assert "2,048" in error["message"] or "2048" in error["message"]


def test_a_client_that_disconnects_mid_stream_stops_its_request(live_daphne, users, smollm2, smollm2_worker, key):
    wait_for(lambda: (smollm2_worker.heartbeat() or {}).get("engine_unfinished") == 0, 60, "an idle engine")
    body = {"model": "smollm2-test", "messages": LONG, "max_tokens": 1000, "stream": True}
    with httpx.stream(
        "POST", f"{live_daphne.url}/api/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}
    ) as response:
        assert response.status_code == 200
        lines = response.iter_lines()  # (breaking out of a loop over it would close the connection already)
        assert [next(lines).startswith("data: ") for _ in range(4)].count(True) >= 2
        wait_for(lambda: smollm2_worker.heartbeat()["engine_unfinished"] == 1, 5, "the request in the engine")
    # the connection is closed: the engine stops the request within moments
    beat = wait_for(lambda: (b := smollm2_worker.heartbeat()) and b["engine_unfinished"] == 0 and b, 15, "the abort")
    assert beat["running"] == 0
    row = ApiKey.objects.get(user=users.alice)
    wait_for(lambda: ApiKey.objects.get(pk=row.pk).requests == 1, 10, "the usage of the stopped call")
    assert 0 < ApiKey.objects.get(pk=row.pk).completion_tokens < 1000
    assert not Message.objects.exists()


def test_limits_stop_the_api_and_the_chat_alike(live_daphne, users, smollm2, key):
    from conftest import ChatSocket

    users.alice.requests_per_minute = 1
    users.alice.save()
    api = client(live_daphne, key)
    assert api.chat.completions.create(model="smollm2-test", messages=FRANCE).choices[0].message.content == PARIS
    with pytest.raises(openai.RateLimitError) as refused:
        api.chat.completions.create(model="smollm2-test", messages=FRANCE)
    assert refused.value.status_code == 429 and refused.value.body["code"] == "rate_limited"
    assert 1 <= int(refused.value.response.headers["retry-after"]) <= 61
    # the chat says the same, in words, and stores nothing
    conv = Conversation.objects.create(owner=users.alice, model=smollm2, title="t", title_auto=False)
    socket = ChatSocket(live_daphne, users.alice, conv.pk)
    try:
        socket.send(type="send", content="Hello?")
        event = socket.recv()
    finally:
        socket.close()
    assert event["type"] == "error" and event["code"] == "rate_limited"
    assert "limit of 1 request per minute" in event["message"]
    assert not Message.objects.filter(conversation=conv).exists()


def test_a_key_that_saves_history_stores_the_call_as_its_owners_conversation(live_daphne, users, smollm2):
    row, saving = api_key_create(user=users.alice, name="saver", save_history=True)
    system = {"role": "system", "content": "Be brief."}
    answer = client(live_daphne, saving).chat.completions.create(
        model="smollm2-test", messages=[system, *FRANCE], temperature=0
    )
    conversation = Conversation.objects.get()
    assert conversation.owner == users.alice and conversation.system_prompt == "Be brief."
    question, reply = conversation.messages.order_by("pk")
    assert (question.role, question.content) == ("user", FRANCE[0]["content"])
    assert reply.parent == question and reply.status == "done"
    assert reply.content == answer.choices[0].message.content
    # bob sees none of it
    from django.test import Client

    bob = Client()
    bob.force_login(users.bob)
    assert bob.get(f"/c/{conversation.pk}/").status_code == 404
    assert conversation.pk not in [c["id"] for c in bob.get("/c/list").json()["conversations"]]


def test_a_full_queue_is_503_with_retry_after(asgi_api, users, fake_worker, key, settings):
    settings.MAX_QUEUE_LENGTH = 0  # whatever waits (nothing) is already too much
    response = asgi_api.post("/api/chat/completions", key=key, json={"model": fake_worker.name, "messages": FRANCE})
    assert response.status_code == 503 and int(response.headers["Retry-After"]) > 0
    assert response.json()["error"]["code"] == "queue_full"
    assert not ApiKey.objects.filter(requests__gt=0).exists()


def bread_through_an_outage(
    server, key: str, worker, redis_server, seconds: float, then=None
) -> tuple[str, str | None]:
    """A streamed BREAD whose Redis is away for `seconds` from its first words: its text and
    end. `then()` runs the moment Redis is back, before the stream is read on."""
    ensure_model_row("gpt-oss-single")
    stream = (
        client(server, key)
        .with_options(timeout=40)
        .chat.completions.create(
            model="gpt-oss-single",
            messages=[{"role": "user", "content": "Tell me about bread."}],
            max_tokens=400,
            stream=True,
        )
    )
    text, finish, restarted = "", None, False
    for chunk in stream:
        if not chunk.choices:
            continue
        text += chunk.choices[0].delta.content or ""
        finish = chunk.choices[0].finish_reason or finish
        if text and not restarted:
            worker.redis_outage(redis_server, seconds)
            restarted = True
            if then is not None:
                then()
    return text, finish


def test_deltas_lost_in_a_redis_restart_mid_stream_are_mended(live_daphne, users, bread_worker, key, redis_server):
    """Redis away for longer than the worker retries a publish (1.2 s): the stream notices the
    gap in the deltas' seq and fills it from the worker's snapshot (before: the text had a hole)."""
    assert bread_through_an_outage(live_daphne, key, bread_worker, redis_server, 1.5) == (BREAD, "stop")


@pytest.mark.timeout(120)
def test_an_end_lost_in_a_longer_redis_outage_comes_from_the_outcome_the_worker_keeps(
    live_daphne, users, bread_worker, key, redis_server
):
    """Redis away from the first words until well after the answer ended (the rest takes
    under a second here): the rest of the deltas and the end are lost. The worker keeps the
    outcome once Redis is back, and the stream ends whole from it. Before: the worker gave
    the outcome up at once, and the stream, its worker alive, waited for ever (CI, 352 s).

    And a request sent the moment Redis is back, before any worker has beaten again (Redis
    keeps no heartbeat across a restart): served once the beats return. Before: refused
    with no_worker (503), and the official client, retrying twice at once, gave up (a CI
    run's next test did). One restart for both: each restart reconnects every worker of
    the session."""
    answers = []

    def ask_at_once() -> None:
        answers.append(
            client(live_daphne, key)
            .with_options(max_retries=0)
            .chat.completions.create(
                model="gpt-oss-single", messages=[{"role": "user", "content": "Bread?"}], max_tokens=400
            )
        )

    assert bread_through_an_outage(live_daphne, key, bread_worker, redis_server, 4, then=ask_at_once) == (BREAD, "stop")
    assert answers[0].choices[0].message.content == BREAD


def test_a_stream_waiting_its_turn_starts_and_is_kept_alive(live_daphne, users, bread_worker, key):
    """Streams queued behind seven others on a worker that answers one at a time: each
    opens its response at its first silence, with an SSE comment, and
    sends one more each silence while it waits (a proxy would otherwise cut it: nginx
    gives up after 60 s by default); the official client reads every answer whole through
    them. Timed from each stream's own lines, never from when the client began: on a
    loaded machine a request can take seconds to reach the queue (one took about 9 s in
    CI; up to 6 s here with two busy processes beside the test). The worker is frozen from
    just after a heartbeat until both have opened (within the heartbeat's TTL): on a fast
    machine the seven answers ahead (half a second each) ended before any silence."""
    import signal
    import threading
    from concurrent.futures import ThreadPoolExecutor
    from itertools import pairwise

    from conversations.follower import SILENCE_BEFORE_CHECK

    ensure_model_row("gpt-oss-single")
    bread = {"model": "gpt-oss-single", "messages": [{"role": "user", "content": "Bread?"}], "max_tokens": 400}
    # Built here, not in the threads: each loads its TLS certificates, slowly under load.
    officials = [client(live_daphne, key) for _ in range(7)]
    raws = [httpx.Client(timeout=180) for _ in range(2)]

    def official(api: openai.OpenAI) -> tuple[str, str | None]:
        text, finish = "", None
        for chunk in api.chat.completions.create(**bread, stream=True):
            if chunk.choices:
                text += chunk.choices[0].delta.content or ""
                finish = chunk.choices[0].finish_reason or finish
        return text, finish

    def watched(raw: httpx.Client) -> dict:
        """A raw stream: when its headers and each line came, from its start."""
        started = time.monotonic()
        with raw.stream(
            "POST",
            f"{live_daphne.url}/api/chat/completions",
            json={**bread, "stream": True},
            headers={"Authorization": f"Bearer {key}"},
        ) as response:
            headers_at = time.monotonic() - started
            opened.release()
            lines = [(time.monotonic() - started, line) for line in response.iter_lines() if line]
        return {"status": response.status_code, "headers_at": headers_at, "lines": lines}

    opened = threading.Semaphore(0)
    beat_key = presence.WORKER_PREFIX + bread_worker.name
    with ThreadPoolExecutor(len(officials) + len(raws)) as pool:
        ahead = [pool.submit(official, api) for api in officials]
        time.sleep(1)  # queued before the two below
        wait_for(lambda: presence.client().ttl(beat_key) >= presence.HEARTBEAT_TTL - 0.5, 10, "a fresh heartbeat")
        os.killpg(bread_worker.process.pid, signal.SIGSTOP)
        try:
            watched_streams = [pool.submit(watched, raw) for raw in raws]
            # back with 1.5 s of its last beat's TTL left to beat again (the TTL is read, not assumed)
            frozen_until = time.monotonic() + presence.client().pttl(beat_key) / 1000 - 1.5
            for _ in raws:
                opened.acquire(timeout=max(0.0, frozen_until - time.monotonic()))
        finally:
            os.killpg(bread_worker.process.pid, signal.SIGCONT)
        assert [f.result() for f in ahead] == [(BREAD, "stop")] * len(officials)
        streams = [f.result() for f in watched_streams]
    for raw in raws:
        raw.close()
    for stream in streams:
        assert stream["status"] == 200
        lines = [line for _, line in stream["lines"]]
        assert lines[-1] == "data: [DONE]"
        chunks = [json.loads(line[6:]) for line in lines if line.startswith("data: {")]
        assert "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"]) == BREAD
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        assert {line for line in lines if line.startswith(":")} == {": waiting"}
        content_at = next(t for t, line in stream["lines"] if '"content": "bread' in line)
        waits = [t for t, line in stream["lines"] if line == ": waiting" and t < content_at]
        assert waits, f"no comment while it waited its turn: {stream['lines'][:4]}"
        # its response opened at its first silence (not before), with a comment after the role chunk
        assert lines[1] == ": waiting" and stream["headers_at"] > SILENCE_BEFORE_CHECK - 0.5
        assert all(b - a > SILENCE_BEFORE_CHECK - 0.5 for a, b in pairwise(waits)), "one each silence"
