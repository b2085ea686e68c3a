from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse

from accounts.models import touch_last_active

# What a signed-in user who is not yet approved may still reach.
PENDING_ALLOWED_PREFIXES = (
    "/accounts/pending/",
    "/accounts/logout/",
    "/accounts/password/change/",
    "/static/",
    "/jsi18n/",  # the scripts' words, which every page loads
    "/health",
)


class ApprovalMiddleware:
    """Pending users see the "awaiting approval" page and nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.path.startswith("/api/"):
            # The API checks approval itself and answers in its own error shape
            # (conversations/api/auth.py); daphne serves it without this middleware anyway.
            return self.get_response(request)
        user = request.user
        if user.is_authenticated:
            if not user.is_approved and not request.path.startswith(PENDING_ALLOWED_PREFIXES):
                return redirect(reverse("account_pending"))
            touch_last_active(user)
        return self.get_response(request)
