"""The one admission, seen from each surface: the same parameter rules on the chat socket,
the JSON calls and the API; values JSON can carry but no database stores refused in each
path's own shape; max_tokens held to the model's context, the user's cap and the day's
tokens; a refused request counting nothing.

No worker serves the `orphan` model, so a request that passes every check ends in
`no_worker` (503): reaching that error is how these tests see a check let a value pass.
"""

from __future__ import annotations

import httpx
import pytest

from accounts.models import User
from accounts.quotas import quota_acquire, quota_add_tokens, quota_release, tokens_used_today
from accounts.services import api_key_create
from conftest import PASSWORD, ChatSocket
from conversations.models import Conversation, Message

pytestmark = pytest.mark.django_db(transaction=True)

# JSON as a client may send it: Python's json module reads NaN, Infinity and 1e999 (as
# inf), and "\ud800" as a lone surrogate that no database stores.
NOT_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e999"]
LONE_SURROGATE = '"\\ud800 alone"'


def frames(conversation_id: int) -> list[tuple[str, str]]:
    """Socket frames (raw text) a validation must refuse, with the code it must give."""
    out = []
    for bad in NOT_NUMBERS:
        for name in ("temperature", "max_tokens", "seed", "top_p"):
            out.append((f'{{"type": "send", "content": "hi", "params": {{"{name}": {bad}}}}}', "invalid_params"))
    out.append((f'{{"type": "send", "content": {LONE_SURROGATE}}}', "invalid_text"))
    out.append(('{"type": "send", "content": "hi", "params": {"max_tokens": 1000000}}', "max_tokens_too_large"))
    return out


def test_the_chat_socket_refuses_what_the_api_refuses_and_stays_open(live_daphne, users, orphan):
    conversation = Conversation.objects.create(owner=users.alice, model=orphan, title="kept")
    chat = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        for frame, code in frames(conversation.pk):
            chat.ws.send(frame)
            error = chat.recv(timeout=30)
            assert error["type"] == "error" and error["code"] == code, (frame, error)
            chat.send(type="ping")
            assert chat.recv(timeout=30)["type"] == "pong", frame  # not closed with 1011
        # The API's range for top_p (> 0) is the chat's too: 0.005 passes validation here.
        chat.send(type="send", content="hi", params={"top_p": 0.005})
        assert chat.recv(timeout=30)["code"] == "no_worker"
    finally:
        chat.close()
    assert not Message.objects.exists()


def page_client(live_daphne, user) -> httpx.Client:
    client = httpx.Client(base_url=live_daphne.url, timeout=30)
    login = client.get("/accounts/login/")
    token = client.cookies["csrftoken"]
    client.post(
        "/accounts/login/",
        data={"login": user.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
        headers={"Referer": f"{live_daphne.url}/accounts/login/"},
    )
    assert login.status_code == 200 and "sessionid" in client.cookies
    client.headers.update({"X-CSRFToken": client.cookies["csrftoken"], "Referer": f"{live_daphne.url}/"})
    return client


def test_the_json_calls_refuse_values_no_database_stores(live_daphne, users, orphan):
    conversation = Conversation.objects.create(owner=users.alice, model=orphan, title="kept", system_prompt="be kind")
    client = page_client(live_daphne, users.alice)
    bodies = [(f"/c/{conversation.pk}/settings", f'{{"params": {{"max_tokens": {bad}}}}}') for bad in NOT_NUMBERS]
    bodies += [(f"/c/{conversation.pk}/settings", f'{{"params": {{"temperature": {bad}}}}}') for bad in NOT_NUMBERS]
    bodies += [
        (f"/c/{conversation.pk}/settings", f'{{"system_prompt": {LONE_SURROGATE}}}'),
        (f"/c/{conversation.pk}/rename", f'{{"title": {LONE_SURROGATE}}}'),
        ("/c/new", f'{{"model": "orphan", "system_prompt": {LONE_SURROGATE}}}'),
        ("/c/new", '{"model": "orphan", "params": {"max_tokens": 1e999}}'),
    ]
    for url, body in bodies:
        response = client.post(url, content=body, headers={"Content-Type": "application/json"})
        assert response.status_code == 400, (url, body, response.status_code, response.text[:300])
        assert response.json()["error"], body
    conversation.refresh_from_db()
    assert (conversation.title, conversation.system_prompt, conversation.params) == ("kept", "be kind", {})
    assert Conversation.objects.count() == 1


def api(live_daphne, key: str, **body) -> httpx.Response:
    body = {"model": "orphan", "messages": [{"role": "user", "content": "hi"}], **body}
    return httpx.post(
        f"{live_daphne.url}/api/chat/completions", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30
    )


def test_max_tokens_is_held_to_the_models_context_and_the_users_cap(live_daphne, users, orphan, key):
    too_many = api(live_daphne, key, max_tokens=orphan.context_length)
    assert too_many.status_code == 400, too_many.text
    assert too_many.json()["error"]["param"] == "max_tokens"
    assert f"{orphan.context_length:,}" in too_many.json()["error"]["message"]
    assert api(live_daphne, key, max_tokens=orphan.context_length - 1).json()["error"]["code"] == "no_worker"

    User.objects.filter(pk=users.alice.pk).update(max_tokens_per_answer=100)
    capped = api(live_daphne, key, max_completion_tokens=101)
    assert capped.status_code == 400 and capped.json()["error"]["param"] == "max_tokens", capped.text
    assert api(live_daphne, key, max_tokens=100).json()["error"]["code"] == "no_worker"

    conversation = Conversation.objects.create(owner=users.alice, model=orphan, title="t")
    chat = ChatSocket(live_daphne, users.alice, conversation.pk)
    try:
        chat.send(type="send", content="hi", params={"max_tokens": 101})
        assert chat.recv(timeout=30)["code"] == "max_tokens_too_large"
    finally:
        chat.close()
    assert not Message.objects.exists()


def test_a_request_that_fails_while_it_is_stored_counts_nothing(live_daphne, users, orphan, redis_server):
    """The API's failed save gave back the running slot but still counted the request against
    the minute (quota_release where the chat used quota_refund)."""
    from django.db import connection

    User.objects.filter(pk=users.alice.pk).update(requests_per_minute=1)
    key = api_key_create(user=users.alice, name="history", save_history=True)[1]
    with connection.cursor() as cursor:  # the database itself refuses this one message
        cursor.execute(
            "CREATE TRIGGER refuse_boom BEFORE INSERT ON conversations_message "
            "WHEN NEW.content = 'boom' BEGIN SELECT RAISE(ABORT, 'refused by the test'); END"
        )
    try:
        failed = httpx.post(
            f"{live_daphne.url}/api/chat/completions",
            json={"model": "orphan", "messages": [{"role": "user", "content": "boom"}]},
            headers={"Authorization": f"Bearer {key}"},
            timeout=30,
        )
        assert failed.status_code in (500, 503), failed.text  # in the API's shape either way
        assert failed.json()["error"]["code"]
        assert not redis_server.client.zcard(f"chatweb:quota:rpm:{users.alice.pk}")
        assert not redis_server.client.zcard(f"chatweb:quota:running:{users.alice.pk}")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER refuse_boom")
    assert not Message.objects.exists() and not Conversation.objects.exists()


def test_the_days_tokens_are_reserved_at_admission_and_settled_at_the_end(users):
    """Five requests at once could spend 270 tokens of a remaining 20: admission checked the
    day's count, which only grew when answers ended."""
    User.objects.filter(pk=users.alice.pk).update(tokens_per_day=100, concurrent_generations=0)
    alice = User.objects.get(pk=users.alice.pk)
    assert quota_acquire(user=alice, request_id="a", max_tokens=64) == 64
    assert quota_acquire(user=alice, request_id="b", max_tokens=64) == 36  # all the day has left
    with pytest.raises(Exception) as refused:
        quota_acquire(user=alice, request_id="c", max_tokens=64)
    assert refused.value.code == "tokens_exhausted"
    assert tokens_used_today(alice.pk) == 100
    quota_add_tokens(user_id=alice.pk, tokens=30)  # "a" used 30 (prompt included) of its 64
    quota_release(user_id=alice.pk, request_id="a")
    assert tokens_used_today(alice.pk) == 30 + 36
    quota_release(user_id=alice.pk, request_id="a")  # twice (the reaper, then the worker): once
    assert tokens_used_today(alice.pk) == 30 + 36
    quota_release(user_id=alice.pk, request_id="b")  # stopped before it wrote anything
    assert tokens_used_today(alice.pk) == 30
