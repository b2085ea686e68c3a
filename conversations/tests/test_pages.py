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
    assert "SmolLM2 135M Instruct — small CPU demo model" in client.get("/").content.decode()


@pytest.mark.django_db
def test_health_is_503_when_no_worker_serves_any_model(client):
    # (runs before any worker fixture of the session has started a worker)
    response = client.get("/health")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "no_workers" and body["database"] == "ok" and body["redis"] == "ok"
