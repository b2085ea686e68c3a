"""A chat turn in the worker process: claim the message, hand the generation to the engine
host, store progress and the outcome, count usage, make the title.

It lives with what it stores; the engine host (inference_worker) knows nothing of
messages, users or quotas.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import re
import time
from typing import Any

from django.db import InterfaceError, OperationalError, close_old_connections, connection
from django.utils import timezone

from accounts.quotas import quota_add_tokens, quota_refund, quota_release
from accounts.services import api_key_record, usage_record
from conversations.builtin.runner import runner_for
from conversations.jobs import TurnJob
from conversations.knowledge.answering import KNOWLEDGE_TOOL, with_sources
from conversations.models import Conversation, Message, MessageStatus
from conversations.services import title_from_text
from conversations.socket_protocol import SocketEvent
from inference_worker import presence
from inference_worker.engine import EngineHost, RequestState
from inference_worker.jobs import Generation, HistoryMessage, Sampling

log = logging.getLogger(__name__)

PARTIAL_SAVE_SECONDS = 2.0  # a worker killed mid-answer loses at most this much text
DATABASE_RETRY_SECONDS = 120.0  # how long a claim or an outcome waits for a database that is away


def _save(message_id: int, state: RequestState, *, final: bool) -> None:
    snap = state.snapshot()
    fields: dict[str, Any] = {
        "content": snap["content"],
        "reasoning": snap["reasoning"],
        "prompt_tokens": snap["prompt_tokens"],
        "completion_tokens": snap["completion_tokens"],
        "tool_steps": snap["tool_steps"],
        "updated": timezone.now(),
    }
    if final:
        fields.update(
            status=snap["status"] if snap["status"] in MessageStatus.values else MessageStatus.FAILED,
            finish_reason=snap["finish_reason"],
            error=snap["error"],
            error_code=snap["error_code"],
            time_to_first_token_ms=snap["time_to_first_token_ms"],
            tokens_per_second=snap["tokens_per_second"],
        )
    # Never overwrite an outcome someone else already wrote (a stop while queued,
    # or the web tier marking the message failed after losing this worker).
    Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING).update(**fields)


def _claimer(message_id: int, worker: str):
    """One try at claiming a queued message; a retry first checks whether an earlier try
    committed before its connection dropped."""
    tries = 0

    def claim() -> int:
        nonlocal tries
        tries += 1
        if tries > 1 and Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING, worker=worker).exists():
            return 1
        return Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).update(
            status=MessageStatus.STREAMING, worker=worker, updated=timezone.now()
        )

    return claim


def _save_partial(message_id: int, state: RequestState) -> None:
    """Progress is a convenience (a reloaded page, a killed worker): a database that is
    locked or away must not stop the answer, which streams through Redis anyway."""
    try:
        _save(message_id, state, final=False)
    except (OperationalError, InterfaceError) as exc:  # locked or away; a DataError is a bug: raise
        log.warning("saving progress of %s failed (%s); the answer goes on", state.request_id, exc)
        close_old_connections()


def _save_final(message_id: int, state: RequestState) -> None:
    """The outcome must be stored: a database that is locked or briefly away is retried."""
    _retrying(lambda: _save(message_id, state, final=True), f"storing {state.request_id}")


def _retrying(write, what: str):
    deadline = time.monotonic() + DATABASE_RETRY_SECONDS
    delay = 0.5
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError) as exc:  # locked or away, not a bad value
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed (%s); retrying in %.1f s", what, exc, delay)
            close_old_connections()
            connection.close()  # a fresh connection for the next try
            time.sleep(delay)
            delay = min(delay * 2, 10.0)


def turn_run(*, job: TurnJob, host: EngineHost) -> RequestState | None:
    close_old_connections()
    message_id = job.message_id
    claimed = concurrent.futures.Future() if message_id is not None else None
    # The engine checks for a stop and builds the prompt while this thread claims the
    # message: one after the other they took 2-3 ms of every answer's first token.
    tools = runner_for(
        enabled=job.generation.builtin_tools,
        conversation_id=job.conversation_id,
        request_id=job.request_id,
        user_id=job.user_id,
    )
    job, sources = with_sources(
        job, context_length=host.spec.context_length, default_max_tokens=host.spec.default_max_tokens
    )
    state, future = host.submit(job.generation, claimed, tools)
    if claimed is not None:
        try:
            won = bool(_retrying(_claimer(message_id, host.worker_name), f"claiming message {message_id}"))
        except BaseException:
            claimed.set_result(False)
            _drop(state, future, host)
            raise
        claimed.set_result(won)
        if won and sources:
            Message.objects.filter(pk=message_id).update(sources=sources)
        if not won:
            log.info("message %s is no longer queued (stopped or deleted); skipped", message_id)
            if job.user_id is not None:
                quota_release(user_id=job.user_id, request_id=job.request_id)
            _drop(state, future, host)
            return None
    try:
        while True:
            try:
                future.result(timeout=PARTIAL_SAVE_SECONDS)
                break
            except concurrent.futures.TimeoutError:
                if message_id is not None:
                    _save_partial(message_id, state)
        if message_id is not None:
            _save_final(message_id, state)
    except Exception as exc:
        log.exception("storing generation %s failed", state.request_id)
        if not future.done():  # free the engine: nobody will store what it writes
            asyncio.run_coroutine_threadsafe(host.abort(state.request_id), host.loop)
        state.final_event = {
            "event": "error",
            "message": f"The answer could not be stored ({exc.__class__.__name__}). Retry.",
            "code": "storage_error",
        }
        raise
    finally:
        try:
            _account(job, state)  # the answer is stored: a failure here must not un-store it
        except Exception:
            log.exception("counting usage of %s failed", state.request_id)
        finally:
            close_old_connections()
            if tools is not None:
                tools.close()
            host.finish(state)  # "done" / "error" only once the answer is stored
    if job.make_title and job.conversation_id and state.status == "done":
        try:
            conversation_title_run(job=job, answer=state.content, host=host)
        except Exception:  # a missing title never fails the answer
            log.exception("titling conversation %s failed", job.conversation_id)
    return state


def _drop(state: RequestState, future: concurrent.futures.Future, host: EngineHost) -> None:
    """Let go of a request whose message is not ours: nothing stored, nothing published."""
    try:
        future.result(timeout=60)  # it ends at the claim, before the engine or the reply group has it
    finally:
        state.final_event = None  # even a stop it found first is for the message's owner to report
        host.finish(state)


def _account(job: TurnJob, state: RequestState) -> None:
    """Usage per user and key, the day's tokens, and the running slot given back."""
    if job.user_id is None:
        return
    try:
        tool_calls = sum(  # run, not refused; a search of the user's documents is not a tool call
            step.get("status") != "limit" and step.get("tool") != KNOWLEDGE_TOOL for step in state.tool_steps
        )
        if state.prompt_tokens or state.completion_tokens or tool_calls:
            usage_record(
                user_id=job.user_id,
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
                tool_calls=tool_calls,
            )
            quota_add_tokens(user_id=job.user_id, tokens=state.prompt_tokens + state.completion_tokens)
        if job.api_key_id:
            api_key_record(
                key_id=job.api_key_id,
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
            )
    finally:
        if state.error_code == "invalid_params":  # refused before it began: as if never admitted
            quota_refund(user_id=job.user_id, request_id=state.request_id)
        else:
            quota_release(user_id=job.user_id, request_id=state.request_id)


TITLE_PROMPT = (
    "Write a short title, at most six words, for a conversation that begins with the question and "
    "answer below. Reply with the title only: no quotes, no punctuation at the end.\n\n"
    "Question: {question}\n\nAnswer: {answer}"
)


def title_clean(raw: str) -> str:
    """The first line of the model's reply, without quotes, markdown or a "Title:" label."""
    line = title_from_text(raw)
    line = re.sub(r"^(?:#+\s*|\*\*|title\s*:\s*)+", "", line, flags=re.IGNORECASE)
    line = line.strip(" \"'`*_").rstrip(".:;,")
    return line if re.search(r"\w", line) else ""


def conversation_title_run(*, job: TurnJob, answer: str, host: EngineHost) -> str:
    """Ask the model that just answered for a title; runs after "done", so it never delays the answer."""
    conversation_id = job.conversation_id
    if not Conversation.objects.filter(pk=conversation_id, title_auto=True).exists():
        return ""  # renamed or deleted while answering: no need to spend the engine on it
    question = next((m.content for m in reversed(job.generation.messages) if m.role == "user"), "")
    harmony = host.spec.prompt_format == "harmony"
    title_job = Generation(
        request_id=presence.new_request_id(),
        model=job.generation.model,
        messages=[
            HistoryMessage(role="user", content=TITLE_PROMPT.format(question=question[:1500], answer=answer[:1500]))
        ],
        # gpt-oss thinks before it answers, even on low effort: leave it room.
        params=Sampling(temperature=0.0, max_tokens=256 if harmony else 24, reasoning_effort="low"),
    )
    state, future = host.submit(title_job)
    future.result(timeout=120)
    title = title_clean(state.content) if state.status == "done" else ""
    close_old_connections()
    if title and Conversation.objects.filter(pk=conversation_id, title_auto=True).update(title=title):
        event = {"event": SocketEvent.TITLE, "conversation_id": conversation_id, "title": title}
        asyncio.run_coroutine_threadsafe(
            host.publish(presence.conversation_group(conversation_id), event, kind="conversation.event"),
            host.loop,
        ).result(timeout=30)
    return title
