"""Celery tasks: thin. A chat turn runs in the worker process that holds the engine."""

from __future__ import annotations

from celery import shared_task

from conversations.jobs import TurnJob
from inference_worker.jobs import current_host


@shared_task(name="conversations.run_turn", ignore_result=True)
def run_turn(job: dict) -> None:
    from conversations.turns import turn_run

    turn_run(job=TurnJob.model_validate(job), host=current_host())
