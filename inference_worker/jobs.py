"""The engine host's interface: what a generation may be asked for, and the process's host.

`Sampling` is the one definition of the sampling parameters every surface accepts (the
chat's parameters panel and websocket, a conversation's stored settings, the API): the
same names and the same ranges everywhere, validated once, at admission. `Generation`
is what the engine host needs to run one answer. Both are pydantic models so a job
crosses Celery as plain JSON and is checked again on the way in.

The Celery task that runs a chat turn lives with what it stores (conversations.tasks);
it reaches the engine of its process through `current_host()`.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool

if TYPE_CHECKING:
    from inference_worker.engine import EngineHost

MAX_STOP_SEQUENCES = 4
MAX_STOP_CHARS = 200


def _no_bool(value: object) -> object:
    """JSON's true is not the number 1 here (pydantic would take it as one)."""
    if isinstance(value, bool):
        raise ValueError("must be a number, not true or false")
    return value


def _stops(value: object) -> object:
    if isinstance(value, str):
        value = [value]
    if isinstance(value, list) and (
        len(value) > MAX_STOP_SEQUENCES
        or any(not isinstance(s, str) or not s or len(s) > MAX_STOP_CHARS for s in value)
    ):
        raise ValueError(f"takes up to {MAX_STOP_SEQUENCES} non-empty strings of at most {MAX_STOP_CHARS} characters")
    return value


Number = Annotated[float, BeforeValidator(_no_bool)]
Integer = Annotated[int, BeforeValidator(_no_bool)]


class Sampling(BaseModel):
    """Sampling parameters. NaN and infinities are refused (allow_inf_nan), unknown keys are
    dropped here: whether a surface refuses them is the surface's rule (the API names them)."""

    model_config = ConfigDict(extra="ignore", allow_inf_nan=False, frozen=True)

    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, gt=0, le=1)
    max_tokens: Integer | None = Field(default=None, ge=1, le=1_000_000)
    repetition_penalty: Number | None = Field(default=None, ge=0.5, le=2)
    presence_penalty: Number | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: Number | None = Field(default=None, ge=-2, le=2)
    seed: Integer | None = Field(default=None, ge=0, le=2**63 - 1)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    stop: Annotated[list[str] | None, BeforeValidator(_stops)] = None
    ignore_eos: StrictBool | None = None  # vLLM's extension: exactly max_tokens tokens (benchmarks)

    def given(self) -> dict:
        """The parameters that were set, as stored with a conversation and sent in a job."""
        given = self.model_dump(exclude_none=True)
        if given.get("ignore_eos") is False:
            del given["ignore_eos"]
        return given


class HistoryMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["user", "assistant"]
    content: str


class Generation(BaseModel):
    """One answer for the engine host to write."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    model: str = ""  # the model row's name, for the record: the worker serves one model
    system_prompt: str = ""
    messages: list[HistoryMessage]
    params: Sampling = Sampling()
    enqueued_at: float = Field(default_factory=time.time)
    date: str | None = None  # the prompt's "current date" (harmony); today when None
    script: list[int] | None = None  # tests only: token ids a scripted worker is made to say


_host: EngineHost | None = None


def set_current_host(host: EngineHost | None) -> None:
    """Set by `manage.py run_worker` before Celery starts consuming."""
    global _host
    _host = host


def current_host() -> EngineHost:
    if _host is None:
        raise RuntimeError("a chat turn runs only inside `manage.py run_worker`, which holds the engine")
    return _host
