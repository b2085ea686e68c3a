"""`GET /api/models`: the enabled models, for a key or a signed-in browser."""

from __future__ import annotations

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse

from conversations.api.auth import authenticate
from conversations.api.handler import api_view
from conversations.api.protocol import ModelCard, ModelList, json_response
from inference_worker.models import ChatModel


@api_view("GET")
async def list_models(request: HttpRequest) -> HttpResponse:
    return await sync_to_async(_models)(request)


def _models(request: HttpRequest) -> HttpResponse:
    authenticate(request)
    cards = [
        ModelCard(id=m.name, created=int(m.created.timestamp()), max_model_len=m.context_length)
        for m in ChatModel.objects.filter(enabled=True).order_by("name")
    ]
    return json_response(ModelList(data=cards))
