"""Celery tasks: thin. A chat turn runs in the worker process that holds the engine; a file is
indexed on a knowledge worker (conversations.knowledge.ingest); a
python call of the built-in tool, when TOOLS_QUEUE is set, on a tool worker
(conversations.builtin.remote)."""

from __future__ import annotations

from celery import shared_task

from conversations.jobs import TurnJob
from inference_worker.jobs import current_host


@shared_task(name="conversations.run_turn", ignore_result=True)
def run_turn(job: dict) -> None:
    from conversations.turns import turn_run

    turn_run(job=TurnJob.model_validate(job), host=current_host())


@shared_task(name="conversations.tool_python", ignore_result=True)
def tool_python(*, call_id: str, code: str, key: str, limits: dict) -> None:
    from conversations.builtin.remote import serve_python

    serve_python(call_id=call_id, code=code, key=key, limits=limits)


@shared_task(name="conversations.tool_remove_workdir", ignore_result=True)
def tool_remove_workdir(key: str) -> None:
    from conversations.builtin.sandbox import remove_workdir

    remove_workdir(key)


@shared_task(name="conversations.knowledge_ingest", ignore_result=True)
def knowledge_ingest(document_id: int) -> None:
    from django.db import close_old_connections

    from conversations.knowledge.ingest import ingest

    close_old_connections()
    try:
        # The task's own id with the worker's name: two threads of one worker are two claimants.
        request = knowledge_ingest.request
        ingest(document_id, f"{request.hostname or 'knowledge'}/{request.id or ''}"[:200])
    finally:
        close_old_connections()


@shared_task(name="conversations.knowledge_reembed", ignore_result=True)
def knowledge_reembed(document_id: int) -> None:
    from django.db import close_old_connections

    from conversations.knowledge.ingest import reembed

    close_old_connections()
    try:
        reembed(document_id)
    finally:
        close_old_connections()
