from __future__ import annotations

from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render

from accounts.decorators import approved_required
from conversations.models import Conversation
from inference_worker import presence
from inference_worker.models import ChatModel


@approved_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = None
    if conversation_id is not None:
        conversation = get_object_or_404(Conversation, pk=conversation_id, owner=request.user)
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            "conversations": Conversation.objects.filter(owner=request.user)[:50],
            "models": ChatModel.objects.filter(enabled=True),
        },
    )


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
