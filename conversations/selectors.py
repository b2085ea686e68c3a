"""Reads that need care: the sidebar's pages and search, exports, what the model picker shows."""

from __future__ import annotations

import datetime
import json
import time
from typing import Any

from django.db.models import Exists, OuterRef, Q, QuerySet, Sum
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import SiteSettings, User
from conversations.builtin import steps
from conversations.models import Conversation, Message, MessageRole, Preset
from inference_worker import presence
from inference_worker.events import WorkerState
from inference_worker.jobs import BUILTIN_TOOLS
from inference_worker.models import ChatModel

PAGE_SIZE = 50
MAX_QUERY_CHARS = 200


class BadCursor(ValueError):
    pass


def _cursor(conversation: Conversation) -> str:
    return f"{conversation.updated.timestamp():.6f}_{conversation.pk}"


def _parse_cursor(cursor: str) -> tuple[datetime.datetime, int]:
    try:
        stamp, pk = cursor.split("_")
        return datetime.datetime.fromtimestamp(float(stamp), tz=datetime.UTC), int(pk)
    except (ValueError, OverflowError, OSError) as exc:
        raise BadCursor("bad cursor") from exc


def conversations_page(
    *, user: User, query: str = "", cursor: str = "", size: int = PAGE_SIZE
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of the user's conversations, newest first (keyset paging on (updated, id)).

    A query matches titles and the text of any message.
    """
    qs: QuerySet[Conversation] = Conversation.objects.filter(owner=user)
    query = query.strip()[:MAX_QUERY_CHARS]
    if query:
        in_messages = Message.objects.filter(conversation=OuterRef("pk"), content__icontains=query)
        qs = qs.filter(Q(title__icontains=query) | Exists(in_messages))
    if cursor:
        updated, pk = _parse_cursor(cursor)
        qs = qs.filter(Q(updated__lt=updated) | Q(updated=updated, pk__lt=pk))
    rows = list(qs.order_by("-updated", "-pk").only("pk", "title", "updated", "model_id")[: size + 1])
    more = len(rows) > size
    rows = rows[:size]
    page = [{"id": c.pk, "title": str(c), "updated": c.updated.isoformat()} for c in rows]
    return page, (_cursor(rows[-1]) if more and rows else None)


def conversation_totals(conversation: Conversation) -> dict[str, int]:
    totals = conversation.messages.aggregate(prompt=Sum("prompt_tokens"), completion=Sum("completion_tokens"))
    return {"prompt_tokens": totals["prompt"] or 0, "completion_tokens": totals["completion"] or 0}


def message_json(message: Message, *, show_reasoning: bool) -> dict[str, Any]:
    return {
        "id": message.pk,
        "parent": message.parent_id,
        "role": message.role,
        "content": message.content,
        "reasoning": message.reasoning if show_reasoning else "",
        "status": message.status,
        "error": message.error,
        "finish_reason": message.finish_reason,
        "model": message.model_name,
        "request_id": message.request_id,
        "prompt_tokens": message.prompt_tokens,
        "completion_tokens": message.completion_tokens,
        "time_to_first_token_ms": message.time_to_first_token_ms,
        "tokens_per_second": message.tokens_per_second,
        "tool_steps": message.tool_steps,
        "sources": message.sources,
        "created": message.created.isoformat(),
    }


def conversation_export_json(conversation: Conversation, *, show_reasoning: bool) -> str:
    """The whole tree (every branch), each message naming its parent."""
    body = {
        "id": conversation.pk,
        "title": str(conversation),
        "model": conversation.model.name if conversation.model else None,
        "system_prompt": conversation.system_prompt,
        "params": conversation.params,
        "created": conversation.created.isoformat(),
        "updated": conversation.updated.isoformat(),
        "exported": timezone.now().isoformat(),
        "messages": [message_json(m, show_reasoning=show_reasoning) for m in conversation.messages.all()],
    }
    return json.dumps(body, ensure_ascii=False, indent=2)


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def conversation_export_markdown(conversation: Conversation, branch: list[Message], *, show_reasoning: bool) -> str:
    """One branch (the one on screen) as readable Markdown."""
    lines = [f"# {conversation}", ""]
    if conversation.model:
        lines += [f"Model: {conversation.model.display_name} (`{conversation.model.name}`)", ""]
    if conversation.system_prompt:
        lines += ["## System prompt", "", conversation.system_prompt, ""]
    for m in branch:
        lines += [f"## {'You' if m.role == MessageRole.USER else 'Assistant'}", ""]
        if show_reasoning and m.reasoning:
            lines += ["<details><summary>Thinking</summary>", "", m.reasoning, "", "</details>", ""]
        for step in m.tool_steps:
            lines += [f"<details><summary>{_escape(steps.headline(step))}</summary>", ""]
            for label, text in steps.details(step):
                lines += [f"{label}:", "", "```", text.replace("```", "ʼʼʼ"), "```", ""]
            lines += ["</details>", ""]
        lines += [m.content, ""]
        if m.sources:
            lines += [f"### {gettext('Sources')}", ""]
            for source in m.sources:
                quoted = "\n".join("> " + line for line in str(source.get("text", "")).splitlines())
                lines += [f"[{source.get('n')}] {_escape(steps.source_label(source))}", "", quoted, ""]
        if m.status in ("stopped", "failed"):
            lines += [f"*({m.status}{': ' + m.error if m.error else ''})*", ""]
    return "\n".join(lines).rstrip() + "\n"


def model_choices(*, with_status: bool = True) -> dict[str, Any]:
    """What the model picker shows: enabled models with their state, and published presets."""
    beats: list[dict[str, Any]] = []
    redis_error = None
    if with_status:
        try:
            beats = presence.live_workers()
        except Exception as exc:  # noqa: BLE001 - Redis down: every model is unavailable, and says why
            redis_error = exc.__class__.__name__
    models = []
    site = SiteSettings.load()
    for m in ChatModel.objects.filter(enabled=True).order_by("display_name"):
        mine = [b for b in beats if b.get("model") == m.name]
        models.append({**model_info(m, site), **_model_state(mine, redis_error)})
    presets = [
        {"id": p.pk, "name": p.name, "description": p.description, "model": p.model.name}
        for p in Preset.objects.filter(enabled=True, model__enabled=True).select_related("model")
    ]
    return {"models": models, "presets": presets, "checked": time.time()}


def model_info(m: ChatModel, site: SiteSettings) -> dict[str, Any]:
    return {
        "tools": tools_available(m, site),  # the built-in tools a conversation may turn on
        "name": m.name,
        "display_name": m.display_name,
        "description": m.description,
        "harmony": m.is_harmony,
        "context_length": m.context_length,
        "defaults": {
            "temperature": m.default_temperature,
            "top_p": m.default_top_p,
            "max_tokens": m.default_max_tokens,
            "repetition_penalty": 1.0,
            "reasoning_effort": m.default_reasoning_effort if m.is_harmony else None,
        },
    }


def _model_state(beats: list[dict[str, Any]], redis_error: str | None) -> dict[str, Any]:
    if redis_error:
        return {"available": False, "state": "unknown", "reason": f"The queue is unreachable ({redis_error})."}
    if not beats:
        return {"available": False, "state": "offline", "reason": "No worker is running for this model."}
    states = {b.get("state") for b in beats}
    best = (WorkerState.READY, WorkerState.BUSY, WorkerState.SLEEPING, WorkerState.UNLOADING, WorkerState.LOADING)
    state = next((s for s in best if s in states), beats[0].get("state"))
    return {
        "available": True,
        "state": state,
        "reason": "",
        "workers": len(beats),
        "running": sum(b.get("running") or 0 for b in beats),
        "waiting": sum(b.get("waiting") or 0 for b in beats),
        "memory_used": sum(b.get("memory_used") or 0 for b in beats),
        "memory_total": sum(b.get("memory_total") or 0 for b in beats),
        "device": ", ".join(sorted({str(b.get("device")) for b in beats if b.get("device")})),
    }


def tools_in_use(wanted: list[str], model: ChatModel, site: SiteSettings | None = None) -> list[str]:
    """The built-in tools an answer gets: those the conversation turned on that the site
    enables and the model may use (the model is told of no others)."""
    return [name for name in tools_available(model, site) if name in wanted]


def tools_available(model: ChatModel, site: SiteSettings | None = None) -> list[str]:
    """The built-in tools the site enables and the model may use, in BUILTIN_TOOLS' order."""
    site = site or SiteSettings.load()
    return [name for name in BUILTIN_TOOLS if site.tool_enabled(name) and model.tool_allowed(name)]
