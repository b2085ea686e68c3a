from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render


@login_required
def pending(request: HttpRequest) -> HttpResponse:
    if request.user.is_approved:
        return redirect("chat")
    return render(request, "accounts/pending.html")
