from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect


def approved_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Signed in and approved (admin or user); pending users go to the waiting page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        user = request.user
        if not user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not user.is_approved:
            return redirect("account_pending")
        return view(request, *args, **kwargs)

    return wrapper
