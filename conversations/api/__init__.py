"""OpenAI-compatible JSON API (/api/ and /api/v1/), one module per endpoint.

- chat_completions.py: `POST chat/completions`, following its reply with reply_stream.py;
- model_list.py: `GET models` and `GET models/{id}`;
- responses.py: `POST responses`, `GET` / `DELETE responses/{id}` (OpenAI's Responses API),
  with responses_request.py, responses_protocol.py and sealing.py (reasoning sealed for
  stateless clients);
- answering.py: what every generating endpoint shares (admission, first event, errors);
- chat_request.py: the request's models, and the OpenAI fields refused by name;
- protocol.py: the response models (every body and event is one of them);
- tool_calls.py: a function call streamed in OpenAI's pieces, and checked if strict;
- errors.py: `ApiError`, the one error type, and its one rendering (OpenAI's error shape),
  also for Django's own 400 / 404 / 500 under /api/;
- auth.py: the caller (a key, or for reads the browser's session);
- handler.py: `ApiHandler` (daphne serves /api/ without the browser's middleware, see
  chatweb/asgi.py) and `api_view`, the checks every view shares and where an ApiError is
  rendered.
"""

from django.urls import path

from conversations.api.chat_completions import create_chat_completion
from conversations.api.errors import ApiError, bad_request, not_found, server_error
from conversations.api.handler import ApiHandler
from conversations.api.model_list import list_models, retrieve_model
from conversations.api.responses import create_response, response_detail

__all__ = ["ApiError", "ApiHandler", "bad_request", "not_found", "server_error", "urlpatterns"]

urlpatterns = [
    path("models", list_models, name="api_models"),
    path("models/<path:model_id>", retrieve_model, name="api_model"),
    path("chat/completions", create_chat_completion, name="api_chat_completions"),
    path("responses", create_response, name="api_responses"),
    path("responses/<str:response_id>", response_detail, name="api_response"),
]
