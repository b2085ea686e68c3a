"""`GET /api/models` and `GET /api/models/{id}` (OpenAI's list and retrieve): the enabled models,
for a key or a signed-in browser."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from conversations.api.auth import authenticate
from conversations.api.errors import ApiError
from conversations.api.handler import api_view
from conversations.api.protocol import ModelCard, ModelList, json_response
from inference_worker.models import ChatModel


@api_view("GET")
async def list_models(request: HttpRequest) -> HttpResponse:
    return await sync_to_async(_models)(request)


@api_view("GET")
async def retrieve_model(request: HttpRequest, model_id: str) -> HttpResponse:
    return await sync_to_async(_model)(request, model_id)


def _card(model: ChatModel) -> ModelCard:
    return ModelCard(id=model.name, created=int(model.created.timestamp()), max_model_len=model.context_length)


def _models(request: HttpRequest) -> HttpResponse:
    authenticate(request)
    return json_response(ModelList(data=[_card(m) for m in ChatModel.objects.filter(enabled=True).order_by("name")]))


def _model(request: HttpRequest, model_id: str) -> HttpResponse:
    authenticate(request)
    model = ChatModel.objects.filter(name=model_id, enabled=True).first()
    if model is None:
        raise ApiError(404, f"The model '{model_id}' does not exist.", param="model", code="model_not_found")
    return json_response(_card(model))
