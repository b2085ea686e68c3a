from __future__ import annotations

import pytest

from conversations.models import Conversation
from inference_worker.models import ChatModel


@pytest.mark.django_db
def test_chat_page_lists_only_my_conversations(client, users):
    Conversation.objects.create(owner=users.alice, title="alice-secret-plans")
    Conversation.objects.create(owner=users.bob, title="bob-private-notes")
    client.force_login(users.alice)
    page = client.get("/").content.decode()
    assert "alice-secret-plans" in page
    assert "bob-private-notes" not in page


@pytest.mark.django_db
def test_another_users_conversation_is_404(client, users):
    theirs = Conversation.objects.create(owner=users.bob, title="bob's")
    client.force_login(users.alice)
    assert client.get(f"/c/{theirs.pk}/").status_code == 404
    client.force_login(users.bob)
    assert client.get(f"/c/{theirs.pk}/").status_code == 200


@pytest.mark.django_db
def test_anonymous_is_sent_to_login(client):
    response = client.get("/")
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


@pytest.mark.django_db
def test_model_picker_labels_the_cpu_demo_model(client, users):
    ChatModel.objects.create(
        name="smollm2-135m-instruct",
        display_name="SmolLM2 135M Instruct",
        description="small CPU demo model",
        path="/m",
        queue="smollm2",
    )
    client.force_login(users.alice)
    (model,) = client.get("/").context["page_data"]["choices"]["models"]
    assert (model["display_name"], model["description"]) == ("SmolLM2 135M Instruct", "small CPU demo model")


@pytest.mark.django_db
def test_health_is_503_when_no_worker_serves_any_model(client, users):
    # (runs before any worker fixture of the session has started a worker)
    client.force_login(users.admin)  # the checks' details are for admins
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "no_workers" and body["database"] == "ok" and body["redis"] == "ok"


@pytest.mark.django_db
def test_create_conversation_with_an_enabled_model(client, users):
    ChatModel.objects.create(name="m1", display_name="M1", path="/m", queue="m1")
    ChatModel.objects.create(name="off", display_name="Off", path="/m", queue="off", enabled=False)
    client.force_login(users.alice)
    response = client.post("/c/new", {"model": "m1"}, content_type="application/json")
    assert response.status_code == 201
    conversation = Conversation.objects.get(pk=response.json()["id"])
    assert conversation.owner == users.alice and conversation.model.name == "m1"
    for body in ({"model": "off"}, {"model": "nope"}):
        bad = client.post("/c/new", body, content_type="application/json")
        assert bad.status_code == 400 and "Pick one" in bad.json()["error"]
    assert client.post("/c/new", ["m1"], content_type="application/json").json()["error"] == "Send a JSON object."
    assert client.post("/c/new", "{oops", content_type="application/json").status_code == 400
    assert Conversation.objects.count() == 1


@pytest.mark.django_db
def test_create_conversation_needs_csrf_and_an_approved_user(users):
    from django.test import Client

    ChatModel.objects.create(name="m1", display_name="M1", path="/m", queue="m1")
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(users.alice)
    assert strict.post("/c/new", {"model": "m1"}, content_type="application/json").status_code == 403
    pending = Client()
    pending.force_login(users.charlie)
    assert pending.post("/c/new", {"model": "m1"}, content_type="application/json").status_code == 302
    assert not Conversation.objects.exists()


@pytest.mark.django_db
def test_conversation_page_embeds_history_safely(client, users):
    from conversations.models import Message

    conversation = Conversation.objects.create(owner=users.alice)
    Message.objects.create(conversation=conversation, role="user", content="</script><script>alert(1)</script>")
    client.force_login(users.alice)
    page = client.get(f"/c/{conversation.pk}/").content.decode()
    assert "</script><script>alert(1)" not in page
    assert "\\u003C/script\\u003E\\u003Cscript\\u003Ealert(1)" in page
