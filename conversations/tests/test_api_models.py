from __future__ import annotations

import pytest

from inference_worker.models import ChatModel

# Through the ASGI application daphne serves (the asgi_api fixture): each test commits.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def models(db):
    on = ChatModel.objects.create(name="small", display_name="Small", path="/m/small", queue="small")
    ChatModel.objects.create(name="off", display_name="Off", path="/m/off", queue="off", enabled=False)
    return on


@pytest.mark.parametrize("prefix", ["/api", "/api/v1"])
def test_models_lists_enabled_models_in_openai_shape(asgi_api, users, models, prefix):
    body = asgi_api.get(f"{prefix}/models", user=users.alice).json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["small"]
    assert set(body["data"][0]) >= {"id", "object", "created", "owned_by"}


def test_models_without_credentials_is_401_in_openai_shape(asgi_api, models):
    response = asgi_api.get("/api/models")
    assert response.status_code == 401
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and "API key" in error["message"]


def test_unknown_bearer_key_is_401(asgi_api, models):
    response = asgi_api.get("/api/models", key="sk-nope")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_models_rejects_post(asgi_api, users, models):
    assert asgi_api.post("/api/models", user=users.alice).status_code == 405


def test_a_model_is_retrieved_with_the_official_client_and_a_disabled_or_unknown_one_is_404(asgi_api, users, models):
    """OpenAI's retrieve (`client.models.retrieve`): the card the list shows; a disabled or
    unknown model is a 404 model_not_found, as a request naming it is."""
    from accounts.services import api_key_create

    key = api_key_create(user=users.alice, name="models")[1]
    card = asgi_api.get("/api/v1/models/small", key=key).json()
    listed = asgi_api.get("/api/v1/models", key=key).json()["data"][0]
    assert card == listed
    for name in ("off", "nothing-by-this-name"):
        response = asgi_api.get(f"/api/models/{name}", key=key)
        assert response.status_code == 404 and response.json()["error"]["code"] == "model_not_found"
    assert asgi_api.get("/api/models/small").status_code == 401
