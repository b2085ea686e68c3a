from __future__ import annotations

import datetime

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Sum
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from accounts import services
from accounts.decorators import approved_required
from accounts.models import ApiKey, SiteSettings, UsageDay
from accounts.quotas import limits_for


@login_required
def pending(request: HttpRequest) -> HttpResponse:
    if request.user.is_approved:
        return redirect("chat")
    return render(request, "accounts/pending.html")


EXPIRY_CHOICES = [("", "Never"), ("7", "7 days"), ("30", "30 days"), ("90", "90 days"), ("365", "1 year")]


@approved_required
def api_keys(request: HttpRequest) -> HttpResponse:
    """The user's keys: create (shown once), list with usage, revoke."""
    created_key = None
    error = ""
    if request.method == "POST":
        days = request.POST.get("expires_days", "")
        if days not in dict(EXPIRY_CHOICES):
            error = "Pick an expiry from the list."
        else:
            expires = timezone.now() + datetime.timedelta(days=int(days)) if days else None
            try:
                row, created_key = services.api_key_create(
                    user=request.user,
                    name=request.POST.get("name", ""),
                    expires=expires,
                    save_history=request.POST.get("save_history") == "on",
                )
            except ValueError as exc:
                error = str(exc)
    keys = ApiKey.objects.filter(user=request.user)
    usage = UsageDay.objects.filter(user=request.user)
    totals = usage.aggregate(requests=Sum("requests"), prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    today = usage.filter(day=timezone.localdate()).first()
    return render(
        request,
        "accounts/api_keys.html",
        {
            "keys": keys,
            "created_key": created_key,
            "error": error,
            "expiry_choices": EXPIRY_CHOICES,
            "keys_enabled": SiteSettings.load().api_keys_enabled,
            "base_url": request.build_absolute_uri("/api"),
            "totals": totals,
            "today": today,
            "limits": limits_for(request.user),
        },
        status=400 if error else 200,
    )


@require_POST
@approved_required
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = get_object_or_404(ApiKey, pk=key_id, user=request.user)
    if services.api_key_revoke(key=key):
        messages.success(request, f"Revoked “{key.name}”. It stops working at once.")
    return redirect("api_keys")
