"""Celery tasks: thin. The engine host lives in the worker process (run_worker)."""

from __future__ import annotations

from celery import shared_task

from inference_worker.engine import EngineHost

HOST: EngineHost | None = None  # set by `manage.py run_worker` before Celery starts consuming


@shared_task(name="inference.generate", ignore_result=True)
def generate(job: dict) -> None:
    from inference_worker.services import generation_run

    if HOST is None:
        raise RuntimeError("inference.generate runs only inside `manage.py run_worker`")
    generation_run(job=job, host=HOST)
