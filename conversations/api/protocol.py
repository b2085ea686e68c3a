"""The API's wire shapes, as pydantic models (vLLM's entrypoints/openai/protocol.py is the model).

Requests are validated strictly: unknown fields are ignored, as OpenAI's own server does
with ones it does not know; known fields with bad values are refused with the field
named in `param`. Every response body and every server-sent event is one of the
response models below, dumped to JSON with json.dumps' separators, as the API has
always written it (clients may match its text).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from django.http import JsonResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference_worker.jobs import HistoryMessage, Integer, Sampling

__all__ = [
    "ChatCompletion",
    "ChatCompletionChunk",
    "ChatCompletionRequest",
    "ChunkEncoder",
    "ErrorResponse",
    "ModelCard",
    "ModelList",
    "Usage",
    "ValidationError",
    "first_error",
    "json_response",
]

# --- requests -------------------------------------------------------------------------


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class ChatCompletionRequest(Sampling):
    """The sampling parameters are Sampling's own fields: the chat's, with the same ranges."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(min_length=1, max_length=2000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_completion_tokens: Integer | None = Field(default=None, ge=1, le=1_000_000)
    n: Integer | None = Field(default=None, ge=1, le=1)
    user: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _storable_text(self) -> ChatCompletionRequest:
        """Text that every database stores and the tokenizers accept: no NUL, no lone surrogate."""
        texts = [("model", self.model), ("user", self.user or "")]
        texts += [(f"messages.{i}.content", m.text()) for i, m in enumerate(self.messages)]
        texts += [("stop", s) for s in self.stop or []]
        for where, text in texts:
            if "\x00" in text:
                raise ValueError(f"{where}: contains a NUL character")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise ValueError(f"{where}: not valid Unicode (a lone surrogate)") from None
        return self

    def system_prompt(self) -> str:
        return "\n\n".join(m.text() for m in self.messages if m.role in ("system", "developer"))

    def history(self) -> list[HistoryMessage]:
        return [HistoryMessage(role=m.role, content=m.text()) for m in self.messages if m.role in ("user", "assistant")]

    def sampling(self) -> Sampling:
        fields = {name: getattr(self, name) for name in Sampling.model_fields}
        fields["max_tokens"] = self.max_completion_tokens or self.max_tokens
        return Sampling(**fields)


# OpenAI's request fields chatweb does not honour (yet), each with the values that ask for
# nothing: any other value is refused by name, never ignored (a client must not silently
# get something other than what it asked for). Fields outside OpenAI's API are ignored.
UNHONOURED: dict[str, tuple[Any, ...]] = {
    "tools": (None, []),
    "tool_choice": (None, "none"),
    "functions": (None, []),
    "function_call": (None, "none"),
    "response_format": (None, {"type": "text"}),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "audio": (None,),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "web_search_options": (None,),
    "service_tier": (None, "auto", "default"),
    "store": (None, False),  # OpenAI's stored completions: chatweb keeps calls per key instead
    "verbosity": (None,),
}


def unhonoured(raw: dict[str, Any]) -> str | None:
    """The first field of `raw` that asks for something chatweb does not do."""
    return next((field for field, nothing in UNHONOURED.items() if raw.get(field) not in nothing), None)


def first_error(exc: ValidationError) -> tuple[str, str | None]:
    """A readable sentence for the first problem, and the field it is about (OpenAI's `param`)."""
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"]) or None
    if error["type"] == "missing":
        return f"Missing required parameter: '{where}'.", where
    if where == "n":
        return "Only n=1 is supported.", where
    message = error["msg"].removeprefix("Value error, ")
    if where is None and ": " in message:  # a whole-request check names its field first
        where, message = message.split(": ", 1)
    return f"Invalid value for '{where}': {message}.", where


# --- responses ------------------------------------------------------------------------


def _absent(value: Any) -> bool:
    return value is None


def omitted() -> Any:
    """A field left out of the JSON while it is None (OpenAI's shapes omit such fields)."""
    return Field(default=None, exclude_if=_absent)


class ErrorInfo(BaseModel):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    error: ErrorInfo


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "chatweb"
    max_model_len: int


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


class CompletionTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    completion_tokens_details: CompletionTokensDetails = Field(default_factory=CompletionTokensDetails)

    @classmethod
    def of(cls, counts: dict | None) -> Usage:
        """From the worker's counts (an end event's `usage`)."""
        counts = counts or {}
        prompt, completion = counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0)
        details = CompletionTokensDetails(reasoning_tokens=counts.get("reasoning_tokens", 0))
        return cls(
            prompt_tokens=prompt,
            completion_tokens=completion,
            total_tokens=prompt + completion,
            completion_tokens_details=details,
        )


FinishReason = Literal["stop", "length"]


class AssistantMessage(BaseModel):
    """The answer; its reasoning only for those who may see it (twice: vLLM's and OpenRouter's names)."""

    role: Literal["assistant"] = "assistant"
    content: str
    reasoning_content: str | None = omitted()
    reasoning: str | None = omitted()


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = omitted()
    reasoning_content: str | None = omitted()
    reasoning: str | None = omitted()
    content: str | None = omitted()


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: None = None
    finish_reason: FinishReason | None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = omitted()  # only in the last chunk, when stream_options.include_usage


def sse(body: BaseModel, *, ensure_ascii: bool = True) -> bytes:
    """One server-sent event carrying a model."""
    return f"data: {json.dumps(body.model_dump(), ensure_ascii=ensure_ascii)}\n\n".encode()


class ChunkEncoder:
    """The chunks of one streamed completion as server-sent events.

    Only the delta differs from one content chunk to the next: the rest of the chunk is
    dumped once, from the models above, and each delta is spliced into it (per token, on
    the event loop: the streaming hot path)."""

    def __init__(self, id: str, created: int, model: str) -> None:
        self.template = ChatCompletionChunk(id=id, created=created, model=model, choices=[])
        empty = self.finish(None)
        # The id and the model's name before the delta are JSON strings, whose quotes are
        # escaped: neither can hold this marker.
        prefix, _, self.suffix = empty.rpartition(b'"delta": {}')
        self.prefix = prefix + b'"delta": '

    def delta(self, delta: DeltaMessage) -> bytes:
        return self.prefix + json.dumps(delta.model_dump(), ensure_ascii=False).encode() + self.suffix

    def finish(self, reason: FinishReason | None) -> bytes:
        choice = ChunkChoice(delta=DeltaMessage(), finish_reason=reason)
        return sse(self.template.model_copy(update={"choices": [choice]}), ensure_ascii=False)

    def usage(self, usage: Usage) -> bytes:
        return sse(self.template.model_copy(update={"usage": usage}))


def json_response(body: BaseModel, status: int = 200) -> JsonResponse:
    return JsonResponse(body.model_dump(), status=status)
