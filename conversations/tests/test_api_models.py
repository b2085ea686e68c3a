from __future__ import annotations

import pytest

from inference_worker.models import ChatModel


@pytest.fixture
def models(db):
    on = ChatModel.objects.create(name="small", display_name="Small", path="/m/small", queue="small")
    ChatModel.objects.create(name="off", display_name="Off", path="/m/off", queue="off", enabled=False)
    return on


@pytest.mark.django_db
@pytest.mark.parametrize("prefix", ["/api", "/api/v1"])
def test_models_lists_enabled_models_in_openai_shape(client, users, models, prefix):
    client.force_login(users.alice)
    body = client.get(f"{prefix}/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["small"]
    assert set(body["data"][0]) >= {"id", "object", "created", "owned_by"}


@pytest.mark.django_db
def test_models_without_credentials_is_401_in_openai_shape(client, models):
    response = client.get("/api/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "API key" in error["message"]


@pytest.mark.django_db
def test_unknown_bearer_key_is_401(client, models):
    response = client.get("/api/models", HTTP_AUTHORIZATION="Bearer sk-nope")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


@pytest.mark.django_db
def test_models_rejects_post(client, users, models):
    client.force_login(users.alice)
    assert client.post("/api/models").status_code == 405
