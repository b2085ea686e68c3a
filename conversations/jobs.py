"""The one job every surface enqueues: a chat turn for the Celery task of conversations.tasks.

The websocket, /api/chat/completions and the surfaces that follow build it only through
conversations.admission; the task reads it back with `TurnJob.model_validate`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from inference_worker.jobs import Generation


class TurnJob(BaseModel):
    model_config = ConfigDict(extra="forbid")

    generation: Generation  # what the engine host writes
    user_id: int | None  # whose usage and quotas it counts against (None: a benchmark's job)
    message_id: int | None = None  # the queued assistant message it stores into (None: a key that saves no history)
    conversation_id: int | None = None
    api_key_id: int | None = None
    make_title: bool = False  # the conversation's first answer: ask the model for a title after it

    @property
    def request_id(self) -> str:
        return self.generation.request_id


def enqueue(job: TurnJob, queue: str) -> None:
    """Hand the job to the model's queue (call it from transaction.on_commit)."""
    from conversations.tasks import run_turn

    # argsrepr: Celery would otherwise put a repr of the job (up to 1 KB of the user's
    # messages) in the message's headers, seen by monitoring and logs.
    run_turn.apply_async(
        args=[job.model_dump(mode="json", exclude_none=True)],
        queue=queue,
        argsrepr=f"(job {job.request_id})",
        kwargsrepr="{}",
    )
