from __future__ import annotations

import hmac
import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, render
from django.urls import reverse
from django.utils.text import slugify
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import approved_required
from accounts.models import SiteSettings
from conversations import selectors, services
from conversations.knowledge import convert
from conversations.knowledge import presence as knowledge_presence
from conversations.models import Conversation
from conversations.socket_protocol import page_protocol
from inference_worker import presence
from inference_worker.events import WorkerState


def approved_json(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """For the page's JSON calls: 401/403 as JSON instead of a redirect to a login page."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs) -> HttpResponse:
        if not request.user.is_authenticated:
            return JsonResponse({"error": "Sign in first.", "code": "unauthenticated"}, status=401)
        if not request.user.is_approved:
            return JsonResponse({"error": "Your account is awaiting approval.", "code": "pending"}, status=403)
        return view(request, *args, **kwargs)

    return wrapper


def _json_body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise services.SendError("Send a JSON object.", "bad_json") from exc
    if not isinstance(body, dict):
        raise services.SendError("Send a JSON object.", "bad_json")
    return body


def _error(exc: services.SendError, status: int = 400) -> JsonResponse:
    return JsonResponse({"error": exc.message, "code": exc.code}, status=status)


def _own_conversation(request: HttpRequest, conversation_id: int) -> Conversation:
    """Every path that names a conversation by id checks its owner here: anyone else gets 404."""
    return get_object_or_404(Conversation.objects.select_related("model"), pk=conversation_id, owner=request.user)


@approved_required
def chat(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    conversation = _own_conversation(request, conversation_id) if conversation_id is not None else None
    site = SiteSettings.load()
    show_reasoning = site.may_see_reasoning(request.user)
    messages: list[dict] = []
    if conversation is not None:
        services.messages_reap_orphans(conversation.messages.all())
        messages = [selectors.message_json(m, show_reasoning=show_reasoning) for m in conversation.messages.all()]
    sidebar, cursor = selectors.conversations_page(user=request.user)
    return render(
        request,
        "conversations/chat.html",
        {
            "conversation": conversation,
            "page_data": {
                "conversation": _conversation_json(conversation) if conversation else None,
                "messages": messages,
                "sidebar": {"conversations": sidebar, "next": cursor},
                "choices": selectors.model_choices(),
                "show_reasoning": show_reasoning,
                "protocol": page_protocol(),
                # the composer's attach button: shown where files are on, for these kinds and sizes
                "knowledge": {
                    "enabled": site.knowledge_enabled,
                    "accept": convert.ACCEPT,
                    "megabytes": site.upload_max_megabytes,
                },
            },
        },
    )


def _conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": conversation.pk,
        "title": str(conversation),
        "model": conversation.model.name if conversation.model else None,
        "preset": conversation.preset_id,
        "system_prompt": conversation.system_prompt,
        "params": conversation.params,
        "builtin_tools": conversation.builtin_tools,
        "totals": selectors.conversation_totals(conversation),
    }


@require_GET
@approved_json
def conversation_list(request: HttpRequest) -> JsonResponse:
    try:
        page, cursor = selectors.conversations_page(
            user=request.user, query=request.GET.get("q", ""), cursor=request.GET.get("cursor", "")
        )
    except selectors.BadCursor:
        return JsonResponse(
            {"error": "That page cursor is not valid; reload the page.", "code": "bad_cursor"}, status=400
        )
    return JsonResponse({"conversations": page, "next": cursor})


@require_POST
@approved_json
def conversation_create(request: HttpRequest) -> JsonResponse:
    """Start a conversation with a model or a preset (the page then opens its websocket)."""
    try:
        body = _json_body(request)
        conversation = services.conversation_create(
            user=request.user,
            model_name=body.get("model"),
            preset_id=body.get("preset"),
            system_prompt=body.get("system_prompt"),
            params=body.get("params"),
            builtin_tools=body.get("builtin_tools"),
        )
    except services.SendError as exc:
        return _error(exc)
    return JsonResponse(
        {**_conversation_json(conversation), "url": reverse("conversation", args=[conversation.pk])}, status=201
    )


@require_POST
@approved_json
def conversation_configure(request: HttpRequest, conversation_id: int) -> JsonResponse:
    conversation = _own_conversation(request, conversation_id)
    try:
        body = _json_body(request)
        services.conversation_configure(
            conversation=conversation,
            model_name=body.get("model"),
            system_prompt=body.get("system_prompt"),
            params=body.get("params"),
            builtin_tools=body.get("builtin_tools"),
        )
    except services.SendError as exc:
        return _error(exc)
    return JsonResponse(_conversation_json(conversation))


@require_POST
@approved_json
def conversation_rename(request: HttpRequest, conversation_id: int) -> JsonResponse:
    conversation = _own_conversation(request, conversation_id)
    try:
        services.conversation_rename(conversation=conversation, title=_json_body(request).get("title"))
    except services.SendError as exc:
        return _error(exc)
    return JsonResponse({"id": conversation.pk, "title": conversation.title})


@require_POST
@approved_json
def conversation_delete(request: HttpRequest, conversation_id: int) -> JsonResponse:
    services.conversation_delete(conversation=_own_conversation(request, conversation_id))
    return JsonResponse({"deleted": conversation_id})


@require_GET
@approved_required
def conversation_export(request: HttpRequest, conversation_id: int, fmt: str) -> HttpResponse:
    """Download as JSON (every branch) or Markdown (the branch ending at ?leaf=, else the latest)."""
    conversation = _own_conversation(request, conversation_id)
    show_reasoning = SiteSettings.load().may_see_reasoning(request.user)
    slug = slugify(str(conversation))[:60] or f"conversation-{conversation.pk}"
    if fmt == "json":
        body = selectors.conversation_export_json(conversation, show_reasoning=show_reasoning)
        response = HttpResponse(body, content_type="application/json; charset=utf-8")
    else:
        leaf = None
        if request.GET.get("leaf", "").isdigit():
            leaf = conversation.messages.filter(pk=int(request.GET["leaf"])).first()
        leaf = leaf or conversation.messages.order_by("-created", "-id").first()
        branch = services.branch(leaf)
        body = selectors.conversation_export_markdown(conversation, branch, show_reasoning=show_reasoning)
        response = HttpResponse(body, content_type="text/markdown; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{slug}.{"json" if fmt == "json" else "md"}"'
    return response


@require_GET
@approved_json
def model_status(request: HttpRequest) -> JsonResponse:
    """The model picker's and status bar's view of the models (polled while the page is open)."""
    return JsonResponse(selectors.model_choices())


def _may_see_health_details(request: HttpRequest) -> bool:
    """An admin session, or the configured HEALTH_TOKEN as a bearer token."""
    if request.user.is_authenticated and request.user.is_admin:
        return True
    token = settings.HEALTH_TOKEN
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    if not token or scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


def health(request: HttpRequest) -> JsonResponse:
    """Ready when the database and Redis answer and some worker serves a model.

    Anyone (a load balancer, compose's healthcheck) gets the status; the workers'
    names, hosts, devices and memory only an admin or a holder of HEALTH_TOKEN."""
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
        checks["knowledge_workers"] = knowledge_presence.alive()  # indexing uploads; none: files wait
    except Exception as exc:  # noqa: BLE001
        checks["redis"] = f"error: {exc.__class__.__name__}"
    states = {w["state"] for ws in workers.values() for w in ws}
    if checks["database"] != "ok" or checks["redis"] != "ok":
        status = "error"
    elif states & {WorkerState.READY, WorkerState.BUSY, WorkerState.UNLOADING, WorkerState.SLEEPING}:
        # a worker that can take a request (a sleeping model wakes for it)
        status = "ready"
    elif states:
        status = WorkerState.LOADING.value
    else:
        status = "no_workers"
    body = {"status": status, **checks, "workers": workers} if _may_see_health_details(request) else {"status": status}
    return JsonResponse(body, status=200 if status == "ready" else 503)
