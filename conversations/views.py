from __future__ import annotations

import json

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from accounts.decorators import approved_required
from accounts.models import SiteSettings
from conversations import services
from conversations.models import Conversation
from inference_worker import presence
from inference_worker.models import ChatModel


@approved_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    messages: list[dict] = []
    if conversation_id is not None:
        conversation = get_object_or_404(
            Conversation.objects.select_related("model"), pk=conversation_id, owner=request.user
        )
        services.messages_reap_orphans(conversation.messages.all())
        latest = conversation.messages.order_by("-created", "-id").first()
        show_reasoning = SiteSettings.load().may_see_reasoning(request.user)
        messages = [
            {
                "id": m.pk,
                "role": m.role,
                "content": m.content,
                "reasoning": m.reasoning if show_reasoning else "",
                "status": m.status,
                "error": m.error,
                "request_id": m.request_id,
            }
            for m in services.branch(latest)
        ]
    models = list(ChatModel.objects.filter(enabled=True))
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            "conversations": Conversation.objects.filter(owner=request.user)[:50],
            "models": models,
            "page_data": {
                "conversation_id": conversation.pk if conversation else None,
                "messages": messages,
                "model": (conversation.model.name if conversation and conversation.model else None),
            },
        },
    )


@require_POST
@approved_required
def conversation_create(request: HttpRequest) -> JsonResponse:
    """Start a conversation with the chosen model (the page then opens its websocket)."""
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return JsonResponse({"error": "Send JSON."}, status=400)
    model = ChatModel.objects.filter(enabled=True, name=body.get("model")).first() if isinstance(body, dict) else None
    if model is None:
        return JsonResponse({"error": "Pick one of the available models."}, status=400)
    conversation = Conversation.objects.create(owner=request.user, model=model)
    return JsonResponse({"id": conversation.pk, "url": reverse("conversation", args=[conversation.pk])}, status=201)


def health(request: HttpRequest) -> JsonResponse:
    """Ready when the database and Redis answer and some worker serves a model."""
    checks: dict[str, object] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["database"] = f"error: {exc.__class__.__name__}"
    workers: dict[str, list[dict]] = {}
    try:
        for beat in presence.live_workers():
            workers.setdefault(beat["model"], []).append(
                {
                    k: beat.get(k)
                    for k in ("name", "state", "running", "waiting", "memory_used", "memory_total", "device")
                }
            )
        checks["redis"] = "ok"
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    states = {w["state"] for ws in workers.values() for w in ws}
    if checks["database"] != "ok" or checks["redis"] != "ok":
        status = "error"
    elif states & {"ready", "busy", "sleeping"}:
        status = "ready"
    elif states:
        status = "loading"
    else:
        status = "no_workers"
    return JsonResponse({"status": status, **checks, "workers": workers}, status=200 if status == "ready" else 503)
