"""Conversation writes (HackSoft style): sending a turn, stopping it, reaping orphans."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import redis
from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from accounts.models import User
from accounts.quotas import QuotaExceeded, quota_acquire, quota_refund, quota_release
from conversations.models import Conversation, Message, MessageRole, MessageStatus
from inference_worker import presence
from inference_worker.engine import new_request_id
from inference_worker.models import ChatModel

MAX_MESSAGE_CHARS = 100_000
ACTIVE = (MessageStatus.QUEUED, MessageStatus.STREAMING)


class SendError(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class Turn:
    user_message: Message
    assistant_message: Message
    job: dict[str, Any]
    queue: str
    title: str = ""


PARAM_RULES: dict[str, tuple[type, float, float]] = {
    "temperature": (float, 0.0, 2.0),
    "top_p": (float, 0.01, 1.0),
    "max_tokens": (int, 1, 1_000_000),
    "repetition_penalty": (float, 0.5, 2.0),
    "presence_penalty": (float, -2.0, 2.0),
    "frequency_penalty": (float, -2.0, 2.0),
    "seed": (int, 0, 2**63 - 1),
}


def clean_params(raw: Any) -> dict[str, Any]:
    """Validate generation parameters; unknown keys are ignored, bad values refused."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SendError("params must be an object.", "invalid_params")
    params: dict[str, Any] = {}
    for key, (kind, low, high) in PARAM_RULES.items():
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float) or (kind is int and value != int(value)):
            raise SendError(f"{key} must be a number.", "invalid_params")
        value = kind(value)
        if not low <= value <= high:
            raise SendError(f"{key} must be between {low:g} and {high:g}.", "invalid_params")
        params[key] = value
    effort = raw.get("reasoning_effort")
    if effort is not None:
        if effort not in ("low", "medium", "high"):
            raise SendError("reasoning_effort must be low, medium or high.", "invalid_params")
        params["reasoning_effort"] = effort
    ignore_eos = raw.get("ignore_eos")  # vLLM's extension, as on the API: exactly max_tokens tokens
    if ignore_eos is not None:
        if not isinstance(ignore_eos, bool):
            raise SendError("ignore_eos must be true or false.", "invalid_params")
        if ignore_eos:
            params["ignore_eos"] = True
    return params


def branch(message: Message | None) -> list[Message]:
    """The messages from the root down to `message` (at most one query, for the conversation)."""
    if message is None:
        return []
    if message.parent_id is None:  # a conversation's first message: nothing to look up
        return [message]
    by_id = {m.pk: m for m in Message.objects.filter(conversation_id=message.conversation_id)}
    chain = []
    current: Message | None = by_id.get(message.pk)
    while current is not None:
        chain.append(current)
        current = by_id.get(current.parent_id) if current.parent_id else None
    return chain[::-1]


def history_for(messages: list[Message]) -> list[dict[str, str]]:
    history = []
    for m in messages:
        if m.role == MessageRole.USER:
            history.append({"role": "user", "content": m.content})
        elif m.content and m.status in (MessageStatus.DONE, MessageStatus.STOPPED):
            history.append({"role": "assistant", "content": m.content})
    return history


def model_for(conversation: Conversation) -> ChatModel:
    model = conversation.model
    if model is None or not model.enabled:
        model = ChatModel.objects.filter(enabled=True).order_by("pk").first()
    if model is None:
        raise SendError("No model is configured. An admin can add one in the admin panel.", "no_model")
    return model


def require_live_worker(model: ChatModel) -> list[dict[str, Any]]:
    try:
        workers, waiting = presence.serving(model.name, model.queue)
    except Exception as exc:  # noqa: BLE001 - Redis down: say so instead of hanging
        raise SendError(
            f"The queue is unreachable ({exc.__class__.__name__}); try again shortly.", "queue_down"
        ) from exc
    if not workers:
        raise SendError(
            f"No worker is serving {model.display_name} right now. Pick another model, or ask an admin to start one.",
            "no_worker",
        )
    if waiting >= settings.MAX_QUEUE_LENGTH:
        raise SendError(
            f"{model.display_name} is very busy: {waiting} requests are waiting. Try again in a minute.",
            "queue_full",
        )
    return workers


TITLE_CHARS = 80


def title_from_text(text: str) -> str:
    """The first non-blank line, whitespace collapsed, shortened to TITLE_CHARS.

    The first message gives the title shown until the model's own arrives.
    """
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = " ".join(line.split())
    return line if len(line) <= TITLE_CHARS else line[: TITLE_CHARS - 1].rstrip() + "…"


def _parent_for(conversation: Conversation, parent_id: Any, edit_of: Any) -> tuple[Message | None, bool]:
    """Where a new user message goes: under `parent_id`, beside `edit_of`, or after the latest message.

    Returns (parent, explicit): explicit is True when the caller named the place.
    """
    if edit_of is not None:
        edited = _own_message(conversation, edit_of)
        if edited.role != MessageRole.USER:
            raise SendError("Only your own messages can be edited.", "not_editable")
        return edited.parent, True
    if parent_id is not None:
        return _own_message(conversation, parent_id), True
    return conversation.messages.order_by("-created", "-id").first(), False


def _own_message(conversation: Conversation, message_id: Any) -> Message:
    if isinstance(message_id, bool) or not isinstance(message_id, int):
        raise SendError("Message not found.", "not_found")
    message = Message.objects.filter(pk=message_id, conversation=conversation).first()
    if message is None:
        raise SendError("Message not found.", "not_found")
    return message


def conversation_send(
    *,
    user: User,
    conversation: Conversation,
    content: Any,
    params: Any = None,
    parent_id: Any = None,
    edit_of: Any = None,
    request_id: str | None = None,
) -> Turn:
    """Store the user's message and a queued assistant placeholder; enqueue the job on commit.

    `parent_id` continues the branch ending at that message; `edit_of` makes the new
    message a sibling of an earlier user message (an edit is a branch, not an overwrite).
    """
    if conversation.owner_id != user.pk:
        raise SendError("Conversation not found.", "not_found")
    if not isinstance(content, str) or not content.strip():
        raise SendError("Type a message first.", "empty_message")
    if len(content) > MAX_MESSAGE_CHARS:
        raise SendError(f"This message is {len(content):,} characters; the limit is {MAX_MESSAGE_CHARS:,}.", "too_long")
    params, model, request_id = _turn_setup(conversation, params, request_id)
    with _quota(user, request_id), transaction.atomic():
        _lock(conversation)
        parent, named = _parent_for(conversation, parent_id, edit_of)
        if parent is not None and parent.role == MessageRole.USER:
            raise SendError("Answer the open question first (regenerate it), or edit it.", "bad_parent")
        _refuse_if_busy(conversation)
        first = parent is None and not named  # not even a latest message: the conversation is empty
        user_message = Message.objects.create(
            conversation=conversation, parent=parent, role=MessageRole.USER, content=content
        )
        if first and conversation.title_auto:
            # only while still the machine's: a rename made meanwhile wins
            title = title_from_text(content)
            if Conversation.objects.filter(pk=conversation.pk, title_auto=True).update(title=title):
                conversation.title = title
        return _start_answer(
            user=user,
            conversation=conversation,
            user_message=user_message,
            model=model,
            params=params,
            request_id=request_id,
            make_title=first and conversation.title_auto,
        )


def conversation_regenerate(
    *, user: User, conversation: Conversation, message_id: Any, params: Any = None, request_id: str | None = None
) -> Turn:
    """A new answer to the user message behind `message_id` (an answer, or the question itself)."""
    if conversation.owner_id != user.pk:
        raise SendError("Conversation not found.", "not_found")
    params, model, request_id = _turn_setup(conversation, params, request_id)
    with _quota(user, request_id), transaction.atomic():
        _lock(conversation)
        message = _own_message(conversation, message_id)
        user_message = message if message.role == MessageRole.USER else message.parent
        if user_message is None:
            raise SendError("There is no question to answer again.", "not_found")
        _refuse_if_busy(conversation)
        return _start_answer(
            user=user,
            conversation=conversation,
            user_message=user_message,
            model=model,
            params=params,
            request_id=request_id,
            make_title=False,
        )


def _turn_setup(
    conversation: Conversation, params: Any, request_id: str | None
) -> tuple[dict[str, Any], ChatModel, str]:
    """What every turn checks before it counts or stores anything: parameters, model, a live worker."""
    params = {**(conversation.params or {}), **clean_params(params)}
    model = model_for(conversation)
    require_live_worker(model)
    return params, model, request_id or new_request_id()


@contextlib.contextmanager
def _quota(user: User, request_id: str) -> Iterator[None]:
    """Count the request against the user's limits; uncount it if the turn is refused."""
    try:
        quota_acquire(user=user, request_id=request_id)
    except QuotaExceeded as exc:
        raise SendError(exc.message, exc.code) from exc
    except (OSError, redis.RedisError) as exc:
        raise SendError(
            f"The queue is unreachable ({exc.__class__.__name__}); try again shortly.", "queue_down"
        ) from exc
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError, redis.RedisError):
            quota_refund(user_id=user.pk, request_id=request_id)
        raise


def _lock(conversation: Conversation) -> None:
    """Serialise turns of one conversation (two tabs sending at once): a row lock on
    PostgreSQL. A transaction that began IMMEDIATE (SQLite, as settings.DATABASES
    configures it) already holds the database's one write lock: no query needed."""
    if connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE":
        Conversation.objects.select_for_update().filter(pk=conversation.pk).exists()


def _refuse_if_busy(conversation: Conversation) -> None:
    if conversation.messages.filter(status__in=ACTIVE).exists():
        raise SendError("An answer is still being written; stop it or wait.", "busy")


def _start_answer(
    *,
    user: User,
    conversation: Conversation,
    user_message: Message,
    model: ChatModel,
    params: dict[str, Any],
    request_id: str | None,
    make_title: bool,
) -> Turn:
    request_id = request_id or new_request_id()
    assistant = Message.objects.create(
        conversation=conversation,
        parent=user_message,
        role=MessageRole.ASSISTANT,
        status=MessageStatus.QUEUED,
        model_name=model.name,
        request_id=request_id,
    )
    if conversation.model_id is None:
        conversation.model = model
    conversation.save(update_fields=["model", "updated"])
    job = {
        "request_id": request_id,
        "message_id": assistant.pk,
        "user_id": user.pk,
        "conversation_id": conversation.pk,
        "model": model.name,
        "system_prompt": conversation.system_prompt,
        "messages": history_for(branch(user_message)),
        "params": params,
        "enqueued_at": time.time(),
        "make_title": make_title,
        "quota_user_id": user.pk,  # the worker releases the running slot when the answer ends
    }
    transaction.on_commit(lambda: enqueue(job, model.queue))
    return Turn(user_message, assistant, job, model.queue, str(conversation))


def enqueue(job: dict[str, Any], queue: str) -> None:
    from inference_worker.tasks import generate

    # argsrepr: Celery would otherwise put a repr of the job (up to 1 KB of the user's
    # messages) in the message's headers, seen by monitoring and logs; building it also
    # cost 0.3-0.6 ms of the turn.
    generate.apply_async(args=[job], queue=queue, argsrepr=f"(job {job['request_id']})", kwargsrepr="{}")


def message_stop(*, user: User, conversation: Conversation, request_id: str) -> Message | None:
    """Stop a generation of this conversation: a queued one never starts, a running one is aborted."""
    message = Message.objects.filter(
        conversation=conversation, conversation__owner=user, request_id=request_id, role=MessageRole.ASSISTANT
    ).first()
    if message is None:
        return None
    presence.request_stop(request_id)
    Message.objects.filter(pk=message.pk, status=MessageStatus.QUEUED).update(
        status=MessageStatus.STOPPED, finish_reason="abort", updated=timezone.now()
    )
    message.refresh_from_db()
    return message


def message_fail(*, message_id: int, error: str, content: str | None = None) -> bool:
    """Mark a queued or streaming message failed, keeping the partial text. True if it changed."""
    fields: dict[str, Any] = {"status": MessageStatus.FAILED, "error": error, "updated": timezone.now()}
    if content:
        fields["content"] = content
    return bool(Message.objects.filter(pk=message_id, status__in=ACTIVE).update(**fields))


NO_WORKER_LEFT = "No worker is serving this model any more. Retry when one is back."
WORKER_LOST = "The worker writing this answer stopped responding; the partial answer is kept. Retry to try again."
NOT_STORED = "The worker could not store the end of this answer; the partial answer is kept. Retry to try again."
STALE_SECONDS = 30  # a streaming answer its live worker no longer holds, untouched this long, is over


def messages_reap_orphans(queryset: QuerySet[Message] | None = None) -> int:
    """Fail active messages whose worker is gone (or that no live worker can ever pick up)."""
    queryset = Message.objects.all() if queryset is None else queryset
    fields = ("pk", "worker", "status", "model_name", "updated", "request_id", "conversation__owner")
    active = list(queryset.filter(status__in=ACTIVE).select_related("conversation").only(*fields))
    if not active:
        return 0
    beats = presence.live_workers()
    held = {w["name"]: set(w.get("requests") or ()) for w in beats}
    models_served = {w["model"] for w in beats}
    reaped = 0
    now = timezone.now()
    grace = now - timezone.timedelta(seconds=presence.HEARTBEAT_TTL * 2)
    stale = now - timezone.timedelta(seconds=STALE_SECONDS)
    for message in active:
        if message.status == MessageStatus.STREAMING and message.worker and message.worker not in held:
            reaped += _reap(message, WORKER_LOST)
        elif (
            message.status == MessageStatus.STREAMING
            and message.worker in held
            and message.request_id not in held[message.worker]
            and message.updated < stale
        ):  # its worker is alive but let it go (the database was away when it ended)
            reaped += _reap(message, NOT_STORED)
        elif (
            message.status == MessageStatus.QUEUED
            and message.model_name not in models_served
            and message.updated < grace
        ):
            reaped += _reap(message, NO_WORKER_LEFT)
    return reaped


def _reap(message: Message, error: str) -> bool:
    """Fail an orphaned answer and give its running slot back (its worker never will)."""
    failed = message_fail(message_id=message.pk, error=error)
    if failed and message.request_id:
        with contextlib.suppress(OSError, redis.RedisError):
            quota_release(user_id=message.conversation.owner_id, request_id=message.request_id)
    return failed


def active_messages(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.filter(Q(status=MessageStatus.QUEUED) | Q(status=MessageStatus.STREAMING))


def conversation_create(
    *, user: User, model_name: Any = None, preset_id: Any = None, system_prompt: Any = None, params: Any = None
) -> Conversation:
    """A new conversation from a model, or from a preset (its model, system prompt and parameters)."""
    from conversations.models import Preset

    preset = None
    if preset_id is not None:
        preset = (
            Preset.objects.select_related("model")
            .filter(pk=preset_id if isinstance(preset_id, int) and not isinstance(preset_id, bool) else None)
            .filter(enabled=True, model__enabled=True)
            .first()
        )
        if preset is None:
            raise SendError("That preset is not available.", "bad_preset")
        model = preset.model
    else:
        model = ChatModel.objects.filter(enabled=True, name=model_name).first() if isinstance(model_name, str) else None
        if model is None:
            raise SendError("Pick one of the available models.", "bad_model")
    merged = {**(preset.params if preset else {}), **clean_params(params)}
    prompt = _clean_system_prompt(system_prompt) if system_prompt is not None else None
    return Conversation.objects.create(
        owner=user,
        model=model,
        preset=preset,
        system_prompt=prompt if prompt is not None else (preset.system_prompt if preset else ""),
        params=merged,
    )


MAX_SYSTEM_PROMPT_CHARS = 20_000


def _clean_system_prompt(value: Any) -> str:
    if not isinstance(value, str):
        raise SendError("The system prompt must be text.", "invalid_params")
    if len(value) > MAX_SYSTEM_PROMPT_CHARS:
        raise SendError(
            f"The system prompt is {len(value):,} characters; the limit is {MAX_SYSTEM_PROMPT_CHARS:,}.",
            "invalid_params",
        )
    return value


def conversation_configure(
    *, conversation: Conversation, model_name: Any = None, system_prompt: Any = None, params: Any = None
) -> Conversation:
    """Change a conversation's model, system prompt or parameters (the parameters panel).

    `params` replaces the stored set (a field left out falls back to the model's default).
    """
    fields = ["updated"]
    if model_name is not None:
        model = ChatModel.objects.filter(enabled=True, name=model_name).first() if isinstance(model_name, str) else None
        if model is None:
            raise SendError("Pick one of the available models.", "bad_model")
        conversation.model = model
        fields.append("model")
    if system_prompt is not None:
        conversation.system_prompt = _clean_system_prompt(system_prompt)
        fields.append("system_prompt")
    if params is not None:
        conversation.params = clean_params(params)
        fields.append("params")
    conversation.save(update_fields=fields)
    return conversation


def conversation_rename(*, conversation: Conversation, title: Any) -> Conversation:
    if not isinstance(title, str) or not title.strip():
        raise SendError("Give the conversation a title.", "empty_title")
    if len(title) > TITLE_CHARS * 2:
        raise SendError(f"Keep the title under {TITLE_CHARS * 2} characters.", "too_long")
    conversation.title = " ".join(title.split())
    conversation.title_auto = False
    conversation.save(update_fields=["title", "title_auto"])
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete with its messages; an answer still being written is stopped first (the GPU is freed)."""
    for request_id in active_messages(conversation).values_list("request_id", flat=True):
        if request_id:
            presence.request_stop(request_id)
    conversation.delete()
