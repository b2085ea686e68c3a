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
    "/health",
)


class ApprovalMiddleware:
    """Pending users see the "awaiting approval" page and nothing else."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if user.is_authenticated:
            if not user.is_approved and not request.path.startswith(PENDING_ALLOWED_PREFIXES):
                if request.path.startswith("/api/"):
                    # API errors keep the API's shape; see conversations/api.py.
                    from conversations.api import api_error

                    return api_error(
                        403,
                        "Your account is awaiting approval by an administrator.",
                        type="permission_denied",
                        code="account_pending",
                    )
                return redirect(reverse("account_pending"))
            touch_last_active(user)
        return self.get_response(request)
