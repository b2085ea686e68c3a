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

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Literal, Protocol

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, StrictBool, model_validator

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


MAX_LOGIT_BIAS = 300  # OpenAI's own limit on logit_bias entries
MAX_STOP_TOKEN_IDS = 32


def _biases(value: object) -> object:
    """{"token id": bias}: ids as OpenAI's JSON keys are (strings of non-negative integers),
    biases within -100..100."""
    if value is None:
        return value
    if not isinstance(value, dict) or len(value) > MAX_LOGIT_BIAS:
        raise ValueError(f"must be an object of at most {MAX_LOGIT_BIAS} token ids to biases")
    for key, bias in value.items():
        if not (isinstance(key, str) and key.isascii() and key.isdigit() and len(key) <= 9):
            raise ValueError(f"{key!r} is not a token id")
        if isinstance(bias, bool) or not isinstance(bias, int | float) or not -100 <= bias <= 100:
            raise ValueError(f"the bias of token {key} must be a number from -100 to 100")
    return {str(int(key)): bias for key, bias in value.items()}


def _token_ids(value: object) -> object:
    if value is not None and (
        not isinstance(value, list)
        or len(value) > MAX_STOP_TOKEN_IDS
        or any(isinstance(t, bool) or not isinstance(t, int) or not 0 <= t < 10**9 for t in value)
    ):
        raise ValueError(f"takes up to {MAX_STOP_TOKEN_IDS} token ids (non-negative integers)")
    return value


def error_place(where: str | None, message: str) -> tuple[str | None, str]:
    """Where a validation error is and what it says. A check of a whole object names the
    field it is about first ("min_tokens: must be at most max_tokens"): that field joins
    the place, as OpenAI's `param` and the chat's errors name it."""
    field, _, rest = message.partition(": ")
    if rest and re.fullmatch(r"[A-Za-z_][\w.]*", field):
        return (f"{where}.{field}" if where else field), rest
    return where, message


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
    logit_bias: Annotated[dict[str, Number] | None, BeforeValidator(_biases)] = None  # OpenAI's: token id -> bias
    # vLLM's extensions, as clients send them in extra_body
    ignore_eos: StrictBool | None = None  # exactly max_tokens tokens (benchmarks)
    top_k: Integer | None = Field(default=None, ge=-1, le=1_000_000)  # 0 or -1: every token
    min_p: Number | None = Field(default=None, ge=0, le=1)
    min_tokens: Integer | None = Field(default=None, ge=0, le=1_000_000)
    stop_token_ids: Annotated[list[Integer] | None, BeforeValidator(_token_ids)] = None

    @model_validator(mode="after")
    def _at_least_fits(self) -> Sampling:
        if self.min_tokens and self.max_tokens and self.min_tokens > self.max_tokens:
            raise ValueError(f"min_tokens: must be at most max_tokens ({self.max_tokens})")
        return self

    def outside(self, vocab: int) -> tuple[str, list[int]] | None:
        """The first field naming token ids past a vocabulary of `vocab`, and those ids in
        order; None when every id named (logit_bias, stop_token_ids) is the model's. The web
        tier asks with the size its live workers report, the engine with its own."""
        named = {
            "logit_bias": [int(t) for t in self.logit_bias or {}],
            "stop_token_ids": list(self.stop_token_ids or []),
        }
        for field, ids in named.items():
            if past := sorted(t for t in ids if t >= vocab):
                return field, past
        return None

    def given(self) -> dict:
        """The parameters that were set, as stored with a conversation and sent in a job."""
        given = self.model_dump(exclude_none=True)
        if given.get("ignore_eos") is False:
            del given["ignore_eos"]
        return given


TOOL_NAME = r"^[A-Za-z0-9_-]{1,64}$"  # OpenAI's rule for function names


class ToolCall(BaseModel):
    """A function call the model made: its arguments as the JSON text it wrote."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    id: str = Field(min_length=1, max_length=100)
    name: str = Field(pattern=TOOL_NAME)
    arguments: str = ""


class HistoryMessage(BaseModel):
    """One message of the history: a user's, an assistant's (its answer, or the calls it made
    with the reasoning that led to them), or a tool's result for one call."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    role: Literal["user", "assistant", "tool"]
    content: str
    reasoning: str = ""  # an assistant's, sent back on tool-calling turns (harmony needs it)
    tool_calls: list[ToolCall] = []
    tool_call_id: str = ""  # a tool's: the call it answers
    name: str = ""  # a tool's: the function that was called


class FunctionTool(BaseModel):
    """A function the model may call (OpenAI's `tools` entry of type function)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(pattern=TOOL_NAME)
    description: str = ""
    parameters: dict | None = None  # a JSON schema (checked as one at the surface)
    strict: bool = False


class Generation(BaseModel):
    """One answer for the engine host to write."""

    model_config = ConfigDict(extra="forbid")

    request_id: str
    model: str = ""  # the model row's name, for the record: the worker serves one model
    system_prompt: str = ""
    messages: list[HistoryMessage]
    params: Sampling = Sampling()
    tools: list[FunctionTool] = []
    tool_choice: str = "auto"  # "auto", "none", "required", or the name of a function
    response_format: dict | None = None  # {"type": "json_object"} or {"type": "json_schema", "schema": ...}
    logprobs: int | None = Field(default=None, ge=0, le=20)  # the text's token logprobs, with this many alternatives
    n: int = Field(default=1, ge=1, le=128)  # choices, sampled in one engine request
    enqueued_at: float = Field(default_factory=time.time)
    date: str | None = None  # the prompt's "current date" (harmony); today when None
    script: list[int] | None = None  # tests only: token ids a scripted worker is made to say
    # gpt-oss's built-in tools the model is told of; the submitter runs them (ToolRunner)
    builtin_tools: list[Literal["browser", "python"]] = []
    # Steps the submitter ran before the engine (a search of the user's documents), as users
    # see them: published right after "start" and kept first among the answer's tool steps.
    steps: list[dict[str, Any]] = []


BUILTIN_TOOLS = ("browser", "python")


@dataclass
class ToolOutcome:
    """What a built-in tool call gave: the tool message the model reads next, and the step
    as users see and the message stores it."""

    text: str
    step: dict[str, Any]
    last: bool = False  # a limit is reached and the model was told so: no more calls


class ToolRunner(Protocol):
    """Runs one answer's built-in tool calls (the submitter's, so that what they may reach,
    and their limits, are its business). Called from a thread, never on the engine loop."""

    def start(self, recipient: str, text: str) -> dict[str, Any]:
        """The step as shown while the call runs ("Searching for ...")."""

    def run(self, recipient: str, text: str, step: dict[str, Any], cancelled: Callable[[], bool]) -> ToolOutcome:
        """Run the call the model wrote to `recipient` ("python", "browser.search", ...)."""


_host: EngineHost | None = None


def set_current_host(host: EngineHost | None) -> None:
    """Set by `manage.py run_worker` before Celery starts consuming."""
    global _host
    _host = host


def current_host() -> EngineHost:
    if _host is None:
        raise RuntimeError("a chat turn runs only inside `manage.py run_worker`, which holds the engine")
    return _host
