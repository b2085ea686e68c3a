"""The API's response shapes, as pydantic models (vLLM's entrypoints/openai/protocol.py is the
model); the requests are in chat_request.py. Every response body and every server-sent
event is one of the models below, dumped to JSON with json.dumps' separators, as the API
has always written it (clients may match its text).
"""

from __future__ import annotations

import json
from typing import Any, Literal

from django.http import JsonResponse
from pydantic import BaseModel, Field

__all__ = [
    "AssistantMessage",
    "ChatCompletion",
    "ChatCompletionChunk",
    "Choice",
    "ChoiceLogprobs",
    "ChunkEncoder",
    "DeltaFunction",
    "DeltaMessage",
    "DeltaToolCall",
    "ErrorResponse",
    "FunctionCallOut",
    "ModelCard",
    "ModelList",
    "ToolCallOut",
    "Usage",
    "json_response",
]


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


FinishReason = Literal["stop", "length", "tool_calls"]


class FunctionCallOut(BaseModel):
    name: str
    arguments: str


class ToolCallOut(BaseModel):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCallOut


class AssistantMessage(BaseModel):
    """The answer; its reasoning only for those who may see it (twice: vLLM's and OpenRouter's
    names); the function calls it made (content is then null unless the model wrote a preamble)."""

    role: Literal["assistant"] = "assistant"
    content: str | None
    reasoning_content: str | None = omitted()
    reasoning: str | None = omitted()
    tool_calls: list[ToolCallOut] | None = omitted()


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: list[int] | None = None


class TokenLogprob(TopLogprob):
    top_logprobs: list[TopLogprob] = []


class ChoiceLogprobs(BaseModel):
    content: list[TokenLogprob] | None = None
    refusal: None = None


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    logprobs: ChoiceLogprobs | None = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage


class DeltaFunction(BaseModel):
    name: str | None = omitted()
    arguments: str = ""


class DeltaToolCall(BaseModel):
    """A piece of a call: its index, id, type and name first, then its arguments in pieces."""

    index: int = 0
    id: str | None = omitted()
    type: Literal["function"] | None = omitted()
    function: DeltaFunction


class DeltaMessage(BaseModel):
    role: Literal["assistant"] | None = omitted()
    reasoning_content: str | None = omitted()
    reasoning: str | None = omitted()
    content: str | None = omitted()
    tool_calls: list[DeltaToolCall] | None = omitted()


class ChunkChoice(BaseModel):
    index: int = 0
    delta: DeltaMessage
    logprobs: ChoiceLogprobs | None = None
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

    def delta(self, delta: DeltaMessage, logprobs: list[dict] | None = None) -> bytes:
        if logprobs:  # the rarer chunk: dumped whole
            choice = ChunkChoice(delta=delta, logprobs=ChoiceLogprobs(content=logprobs))
            return sse(self.template.model_copy(update={"choices": [choice]}), ensure_ascii=False)
        return self.prefix + json.dumps(delta.model_dump(), ensure_ascii=False).encode() + self.suffix

    def whole_choice(self, index: int, choice: Choice) -> list[bytes]:
        """A choice that comes whole (n > 1, the choices after the first): its text in one
        chunk, then its finish."""
        message = choice.message
        calls = [
            DeltaToolCall(index=i, id=c.id, type="function", function=DeltaFunction(name=c.function.name,
                          arguments=c.function.arguments))
            for i, c in enumerate(message.tool_calls or [])
        ]  # fmt: skip
        delta = DeltaMessage(
            role="assistant",
            content=message.content,
            reasoning_content=message.reasoning_content,
            reasoning=message.reasoning,
            tool_calls=calls or None,
        )
        logprobs = choice.logprobs if choice.logprobs and choice.logprobs.content else None
        text = ChunkChoice(index=index, delta=delta, logprobs=logprobs)
        end = ChunkChoice(index=index, delta=DeltaMessage(), finish_reason=choice.finish_reason)
        return [sse(self.template.model_copy(update={"choices": [c]}), ensure_ascii=False) for c in (text, end)]

    def finish(self, reason: FinishReason | None) -> bytes:
        choice = ChunkChoice(delta=DeltaMessage(), finish_reason=reason)
        return sse(self.template.model_copy(update={"choices": [choice]}), ensure_ascii=False)

    def usage(self, usage: Usage) -> bytes:
        return sse(self.template.model_copy(update={"usage": usage}))


def json_response(body: BaseModel, status: int = 200) -> JsonResponse:
    return JsonResponse(body.model_dump(), status=status)
