"""OpenAI-compatible JSON API (/api/ and /api/v1/). One error shape for every error."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.http import require_GET

from inference_worker.models import ChatModel

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable",
}


def api_error(
    status: int, message: str, *, type: str | None = None, param: str | None = None, code: str | None = None
) -> JsonResponse:
    body = {
        "error": {
            "message": message,
            "type": type or ERROR_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }
    return JsonResponse(body, status=status)


def api_auth(view: Callable[..., JsonResponse]) -> Callable[..., JsonResponse]:
    """The caller: a signed-in browser session of an approved user (API keys: see accounts)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> JsonResponse:
        if request.headers.get("Authorization", "").startswith("Bearer "):
            return api_error(401, "Incorrect API key provided.", code="invalid_api_key")
        user = request.user
        if not user.is_authenticated:
            return api_error(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...'.",
                code="missing_api_key",
            )
        if not user.is_approved:
            return api_error(403, "Your account is awaiting approval by an administrator.", code="account_pending")
        request.api_user = user
        return view(request, *args, **kwargs)

    return wrapper


@require_GET
@api_auth
def models(request: HttpRequest) -> JsonResponse:
    data = [
        {
            "id": m.name,
            "object": "model",
            "created": int(m.created.timestamp()),
            "owned_by": "chatweb",
            "max_model_len": m.context_length,
        }
        for m in ChatModel.objects.filter(enabled=True).order_by("name")
    ]
    return JsonResponse({"object": "list", "data": data})


urlpatterns = [
    path("models", models, name="api_models"),
]
