"""Serving /api/: the ASGI handler without the browser's middleware, and `api_view`, the checks
every view shares and the one place an ApiError becomes its response."""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse
from django.middleware.security import SecurityMiddleware
from django.views.decorators.csrf import csrf_exempt

from conversations.api.errors import ApiError

MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's own cap on request.body (2.5 MB)


def too_large() -> ApiError:
    return ApiError(413, f"The request body is over {MAX_BODY_BYTES:,} bytes.", code="body_too_large")


def api_view(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Method and size checks shared by every API view (all async; each authenticates inside its
    own first thread hop, with auth.authenticate), and the rendering of the ApiError a view raises."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
            try:
                if request.method != method:
                    raise ApiError(405, f"Use {method}.", code="method_not_allowed")
                length = request.headers.get("Content-Length", "0")
                if not re.fullmatch(r"[0-9]{1,15}", length):
                    raise ApiError(400, "The Content-Length header is not a number.", code="invalid_request")
                if int(length) > MAX_BODY_BYTES:
                    raise too_large()
                return await view(request, *args, **kwargs)
            except ApiError as error:
                return error.response()

        return wrapper

    return decorate


class ApiSecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware with its hooks run on the event loop: they read settings and set
    headers, no I/O, so the two thread hops MiddlewareMixin takes for them under ASGI buy nothing.
    It also checks the Host header against ALLOWED_HOSTS, as CommonMiddleware does for the pages."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request.get_host()  # DisallowedHost: a 400, in the API's shape (errors.bad_request)
        response = self.process_request(request) or await self.get_response(request)
        return self.process_response(request, response)


class ApiHandler(ASGIHandler):
    """Django's ASGI handler for /api/, without settings.MIDDLEWARE (chatweb/asgi.py routes to it).

    Under an async view each of the browser's middleware costs thread round trips: 11 ms
    before an API view was reached, measured (docs/PERFORMANCE.md). The API needs none of them:
    it is csrf-exempt, authenticates each request itself (auth.authenticate: the key, or the
    session cookie for reads), checks approval there, and renders no pages or messages.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware sets, built from this one middleware instead of the
        # setting: no view, template-response or exception middleware.
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        view = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(ApiSecurityMiddleware(view))
