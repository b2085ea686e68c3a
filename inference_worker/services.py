"""Worker-side writes: claim the message, store progress and the result, count usage."""

from __future__ import annotations

import concurrent.futures
import logging
from typing import Any

from django.db import close_old_connections
from django.utils import timezone

from accounts.services import usage_record
from conversations.models import Message, MessageStatus
from inference_worker.engine import EngineHost, RequestState

log = logging.getLogger(__name__)

PARTIAL_SAVE_SECONDS = 2.0  # a worker killed mid-answer loses at most this much text


def _save(message_id: int, state: RequestState, *, final: bool) -> None:
    snap = state.snapshot()
    fields: dict[str, Any] = {
        "content": snap["content"],
        "reasoning": snap["reasoning"],
        "prompt_tokens": snap["prompt_tokens"],
        "completion_tokens": snap["completion_tokens"],
        "updated": timezone.now(),
    }
    if final:
        fields.update(
            status=snap["status"] if snap["status"] in MessageStatus.values else MessageStatus.FAILED,
            finish_reason=snap["finish_reason"],
            error=snap["error"],
            time_to_first_token_ms=snap["time_to_first_token_ms"],
            tokens_per_second=snap["tokens_per_second"],
        )
    # Never overwrite an outcome someone else already wrote (a stop while queued,
    # or the web tier marking the message failed after losing this worker).
    Message.objects.filter(pk=message_id, status=MessageStatus.STREAMING).update(**fields)


def generation_run(*, job: dict[str, Any], host: EngineHost) -> RequestState | None:
    close_old_connections()
    message_id = job.get("message_id")
    if message_id is not None:
        claimed = Message.objects.filter(pk=message_id, status=MessageStatus.QUEUED).update(
            status=MessageStatus.STREAMING, worker=host.worker_name, updated=timezone.now()
        )
        if not claimed:
            log.info("message %s is no longer queued (stopped or deleted); skipped", message_id)
            return None
    state, future = host.submit(job)
    try:
        while True:
            try:
                future.result(timeout=PARTIAL_SAVE_SECONDS)
                break
            except concurrent.futures.TimeoutError:
                if message_id is not None:
                    _save(message_id, state, final=False)
        if message_id is not None:
            _save(message_id, state, final=True)
        if job.get("user_id") and (state.prompt_tokens or state.completion_tokens):
            usage_record(
                user_id=job["user_id"],
                prompt_tokens=state.prompt_tokens,
                completion_tokens=state.completion_tokens,
            )
    except Exception as exc:
        log.exception("storing generation %s failed", state.request_id)
        state.final_event = {
            "event": "error",
            "message": f"The answer could not be stored ({exc.__class__.__name__}). Retry.",
            "code": "storage_error",
        }
        raise
    finally:
        close_old_connections()
        host.finish(state)  # "done" / "error" only once the answer is stored
    return state
