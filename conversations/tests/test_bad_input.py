"""Bad input, generated: the API and the chat socket answer every case in their own
error shape, never a 500 or a dropped connection, and store nothing.

Hypothesis generates the cases: arbitrary JSON, bodies that are nearly valid with one
field wrong, raw bytes, odd headers, and websocket frames of every kind. The model
has no worker, so a case that passes validation is refused with 503 / `no_worker`
and nothing is ever generated. Each test counts what it tried by outcome and writes
the tally to test-artifacts/bad-input.json (docs/PERFORMANCE.md reports it).
"""

from __future__ import annotations

import collections
import json
import time
from urllib.parse import urlencode

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from accounts.models import ApiKey, UsageDay
from conftest import ARTIFACTS, ChatSocket
from conversations.consumers import MAX_FRAME_BYTES
from conversations.models import Conversation, Message
from inference_worker import presence

EXAMPLES = 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,  # no example database in the tree; every run is fresh
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)
TALLY: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)

# --- strategies -----------------------------------------------------------------------

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)),
    max_leaves=12,
)
roles = st.one_of(st.sampled_from(["user", "assistant", "system", "developer", "tool", "wizard", ""]), json_values)
contents = st.one_of(
    st.text(max_size=200),
    st.lists(st.fixed_dictionaries({"type": st.sampled_from(["text", "image_url", "x"]), "text": json_values})),
    json_values,
)
messages = st.lists(
    st.fixed_dictionaries({"role": roles}, optional={"content": contents, "name": json_values}), max_size=4
)
# A valid request with any subset of its fields replaced by something generated.
nearly_valid = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("orphan"), st.text(max_size=20), json_values),
        "messages": st.one_of(st.just([{"role": "user", "content": "hi"}]), messages, json_values),
    },
    optional={
        name: st.one_of(valid, json_values)
        for name, valid in {
            "stream": st.booleans(),
            "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
            "temperature": st.floats(min_value=-1, max_value=3),
            "top_p": st.floats(min_value=-1, max_value=2),
            "max_tokens": st.integers(min_value=-5, max_value=10**9),
            "max_completion_tokens": st.integers(min_value=-5, max_value=10**9),
            "stop": st.lists(st.text(max_size=10), max_size=6),
            "seed": st.integers(min_value=-(2**70), max_value=2**70),
            "presence_penalty": st.floats(min_value=-3, max_value=3),
            "frequency_penalty": st.floats(min_value=-3, max_value=3),
            "reasoning_effort": st.sampled_from(["low", "medium", "high", "max"]),
            "n": st.integers(min_value=-1, max_value=3),
            "user": st.text(max_size=20),
            "top_k": st.integers(min_value=-3, max_value=10**7),
            "min_p": st.floats(min_value=-1, max_value=2),
            "min_tokens": st.integers(min_value=-5, max_value=10**7),
            "logit_bias": st.dictionaries(
                st.one_of(st.integers(min_value=-5, max_value=10**10).map(str), st.text(max_size=5)),
                st.floats(min_value=-200, max_value=200),
                max_size=5,
            ),
            "stop_token_ids": st.lists(st.integers(min_value=-5, max_value=10**10), max_size=5),
            "tools": st.lists(json_values, max_size=2),
            "tool_choice": st.one_of(st.sampled_from(["none", "auto", "required"]), json_values),
            "response_format": st.one_of(
                st.sampled_from(
                    [
                        {"type": "text"},
                        {"type": "json_object"},
                        {"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": "object"}}},
                    ]
                ),
                json_values,
            ),
            "logprobs": st.booleans(),
            "top_logprobs": st.integers(min_value=-1, max_value=30),
            "store": st.booleans(),
        }.items()
    },
)
bodies = st.one_of(
    nearly_valid.map(lambda b: json.dumps(b).encode()),
    json_values.map(lambda v: json.dumps(v).encode()),
    st.binary(max_size=300),
    st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass")),
    st.integers(min_value=1, max_value=5000).map(lambda depth: b"[" * depth + b"]" * depth),
)
items = st.lists(
    st.one_of(
        st.fixed_dictionaries({"role": roles}, optional={"content": contents, "type": st.just("message")}),
        st.fixed_dictionaries(
            {"type": st.sampled_from(["function_call", "function_call_output", "reasoning", "input_image", "x"])},
            optional={
                "call_id": json_values,
                "name": json_values,
                "arguments": json_values,
                "output": json_values,
                "summary": json_values,
                "content": json_values,
                "encrypted_content": st.one_of(st.text(max_size=40), json_values),
            },
        ),
        json_values,
    ),
    max_size=4,
)
nearly_valid_responses = st.fixed_dictionaries(
    {
        "model": st.one_of(st.just("orphan"), st.text(max_size=20), json_values),
        "input": st.one_of(st.just("hi"), items, json_values),
    },
    optional={
        name: st.one_of(valid, json_values)
        for name, valid in {
            "instructions": st.text(max_size=20),
            "stream": st.booleans(),
            "store": st.booleans(),
            "temperature": st.floats(min_value=-1, max_value=3),
            "top_p": st.floats(min_value=-1, max_value=2),
            "max_output_tokens": st.integers(min_value=-5, max_value=10**9),
            "reasoning": st.fixed_dictionaries({"effort": st.sampled_from(["low", "high", "max"])}),
            "tools": st.lists(json_values, max_size=2),
            "tool_choice": st.one_of(st.sampled_from(["none", "auto", "required"]), json_values),
            "text": st.fixed_dictionaries({"format": json_values}),
            "include": st.lists(st.sampled_from(["reasoning.encrypted_content", "x"]), max_size=2),
            "previous_response_id": st.text(max_size=20),
            "metadata": st.dictionaries(st.text(max_size=70), json_values, max_size=3),
            "background": st.booleans(),
            "top_logprobs": st.integers(min_value=-1, max_value=30),
        }.items()
    },
)
response_bodies = st.one_of(nearly_valid_responses.map(lambda b: json.dumps(b).encode()), bodies)
header_text = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=0x2FF), max_size=60)
authorizations = st.one_of(
    st.none(),
    header_text,
    header_text.map(lambda t: f"Bearer {t}"),
    header_text.map(lambda t: f"Bearer sk-cw-{t}"),
)
content_types = st.sampled_from(
    ["application/json", "application/json; charset=latin-1", "text/plain", "multipart/form-data", ""]
)

# --- checks ------------------------------------------------------------------------------

API_STATUSES = {400, 401, 403, 404, 405, 413, 415, 429, 503}


def openai_error(response, allowed: set[int]) -> dict:
    assert response.status_code in allowed, (response.status_code, response.content[:500])
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    return error


@pytest.fixture
def nothing_changes(db, redis_server):
    conversations = Conversation.objects.count()
    yield
    assert Conversation.objects.count() == conversations
    assert not Message.objects.exists()
    assert not UsageDay.objects.exists()
    assert not ApiKey.objects.filter(requests__gt=0).exists()
    for name in redis_server.client.scan_iter("chatweb:quota:*"):  # refused requests count nothing
        kind = redis_server.client.type(name).decode()
        if kind == "string":
            assert int(redis_server.client.get(name) or 0) == 0, name
        else:
            assert redis_server.client.zcard(name) == 0, name


@pytest.fixture(scope="module", autouse=True)
def write_tally():
    yield
    if TALLY:
        ARTIFACTS.mkdir(exist_ok=True)
        report = {name: dict(sorted(counts.items())) for name, counts in TALLY.items()}
        (ARTIFACTS / "bad-input.json").write_text(json.dumps(report, indent=2) + "\n")


# --- the API -------------------------------------------------------------------------------
# Through the ASGI application daphne serves (asgi_api, one in-process call per example), whose
# request signals end a test's transaction: these tests commit, and are flushed after.


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(body=bodies, content_type=content_types)
def test_completions_answer_any_body_with_an_openai_error(
    asgi_api, users, orphan, key, nothing_changes, body, content_type
):
    response = asgi_api.post("/api/v1/chat/completions", content=body, key=key, headers={"Content-Type": content_type})
    error = openai_error(response, API_STATUSES - {401, 403})
    TALLY["POST /api/chat/completions, generated bodies"][f"{response.status_code} {error['code']}"] += 1


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(body=response_bodies, content_type=content_types)
def test_responses_answer_any_body_with_an_openai_error(
    asgi_api, users, orphan, key, nothing_changes, body, content_type
):
    from conversations.models import StoredResponse

    response = asgi_api.post("/api/v1/responses", content=body, key=key, headers={"Content-Type": content_type})
    error = openai_error(response, API_STATUSES - {401, 403})
    assert not StoredResponse.objects.exists()
    TALLY["POST /api/responses, generated bodies"][f"{response.status_code} {error['code']}"] += 1


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(authorization=authorizations, body=st.one_of(st.just(b'{"model":"orphan"}'), bodies))
def test_completions_refuse_any_key_but_a_real_one(asgi_api, users, orphan, key, nothing_changes, authorization, body):
    headers = {"Content-Type": "application/json"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = asgi_api.post("/api/chat/completions", content=body, headers=headers)
    error = openai_error(response, {401, 413})
    TALLY["POST /api/chat/completions, generated keys"][f"{response.status_code} {error['code']}"] += 1


@pytest.mark.django_db(transaction=True)
@FUZZ
@given(
    authorization=st.one_of(st.just("good"), authorizations),
    query=st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=3),
    method=st.sampled_from(["GET"] * 5 + ["POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
)
def test_models_answer_any_request_in_shape(
    asgi_api, users, orphan, key, nothing_changes, authorization, query, method
):
    headers = {}
    if authorization == "good":
        headers["Authorization"] = f"Bearer {key}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    response = asgi_api.request(method, f"/api/models?{urlencode(query)}", headers=headers)
    if method == "HEAD":  # the same answer as GET, without the body
        assert response.status_code in {200, 401, 405}, response.status_code
        TALLY["/api/models, generated methods, keys and queries"][f"HEAD {response.status_code}"] += 1
        return
    if response.status_code == 200:
        assert method == "GET" and authorization == "good"
        body = response.json()
        assert body["object"] == "list" and {m["id"] for m in body["data"]} >= {"orphan"}
        outcome = "200"
    else:
        error = openai_error(response, {401, 405})
        outcome = f"{response.status_code} {error['code']}"
    TALLY["/api/models, generated methods, keys and queries"][outcome] += 1


# --- the chat socket ---------------------------------------------------------------------

FRAME_KINDS = ["send", "regenerate", "stop", "sync", "ping", "", "delete", None]
socket_messages = st.one_of(
    # a send that is nearly right
    st.fixed_dictionaries(
        {"type": st.sampled_from(["send", "regenerate"]), "content": st.text(min_size=1, max_size=80)},
        optional={
            "params": st.dictionaries(
                st.sampled_from(["temperature", "max_tokens", "top_p", "ignore_eos", "seed", "reasoning_effort"]),
                json_values,
                max_size=3,
            ),
            "parent_id": st.one_of(st.integers(min_value=-5, max_value=10**6), json_values),
            "edit_of": st.one_of(st.integers(min_value=-5, max_value=10**6), json_values),
            "message_id": st.one_of(st.integers(min_value=-5, max_value=10**6), json_values),
        },
    ).map(json.dumps),
    st.fixed_dictionaries(
        {"type": st.one_of(st.sampled_from(FRAME_KINDS), json_values)},
        optional={
            "content": contents,
            "parent_id": json_values,
            "edit_of": json_values,
            "message_id": json_values,
            "request_id": st.one_of(st.text(max_size=40), json_values),
            "params": st.one_of(st.dictionaries(st.sampled_from(["temperature", "max_tokens", "top_p"]), json_values)),
        },
    ).map(json.dumps),
    json_values.map(json.dumps),
    st.text(max_size=200),
    st.binary(max_size=200),
    st.integers(min_value=1, max_value=100_000).map(lambda depth: "[" * depth + "]" * depth),
    # Over chatweb's limit, under daphne's 1 MiB (past that the websocket protocol
    # itself closes the connection with 1009; see the test below).
    st.integers(min_value=MAX_FRAME_BYTES + 1, max_value=3 * MAX_FRAME_BYTES).map(
        lambda size: json.dumps({"type": "send", "content": "x" * size})
    ),
).filter(lambda frame: not (isinstance(frame, str) and '"ping"' in frame))  # one pong per example


@pytest.mark.django_db(transaction=True)
def test_the_chat_socket_answers_any_frame_with_an_event_and_stays_open(live_daphne, users, orphan):
    conversation = Conversation.objects.create(owner=users.alice, model=orphan, title="fuzz")
    chat = ChatSocket(live_daphne, users.alice, conversation.pk)
    tally = TALLY["websocket /ws/chat/<id>/, generated frames"]
    try:

        @FUZZ
        @given(frame=socket_messages)
        def one(frame) -> None:
            chat.ws.send(frame)
            chat.ws.send(json.dumps({"type": "ping"}))  # the connection is still there and in order
            events = chat.until("pong", timeout=30)
            for event in events[:-1]:
                assert event["type"] == "error" and event["message"] and event["code"], event
                tally[f"error {event['code']}"] += 1
            if len(events) == 1:
                tally["no answer (a ping, or a stop / sync of nothing)"] += 1

        started = time.monotonic()
        one()
        tally["seconds"] = round(time.monotonic() - started)
    finally:
        chat.close()
    assert not Message.objects.exists()
    conversation.refresh_from_db()
    assert conversation.title == "fuzz"
    assert not presence.client().keys("chatweb:quota:running:*")


@pytest.mark.django_db(transaction=True)
def test_a_frame_past_the_protocol_limit_is_cut_off_and_the_page_can_reconnect(live_daphne, users, orphan):
    from websockets.exceptions import ConnectionClosed

    conversation = Conversation.objects.create(owner=users.alice, model=orphan, title="fuzz")
    chat = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        try:
            chat.ws.send(json.dumps({"type": "send", "content": "x" * (2 * 1024 * 1024)}))
        except ConnectionClosed as cut:  # reset while the frame was still being written
            closed = cut
        else:
            with pytest.raises(ConnectionClosed) as raised:
                chat.recv(timeout=30)
            closed = raised.value
        # 1009 "message too big", when the close frame beats the dropped TCP connection
        assert closed.rcvd is None or closed.rcvd.code == 1009
    finally:
        chat.close()
    again = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        again.send(type="ping")
        assert again.recv(timeout=30)["type"] == "pong"
    finally:
        again.close()
    assert not Message.objects.exists()
