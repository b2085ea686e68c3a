"""Every refusal of /api/chat/completions: its status, OpenAI's error shape, and nothing stored."""

from __future__ import annotations

import datetime
import json

import httpx
import pytest
from django.conf import settings
from django.utils import timezone

from accounts.models import ApiKey, SiteSettings, UsageDay
from accounts.services import api_key_create, api_key_revoke
from conftest import session_cookie
from conversations.models import Conversation, Message
from conversations.tests.conftest import AsgiApi
from inference_worker import presence

# Through the ASGI application daphne serves (AsgiApi), whose request signals end a test's
# transaction: each test commits, and its rows are flushed after it.
pytestmark = pytest.mark.django_db(transaction=True)
API = AsgiApi()

GOOD = {"model": "orphan", "messages": [{"role": "user", "content": "hi"}]}


def call(body, *, key: str | None = None, raw: bytes | None = None, **headers: str):
    """POST /api/v1/chat/completions; `body` as JSON (NaN too), or `raw` bytes."""
    data = raw if raw is not None else json.dumps(body).encode()
    return API.post(
        "/api/v1/chat/completions", content=data, key=key, headers={"Content-Type": "application/json", **headers}
    )


def assert_error(response, status: int, *, code: str | None = None, param: str | None = None) -> dict:
    assert response.status_code == status, response.content[:500]
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code is not None:
        assert error["code"] == code, error
    if param is not None:
        assert error["param"] == param, error
    return error


@pytest.fixture(autouse=True)
def nothing_stored_changes(db):
    yield
    assert not Conversation.objects.exists() and not Message.objects.exists()
    assert not UsageDay.objects.exists()
    assert not ApiKey.objects.filter(requests__gt=0).exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "model"),
        ({"model": "orphan"}, "messages"),
        ({"model": "orphan", "messages": []}, "messages"),
        ({"model": "orphan", "messages": [{"role": "wizard", "content": "hi"}]}, "messages.0.role"),
        ({"model": "orphan", "messages": [{"role": "user"}]}, "messages.0.content"),
        ({**GOOD, "temperature": 9}, "temperature"),
        ({**GOOD, "top_p": 0}, "top_p"),
        ({**GOOD, "max_tokens": 0}, "max_tokens"),
        ({**GOOD, "reasoning_effort": "extreme"}, "reasoning_effort"),
        ({**GOOD, "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({**GOOD, "n": 5}, "n"),  # over API_MAX_CHOICES
        ({**GOOD, "n": 0}, "n"),
        ({**GOOD, "ignore_eos": "yes"}, "ignore_eos"),
        ({**GOOD, "top_k": -2}, "top_k"),
        ({**GOOD, "top_k": True}, "top_k"),
        ({**GOOD, "min_p": 1.5}, "min_p"),
        ({**GOOD, "min_tokens": -1}, "min_tokens"),
        ({**GOOD, "min_tokens": 50, "max_tokens": 10}, "min_tokens"),
        ({**GOOD, "min_tokens": 100_000}, "min_tokens"),  # more than the model's default max_tokens
        ({**GOOD, "logit_bias": {"x": 1}}, "logit_bias"),
        ({**GOOD, "logit_bias": {"12": 101}}, "logit_bias"),
        ({**GOOD, "logit_bias": {"12": "up"}}, "logit_bias"),
        ({**GOOD, "logit_bias": [1, 2]}, "logit_bias"),
        ({**GOOD, "logit_bias": {str(i): 1 for i in range(301)}}, "logit_bias"),
        ({**GOOD, "stop_token_ids": [-1]}, "stop_token_ids"),
        ({**GOOD, "stop_token_ids": "2"}, "stop_token_ids"),
    ],
)
def test_malformed_requests_are_400_naming_the_field(users, orphan, key, body, param):
    error = assert_error(call(body, key=key), 400, param=param)
    assert error["type"] == "invalid_request_error"


def test_invalid_json_and_non_objects_are_400(users, orphan, key):
    assert_error(call(None, key=key, raw=b"{not json"), 400, code="invalid_json")
    assert_error(call(None, key=key, raw=b"[1, 2]"), 400, code="invalid_json")
    assert_error(call(None, key=key, raw=b"\xff\xfe"), 400, code="invalid_json")


def test_the_last_message_must_be_the_users(users, orphan, key):
    body = {"model": "orphan", "messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}
    assert_error(call(body, key=key), 400, param="messages")


def test_unknown_fields_are_ignored_and_unknown_models_are_404(users, orphan, key):
    body = {**GOOD, "model": "gpt-9", "logit_bias": {}, "tools": [], "logprobs": False, "not_openai": 1}
    error = assert_error(call(body, key=key), 404)
    assert error["code"] == "model_not_found" and error["param"] == "model" and "gpt-9" in error["message"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("functions", [{"name": "f"}]),
        ("function_call", "auto"),
        ("audio", {"voice": "alloy", "format": "wav"}),
        ("modalities", ["text", "audio"]),
        ("prediction", {"type": "content", "content": "x"}),
        ("web_search_options", {}),
        ("service_tier", "flex"),
        ("store", True),
        ("verbosity", "low"),
    ],
)
def test_a_field_of_openais_api_that_chatweb_does_not_honour_is_400_naming_it(users, orphan, key, field, value):
    """Never silently ignored (before: tools, response_format, logprobs, n... were, and the
    client got prose where it asked for a call or JSON)."""
    error = assert_error(call({**GOOD, field: value}, key=key), 400, code="unsupported_parameter", param=field)
    assert field in error["message"]


def test_token_ids_outside_the_models_vocabulary_are_400_before_anything_is_counted(users, fake_worker, key):
    """The live workers report their model's vocabulary in their heartbeats; admission checks
    logit_bias and stop_token_ids against it (the engine would refuse them after the quota)."""
    (name,) = [w["name"] for w in presence.live_workers(fake_worker.name)]
    beat = {**presence.worker_beat(name), "vocab_size": 1000}
    presence.client().set(presence.WORKER_PREFIX + name, json.dumps(beat), ex=60)
    body = {**GOOD, "model": fake_worker.name}
    assert_error(call({**body, "logit_bias": {"999": 5, "1000": -100}}, key=key), 400, param="logit_bias")
    assert_error(call({**body, "stop_token_ids": [5, 4096]}, key=key), 400, param="stop_token_ids")


def test_no_live_worker_is_503_with_retry_after(users, orphan, key):
    response = call(GOOD, key=key)
    assert_error(response, 503, code="no_worker")
    assert int(response.headers["Retry-After"]) > 0


def test_missing_and_wrong_keys_are_401(users, orphan, key):
    assert_error(call(GOOD), 401, code="missing_api_key")
    assert_error(call(GOOD, key="sk-cw-wrong"), 401, code="invalid_api_key")
    assert_error(call(GOOD, key=key[:-2] + "xx"), 401, code="invalid_api_key")
    assert_error(call(GOOD, Authorization=f"Basic {key}"), 401, code="invalid_api_key")


def test_revoked_and_expired_keys_are_401(users, orphan):
    row, revoked = api_key_create(user=users.alice, name="r")
    api_key_revoke(key=row)
    assert_error(call(GOOD, key=revoked), 401, code="invalid_api_key")
    row, expired = api_key_create(user=users.alice, name="e", expires=timezone.now() + datetime.timedelta(days=1))
    ApiKey.objects.filter(pk=row.pk).update(expires=timezone.now() - datetime.timedelta(seconds=1))
    assert_error(call(GOOD, key=expired), 401, code="expired_api_key")


def test_pending_and_deactivated_users_and_disabled_keys_are_403(users, orphan, key):
    pending = api_key_create(user=users.charlie, name="p")[1]
    assert_error(call(GOOD, key=pending), 403, code="account_pending")
    users.alice.is_active = False
    users.alice.save()
    assert_error(call(GOOD, key=key), 403, code="account_disabled")
    users.alice.is_active = True
    users.alice.save()
    site = SiteSettings.load()
    site.api_keys_enabled = False
    site.save()
    error = assert_error(call(GOOD, key=key), 403, code="api_keys_disabled")
    assert "turned off" in error["message"]


def test_a_body_over_the_limit_is_413_before_it_is_read(users, orphan, key):
    huge = b'{"model": "orphan", "messages": [{"role": "user", "content": "' + b"x" * (10 * 2**20) + b'"}]}'
    assert_error(call(None, key=key, raw=huge), 413, code="body_too_large")


def test_wrong_methods_are_405(users, orphan, key):
    assert_error(API.get("/api/chat/completions", key=key), 405)


def test_a_browser_session_is_not_enough_to_spend_the_gpu(users, orphan):
    browser = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_cookie(users.alice)}"}
    assert API.get("/api/models", headers=browser).status_code == 200  # reads are fine
    response = API.post("/api/chat/completions", json=GOOD, headers=browser)
    assert_error(response, 401, code="missing_api_key")


def test_odd_bodies_and_text_are_400_not_500(users, orphan, key):
    deep = b"[" * 100_000 + b"]" * 100_000
    assert_error(call(None, key=key, raw=deep), 400, code="invalid_json")
    nul = {**GOOD, "messages": [{"role": "user", "content": "a\x00b"}]}
    assert_error(call(nul, key=key), 400, param="messages.0.content")
    surrogate = b'{"model": "orphan\\ud800", "messages": [{"role": "user", "content": "hi"}]}'
    assert_error(call(None, key=key, raw=surrogate), 400, param="model")
    assert_error(call(GOOD, key=key, **{"Content-Length": "12abc"}), 400, code="invalid_request")
    assert_error(call({**GOOD, "temperature": float("nan")}, key=key), 400, param="temperature")


def test_daphne_serves_the_api_without_the_browser_middleware(live_daphne, users, orphan, key, redis_server):
    """Under daphne, /api/ skips settings.MIDDLEWARE (conversations.api.ApiHandler): the views read
    the session themselves, the caller is judged before the body, and Django's own errors keep
    the API's shape."""
    alice = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_cookie(users.alice)}"}
    charlie = {"Cookie": f"{settings.SESSION_COOKIE_NAME}={session_cookie(users.charlie)}"}  # pending approval
    bearer = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live_daphne.url, timeout=30) as http:
        listed = http.get("/api/models", headers=alice)
        assert listed.status_code == 200 and [m["id"] for m in listed.json()["data"]] == ["orphan"]
        assert listed.headers["X-Content-Type-Options"] == "nosniff"  # SecurityMiddleware's headers, inline
        assert_error(http.get("/api/models", headers=charlie), 403, code="account_pending")
        assert_error(http.get("/api/models"), 401, code="missing_api_key")
        assert_error(http.post("/api/chat/completions", headers=alice, json=GOOD), 401, code="missing_api_key")
        assert_error(http.post("/api/chat/completions", content=b"{not json"), 401, code="missing_api_key")
        assert_error(http.post("/api/chat/completions", headers=bearer, content=b"{not json"), 400, code="invalid_json")
        refused = http.post("/api/v1/chat/completions", headers=bearer, json=GOOD)
        assert_error(refused, 503, code="no_worker")
        assert int(refused.headers["Retry-After"]) > 0
        # Its reply subscription is gone, but daphne still listens (presence.keep_layer_listening):
        # channels-redis's reader would otherwise sleep 100 ms at a time and delay the next answer.
        assert redis_server.client.pubsub_channels(f"*{presence.LISTENING_PREFIX}*")
        assert not redis_server.client.pubsub_channels("*__group__reply.*")
        assert_error(http.get("/api/nothing/here", headers=bearer), 404, code="unknown_url")
        assert_error(http.get("/api/models", headers={**bearer, "Host": "evil.example"}), 400, code="bad_request")
