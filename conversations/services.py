"""Conversation writes (HackSoft style): sending a turn, stopping it, reaping orphans."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone
from django.utils.translation import gettext

from accounts.models import User
from accounts.quotas import quota_release
from conversations.admission import SendError, admit, clean_params, clean_text
from conversations.jobs import TurnJob
from conversations.models import Conversation, Message, MessageRole, MessageStatus
from conversations.selectors import tools_available, tools_in_use
from inference_worker import presence
from inference_worker.jobs import BUILTIN_TOOLS, Generation, HistoryMessage, Sampling
from inference_worker.models import ChatModel

MAX_MESSAGE_CHARS = 100_000
ACTIVE = (MessageStatus.QUEUED, MessageStatus.STREAMING)


@dataclass
class Turn:
    user_message: Message
    assistant_message: Message
    job: TurnJob
    queue: str
    title: str = ""


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


def history_for(messages: list[Message]) -> list[HistoryMessage]:
    history = []
    for m in messages:
        if m.role == MessageRole.USER:
            history.append(HistoryMessage(role="user", content=m.content))
        elif m.content and m.status in (MessageStatus.DONE, MessageStatus.STOPPED):
            history.append(HistoryMessage(role="assistant", content=m.content))
    return history


def model_for(conversation: Conversation) -> ChatModel:
    model = conversation.model
    if model is None or not model.enabled:
        model = ChatModel.objects.filter(enabled=True).order_by("pk").first()
    if model is None:
        raise SendError("No model is configured. An admin can add one in the admin panel.", "no_model")
    return model


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
    if isinstance(content, str) and not content.strip():
        raise SendError("Type a message first.", "empty_message")
    content = clean_text(content, what=gettext("This message"), limit=MAX_MESSAGE_CHARS)
    turn: list[Turn] = []

    def store(sampling: Sampling) -> TurnJob:
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
        turn.append(_start_answer(user, conversation, user_message, model, sampling, request_id, first))
        return turn[0].job

    model, sampling, request_id = _turn_setup(conversation, params, request_id)
    admit(user=user, model=model, sampling=sampling, request_id=request_id, store=store)
    return turn[0]


def conversation_regenerate(
    *, user: User, conversation: Conversation, message_id: Any, params: Any = None, request_id: str | None = None
) -> Turn:
    """A new answer to the user message behind `message_id` (an answer, or the question itself)."""
    if conversation.owner_id != user.pk:
        raise SendError("Conversation not found.", "not_found")
    turn: list[Turn] = []

    def store(sampling: Sampling) -> TurnJob:
        _lock(conversation)
        message = _own_message(conversation, message_id)
        user_message = message if message.role == MessageRole.USER else message.parent
        if user_message is None:
            raise SendError("There is no question to answer again.", "not_found")
        _refuse_if_busy(conversation)
        turn.append(_start_answer(user, conversation, user_message, model, sampling, request_id, False))
        return turn[0].job

    model, sampling, request_id = _turn_setup(conversation, params, request_id)
    admit(user=user, model=model, sampling=sampling, request_id=request_id, store=store)
    return turn[0]


def _turn_setup(conversation: Conversation, params: Any, request_id: str | None) -> tuple[ChatModel, Sampling, str]:
    """The conversation's model, and its parameters with the turn's own over them."""
    stored = clean_params(conversation.params or {}).given()
    sampling = clean_params({**stored, **clean_params(params).given()})
    return model_for(conversation), sampling, request_id or presence.new_request_id()


def _lock(conversation: Conversation) -> None:
    """Serialise turns of one conversation (two tabs sending at once): a row lock on
    PostgreSQL. A transaction that began IMMEDIATE (SQLite, as settings.DATABASES
    configures it) already holds the database's one write lock: no query needed."""
    if connection.settings_dict.get("OPTIONS", {}).get("transaction_mode") != "IMMEDIATE":
        Conversation.objects.select_for_update().filter(pk=conversation.pk).exists()


def _refuse_if_busy(conversation: Conversation) -> None:
    if conversation.messages.filter(status__in=ACTIVE).exists():
        raise SendError("An answer is still being written; stop it or wait.", "busy")


def answer_placeholder(conversation: Conversation, question: Message, model: ChatModel, request_id: str) -> Message:
    """The queued assistant message a turn's worker claims and writes its answer into."""
    return Message.objects.create(
        conversation=conversation,
        parent=question,
        role=MessageRole.ASSISTANT,
        status=MessageStatus.QUEUED,
        model_name=model.name,
        request_id=request_id,
    )


def _start_answer(
    user: User,
    conversation: Conversation,
    user_message: Message,
    model: ChatModel,
    sampling: Sampling,
    request_id: str,
    make_title: bool,
) -> Turn:
    assistant = answer_placeholder(conversation, user_message, model, request_id)
    if conversation.model_id is None:
        conversation.model = model
    conversation.save(update_fields=["model", "updated"])
    job = TurnJob(
        generation=Generation(
            request_id=request_id,
            model=model.name,
            system_prompt=conversation.system_prompt,
            messages=history_for(branch(user_message)),
            params=sampling,
            builtin_tools=tools_in_use(conversation.builtin_tools, model),
        ),
        user_id=user.pk,
        message_id=assistant.pk,
        conversation_id=conversation.pk,
        make_title=make_title and conversation.title_auto,
    )
    return Turn(user_message, assistant, job, model.queue, str(conversation))


@dataclass(frozen=True)
class Stop:
    message: Message
    before_start: bool  # this stop caught it queued: no worker will end it, so the caller does


def message_stop(*, user: User, conversation: Conversation, request_id: str) -> Stop | None:
    """Stop a generation of this conversation: a queued one never starts, a running one is aborted.

    Only the update that turned it from queued tells: a running answer stopped by this
    request may be stored as stopped by its worker before a re-read here, and its worker
    still sends its end (with the text and the usage)."""
    message = Message.objects.filter(
        conversation=conversation, conversation__owner=user, request_id=request_id, role=MessageRole.ASSISTANT
    ).first()
    if message is None:
        return None
    presence.request_stop(request_id)
    before_start = bool(
        Message.objects.filter(pk=message.pk, status=MessageStatus.QUEUED).update(
            status=MessageStatus.STOPPED, finish_reason="abort", updated=timezone.now()
        )
    )
    message.refresh_from_db()
    return Stop(message, before_start)


def message_fail(*, message_id: int, error: str, code: str, content: str | None = None) -> bool:
    """Mark a queued or streaming message failed, keeping the partial text. True if it changed."""
    fields: dict[str, Any] = {
        "status": MessageStatus.FAILED,
        "error": error,
        "error_code": code,
        "updated": timezone.now(),
    }
    if content:
        fields["content"] = content
    return bool(Message.objects.filter(pk=message_id, status__in=ACTIVE).update(**fields))


def message_keep_seen(*, message_id: int, stored: str, seen: str) -> bool:
    """A failed answer's readers saw more of its text than was stored (the reaper failed it
    with the worker's last save, up to PARTIAL_SAVE_SECONDS behind the stream): keep what
    they saw, if it continues what is stored and nobody changed it meanwhile."""
    if len(seen) <= len(stored) or not seen.startswith(stored):
        return False
    rows = Message.objects.filter(pk=message_id, status=MessageStatus.FAILED, content=stored)
    return bool(rows.update(content=seen, updated=timezone.now()))


NO_WORKER_LEFT = "No worker is serving this model any more. Retry when one is back."
WORKER_LOST = "The worker writing this answer stopped responding; the partial answer is kept. Retry to try again."
NOT_STORED = "The worker could not store the end of this answer; the partial answer is kept. Retry to try again."
# What the web tier or a reaper fails an answer with when no worker will end it: its code, and what it says.
FAILURES = {"worker_lost": WORKER_LOST, "storage_error": NOT_STORED, "no_worker": NO_WORKER_LEFT}
STALE_SECONDS = 30  # a streaming answer its live worker no longer holds, untouched this long, is over


def messages_reap_orphans(queryset: QuerySet[Message] | None = None, *, reaper: str | None = None) -> int:
    """Fail active messages whose worker is gone (or that no live worker can ever pick up).

    `reaper`: the worker that reaps, if one does. Its own heartbeat missing means the beats
    are not all written yet (it has just started, or Redis has): nothing is judged then."""
    queryset = Message.objects.all() if queryset is None else queryset
    fields = ("pk", "worker", "status", "model_name", "updated", "request_id", "conversation__owner")
    active = list(queryset.filter(status__in=ACTIVE).select_related("conversation").only(*fields))
    if not active:
        return 0
    if presence.just_restarted():
        # Redis keeps no heartbeat across a restart: a worker that has not beaten since is
        # not gone (before: every answer streaming then was failed as lost).
        return 0
    beats = presence.live_workers()
    held = {w["name"]: set(w.get("requests") or ()) for w in beats}
    if reaper is not None and reaper not in held:
        return 0
    models_served = {w["model"] for w in beats}
    reaped = 0
    now = timezone.now()
    grace = now - timezone.timedelta(seconds=presence.HEARTBEAT_TTL * 2)
    stale = now - timezone.timedelta(seconds=STALE_SECONDS)
    for message in active:
        if message.status == MessageStatus.STREAMING and message.worker and message.worker not in held:
            reaped += message_reap(message, "worker_lost")
        elif (
            message.status == MessageStatus.STREAMING
            and message.worker in held
            and message.request_id not in held[message.worker]
            and message.updated < stale
        ):  # its worker is alive but let it go (the database was away when it ended)
            reaped += message_reap(message, "storage_error")
        elif (
            message.status == MessageStatus.QUEUED
            and message.model_name not in models_served
            and message.updated < grace
        ):
            reaped += message_reap(message, "no_worker")
    return reaped


def message_reap(message: Message, code: str) -> bool:
    """Fail an orphaned answer with one of FAILURES and give its running slot back (its worker never will)."""
    failed = message_fail(message_id=message.pk, error=FAILURES[code], code=code)
    if failed and message.request_id:
        with contextlib.suppress(OSError, redis.RedisError):
            quota_release(user_id=message.conversation.owner_id, request_id=message.request_id)
    return failed


def active_messages(conversation: Conversation) -> QuerySet[Message]:
    return conversation.messages.filter(Q(status=MessageStatus.QUEUED) | Q(status=MessageStatus.STREAMING))


def conversation_create(
    *,
    user: User,
    model_name: Any = None,
    preset_id: Any = None,
    system_prompt: Any = None,
    params: Any = None,
    builtin_tools: Any = None,
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
    merged = {**(preset.params if preset else {}), **clean_params(params).given()}
    prompt = _clean_system_prompt(system_prompt) if system_prompt is not None else None
    tools = _clean_tools(builtin_tools, model) if builtin_tools is not None else []
    return Conversation.objects.create(
        owner=user,
        model=model,
        preset=preset,
        system_prompt=prompt if prompt is not None else (preset.system_prompt if preset else ""),
        params=merged,
        builtin_tools=tools,
    )


MAX_SYSTEM_PROMPT_CHARS = 20_000


def _clean_system_prompt(value: Any) -> str:
    return clean_text(value, what=gettext("The system prompt"), limit=MAX_SYSTEM_PROMPT_CHARS)


def _clean_tools(value: Any, model: ChatModel) -> list[str]:
    if not isinstance(value, list) or any(not isinstance(name, str) for name in value):
        raise SendError(gettext("Built-in tools must be a list of names."), "bad_tools")
    available = tools_available(model)
    for name in value:
        if name not in BUILTIN_TOOLS:
            raise SendError(gettext("There is no built-in tool %(name)s.") % {"name": name[:40]}, "bad_tools")
        if name not in available:
            message = gettext("The tool %(name)s is not enabled for %(model)s.")
            raise SendError(message % {"name": name, "model": model.display_name}, "tool_disabled")
    return [name for name in BUILTIN_TOOLS if name in value]


def conversation_configure(
    *,
    conversation: Conversation,
    model_name: Any = None,
    system_prompt: Any = None,
    params: Any = None,
    builtin_tools: Any = None,
) -> Conversation:
    """Change a conversation's model, system prompt, parameters or built-in tools (the
    parameters panel).

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
        conversation.params = clean_params(params).given()
        fields.append("params")
    if builtin_tools is not None:
        conversation.builtin_tools = _clean_tools(builtin_tools, model_for(conversation))
        fields.append("builtin_tools")
    conversation.save(update_fields=fields)
    return conversation


def conversation_rename(*, conversation: Conversation, title: Any) -> Conversation:
    if not isinstance(title, str) or not title.strip():
        raise SendError("Give the conversation a title.", "empty_title")
    clean_text(title, what=gettext("The title"))
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
