"""The Responses API's shapes: the response object, its output items and its server-sent events
(OpenAI's sequence), as pydantic models.

Items are kept (StoredResponse.output) in chatweb's own plain form, with reasoning in clear;
`public_item` turns one into what a caller may see: reasoning only for those Site settings
let see it, and sealed (include: reasoning.encrypted_content) for whoever asked.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import BaseModel, Field

from conversations.api.builtin_items import public_step_item
from conversations.api.protocol import omitted
from conversations.api.sealing import seal


class InputTokensDetails(BaseModel):
    cached_tokens: int = 0


class OutputTokensDetails(BaseModel):
    reasoning_tokens: int = 0


class ResponseUsage(BaseModel):
    input_tokens: int = 0
    input_tokens_details: InputTokensDetails = Field(default_factory=InputTokensDetails)
    output_tokens: int = 0
    output_tokens_details: OutputTokensDetails = Field(default_factory=OutputTokensDetails)
    total_tokens: int = 0

    @classmethod
    def of(cls, counts: dict | None) -> ResponseUsage:
        """From the worker's counts (an end event's `usage`): real numbers, as chat completions'."""
        counts = counts or {}
        prompt, completion = counts.get("prompt_tokens", 0), counts.get("completion_tokens", 0)
        return cls(
            input_tokens=prompt,
            output_tokens=completion,
            output_tokens_details=OutputTokensDetails(reasoning_tokens=counts.get("reasoning_tokens", 0)),
            total_tokens=prompt + completion,
        )


class OutputText(BaseModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list = []
    logprobs: list = []


class ReasoningText(BaseModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class MessageOut(BaseModel):
    id: str
    type: Literal["message"] = "message"
    role: Literal["assistant"] = "assistant"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    content: list[OutputText]


class ReasoningOut(BaseModel):
    id: str
    type: Literal["reasoning"] = "reasoning"
    summary: list = []  # gpt-oss writes no summary
    content: list[ReasoningText] | None = omitted()  # only for those who may see reasoning
    encrypted_content: str | None = omitted()  # only when asked for
    status: Literal["in_progress", "completed", "incomplete"] | None = omitted()


class FunctionCallOut(BaseModel):
    id: str
    type: Literal["function_call"] = "function_call"
    status: Literal["in_progress", "completed", "incomplete"] = "completed"
    call_id: str
    name: str
    arguments: str


class WebSearchCallOut(BaseModel):
    id: str
    type: Literal["web_search_call"] = "web_search_call"
    status: Literal["in_progress", "searching", "completed", "failed", "incomplete"]
    action: dict[str, Any]


class CodeInterpreterCallOut(BaseModel):
    id: str
    type: Literal["code_interpreter_call"] = "code_interpreter_call"
    status: Literal["in_progress", "completed", "incomplete", "interpreting", "failed"]
    code: str | None
    container_id: str
    outputs: list[dict[str, Any]] | None  # only when include asks for code_interpreter_call.outputs


OutputItem = MessageOut | ReasoningOut | FunctionCallOut | WebSearchCallOut | CodeInterpreterCallOut


def public_item(
    item: dict[str, Any],
    *,
    show_reasoning: bool,
    seal_for: int | None,
    status: str = "completed",
    include: frozenset[str] = frozenset(),
):
    """A kept output item as the caller sees it (`seal_for`: the owner, when the caller asked
    for sealed reasoning)."""
    kind = item["type"]
    if kind == "web_search_call":
        return WebSearchCallOut(**item)
    if kind == "code_interpreter_call":
        return CodeInterpreterCallOut(**public_step_item(item, include))
    if kind == "reasoning":
        return ReasoningOut(
            id=item["id"],
            content=[ReasoningText(text=item["text"])] if show_reasoning else None,
            encrypted_content=seal(item["text"], seal_for) if seal_for is not None else None,
        )
    if kind == "message":
        text = OutputText(
            text=item["text"], logprobs=item.get("logprobs") or [], annotations=item.get("annotations") or []
        )
        return MessageOut(id=item["id"], status=status, content=[text])
    return FunctionCallOut(
        id=item["id"], status=status, call_id=item["call_id"], name=item["name"], arguments=item["arguments"]
    )


class ErrorOut(BaseModel):
    code: str
    message: str


class IncompleteDetails(BaseModel):
    reason: Literal["max_output_tokens"] = "max_output_tokens"


class ResponseObject(BaseModel):
    id: str
    object: Literal["response"] = "response"
    created_at: int
    status: Literal["in_progress", "completed", "incomplete", "failed"]
    model: str
    output: list[OutputItem] = []
    output_text: str | None = omitted()  # the SDKs' own property; some clients read the field
    usage: ResponseUsage | None = None
    error: ErrorOut | None = None
    incomplete_details: IncompleteDetails | None = None
    instructions: str | None = None
    metadata: dict[str, str] = {}
    tools: list[dict] = []
    tool_choice: Any = "auto"
    parallel_tool_calls: bool = False
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None
    previous_response_id: str | None = None
    reasoning: dict = {}
    text: dict = {}
    store: bool = True
    truncation: str = "disabled"
    user: str | None = None
    background: bool = False
    service_tier: str = "default"


class Deleted(BaseModel):
    id: str
    object: Literal["response"] = "response"
    deleted: bool = True


def event(kind: str, seq: int, **fields: Any) -> bytes:
    """One server-sent event of a response stream: its type on the event line and in the data."""
    data = {"type": kind, "sequence_number": seq}
    data.update({k: v.model_dump() if isinstance(v, BaseModel) else v for k, v in fields.items()})
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n".encode()
