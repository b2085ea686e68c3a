"""The API's one error type, and the one place it becomes a response: OpenAI's error shape.

Code anywhere under a view raises `ApiError`; `api_view` (handler.py) renders it. Errors
found after a stream began go out in the stream, in the same shape (`ApiError.event`).
Django's own errors under /api/ (handler400 / 404 / 500 in chatweb/urls.py) use it too.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults

from conversations.api.protocol import ErrorInfo, ErrorResponse, json_response, sse

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "service_unavailable",
}


class ApiError(Exception):
    """A refusal or failure to answer with `status`, in OpenAI's error shape."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str | None = None,
        param: str | None = None,
        code: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.retry_after = status, retry_after
        self.body = ErrorResponse(
            error=ErrorInfo(message=message, type=type or ERROR_TYPES.get(status, "api_error"), param=param, code=code)
        )

    @property
    def message(self) -> str:
        return self.body.error.message

    @property
    def code(self) -> str | None:
        return self.body.error.code

    def response(self) -> JsonResponse:
        response = json_response(self.body, status=self.status)
        if self.retry_after is not None:
            response["Retry-After"] = str(self.retry_after)
        return response

    def event(self) -> bytes:
        """The error as a server-sent event, for a stream whose response has begun."""
        return sse(self.body)


# Django's error responses (handler400 / 404 / 500 in chatweb/urls.py): the API's shape under /api/.


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return ApiError(400, "The request could not be read (check its Host header).", code="bad_request").response()
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return ApiError(404, f"There is no {request.path} in this API.", code="unknown_url").response()
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return ApiError(500, "The server failed on this request; the error is logged.", code="server_error").response()
    return defaults.server_error(request)
