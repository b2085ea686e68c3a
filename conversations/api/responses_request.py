"""The Responses API's request (`POST /api/responses`), as pydantic models, and its input items
turned into the one history every surface hands the engine (inference_worker.jobs).

The fields, their ranges and the refusal of what chatweb cannot honour follow the chat
completions request (chat_request.py), which shares the sampling parameters, the JSON
schema check and the tool names with it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from conversations.api.builtin_items import BUILTIN_OF, CODE_OUTPUTS, CodeInterpreterParam, WebSearchParam
from conversations.api.chat_request import JsonSchema, storable
from inference_worker.jobs import (
    BUILTIN_TOOLS,
    TOOL_NAME,
    FunctionTool,
    HistoryMessage,
    Integer,
    Number,
    Sampling,
    ToolCall,
)

MAX_ITEMS = 2000
ENCRYPTED_REASONING = "reasoning.encrypted_content"
TEXT_LOGPROBS = "message.output_text.logprobs"


class InputText(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["input_text", "output_text", "text"]
    text: str


class MessageItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[InputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionCallItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function_call"]
    call_id: str = Field(min_length=1, max_length=100)
    name: str = Field(pattern=TOOL_NAME)
    arguments: str = Field(max_length=1_000_000)
    id: str | None = None
    status: str | None = None


class FunctionCallOutputItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1, max_length=100)
    output: str | list[InputText]
    id: str | None = None
    status: str | None = None

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


class ReasoningText(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["reasoning_text", "summary_text"]
    text: str


class ReasoningItem(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["reasoning"]
    id: str | None = None
    summary: list[ReasoningText] = []
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = Field(default=None, max_length=4_000_000)

    def text(self) -> str:
        return "".join(p.text for p in self.content or [])


class BuiltinCallItem(BaseModel):
    """A built-in tool's call from an earlier response, handed back: it ran inside that
    answer, whose final text stands for it (harmony drops a finished turn's analysis)."""

    model_config = ConfigDict(extra="ignore")
    type: Literal["web_search_call", "code_interpreter_call"]
    id: str | None = None


InputItem = Annotated[
    MessageItem | FunctionCallItem | FunctionCallOutputItem | ReasoningItem | BuiltinCallItem,
    Field(union_mode="left_to_right"),
]


class FunctionToolParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: str = Field(pattern=TOOL_NAME)
    description: str | None = Field(default=None, max_length=100_000)
    parameters: JsonSchema | None = None
    strict: bool | None = None


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    name: str


class TextFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = Field(default=None, pattern=TOOL_NAME)
    description: str | None = None
    json_schema: JsonSchema | None = Field(default=None, alias="schema")
    strict: bool | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> TextFormat:
        if self.type == "json_schema" and (self.json_schema is None or not self.name):
            raise ValueError("schema: name and schema are required with type json_schema")
        return self

    def for_job(self) -> dict[str, Any] | None:
        if self.type == "json_object":
            return {"type": "json_object"}
        if self.type == "json_schema":
            return {"type": "json_schema", "schema": self.json_schema}
        return None


class TextParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    format: TextFormat | None = None


class ReasoningParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    effort: Literal["low", "medium", "high"] | None = None
    summary: Literal["auto", "concise", "detailed"] | None = None  # gpt-oss writes no summary: none is given


class ResponsesRequest(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)

    model: str = Field(min_length=1, max_length=100)
    input: str | list[InputItem] = Field(max_length=MAX_ITEMS)
    instructions: str | None = None
    tools: (
        list[Annotated[FunctionToolParam | WebSearchParam | CodeInterpreterParam, Field(discriminator="type")]] | None
    ) = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    parallel_tool_calls: bool | None = None  # gpt-oss makes one call per turn: either value holds
    text: TextParam | None = None
    reasoning: ReasoningParam | None = None
    max_output_tokens: Integer | None = Field(default=None, ge=1, le=1_000_000)
    temperature: Number | None = Field(default=None, ge=0, le=2)
    top_p: Number | None = Field(default=None, gt=0, le=1)
    metadata: dict[str, Annotated[str, Field(max_length=512)]] | None = Field(default=None, max_length=16)
    stream: bool = False
    store: bool = True
    previous_response_id: str | None = Field(default=None, max_length=64)
    include: list[str] | None = Field(default=None, max_length=16)
    user: str | None = Field(default=None, max_length=256)
    safety_identifier: str | None = Field(default=None, max_length=256)
    prompt_cache_key: str | None = Field(default=None, max_length=256)  # a hint: prefix caching needs none
    truncation: Literal["disabled", "auto"] | None = None
    top_logprobs: Integer | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _check(self) -> ResponsesRequest:
        for field in self.include or []:
            if field not in (ENCRYPTED_REASONING, TEXT_LOGPROBS, CODE_OUTPUTS):
                raise ValueError(
                    f"include: {field!r} is not supported "
                    f"(only {ENCRYPTED_REASONING!r}, {TEXT_LOGPROBS!r}, {CODE_OUTPUTS!r})"
                )
        for key in self.metadata or {}:
            if len(key) > 64:
                raise ValueError("metadata: keys are at most 64 characters")
        names = [t.name for t in self.tools or [] if isinstance(t, FunctionToolParam)]
        if len(set(names)) != len(names):
            raise ValueError("tools: two functions have the same name")
        if self.tool_choice not in (None, "none") and not names:
            raise ValueError("tool_choice: is only allowed when tools are given")
        if isinstance(self.tool_choice, NamedFunction) and self.tool_choice.name not in names:
            raise ValueError(f"tool_choice: no function named {self.tool_choice.name!r} among the tools")
        texts = [("model", self.model), ("instructions", self.instructions or "")]
        for i, item in enumerate(self.items()):
            if isinstance(item, MessageItem | FunctionCallOutputItem):
                texts.append((f"input.{i}", item.text()))
            elif isinstance(item, FunctionCallItem):
                texts.append((f"input.{i}.arguments", item.arguments))
            elif isinstance(item, ReasoningItem):
                texts.append((f"input.{i}.content", item.text()))
        storable(texts)
        return self

    def items(self) -> list:
        if isinstance(self.input, str):
            return [MessageItem(role="user", content=self.input)]
        return list(self.input)

    def logprobs_wanted(self) -> int | None:
        """How many alternatives each output token's logprob comes with; None: no logprobs."""
        if TEXT_LOGPROBS in (self.include or []) or self.top_logprobs is not None:
            return self.top_logprobs or 0
        return None

    def wants_sealed_reasoning(self) -> bool:
        return ENCRYPTED_REASONING in (self.include or [])

    def choice(self) -> str:
        if isinstance(self.tool_choice, NamedFunction):
            return self.tool_choice.name
        return self.tool_choice or "auto"

    def function_tools(self) -> list[FunctionTool]:
        return [
            FunctionTool(name=t.name, description=t.description or "", parameters=t.parameters, strict=bool(t.strict))
            for t in self.tools or []
            if isinstance(t, FunctionToolParam)
        ]

    def builtin_tools(self) -> list[str]:
        """The built-in tools asked for, as gpt-oss names them (browser, python)."""
        wanted = {BUILTIN_OF[t.type] for t in self.tools or [] if not isinstance(t, FunctionToolParam)}
        return [name for name in BUILTIN_TOOLS if name in wanted]

    def included(self) -> frozenset[str]:
        return frozenset(self.include or [])

    def response_format(self) -> dict[str, Any] | None:
        return self.text.format.for_job() if self.text and self.text.format else None

    def sampling(self) -> Sampling:
        return Sampling(
            temperature=self.temperature,
            top_p=self.top_p,
            max_tokens=self.max_output_tokens,
            reasoning_effort=self.reasoning.effort if self.reasoning else None,
        )


def history(items: list[dict[str, Any]]) -> tuple[str, list[HistoryMessage]]:
    """Input items (as stored: plain dicts, reasoning already opened) as a system prompt and
    the history. A reasoning item goes with the assistant turn after it; function calls in a
    row are one assistant turn (with the message before them, a preamble, if there is one);
    a function's output names the call it answers."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    reasoning = ""
    for item in items:
        kind = item["type"]
        if kind == "reasoning":
            reasoning += item.get("text", "")
        elif kind == "message" and item["role"] in ("system", "developer"):
            system.append(item["text"])
        elif kind == "message":
            turns.append({"role": item["role"], "content": item["text"], "reasoning": "", "tool_calls": []})
            if item["role"] == "assistant":
                turns[-1]["reasoning"], reasoning = reasoning, ""
        elif kind == "function_call":
            names[item["call_id"]] = item["name"]
            call = ToolCall(id=item["call_id"], name=item["name"], arguments=item["arguments"])
            last = turns[-1] if turns else None
            if last is None or last["role"] != "assistant":
                last = {"role": "assistant", "content": "", "reasoning": "", "tool_calls": []}
                turns.append(last)
            last["tool_calls"].append(call)
            last["reasoning"] += reasoning
            reasoning = ""
        elif kind == "function_call_output":
            turns.append(
                {
                    "role": "tool",
                    "content": item["output"],
                    "tool_call_id": item["call_id"],
                    "name": names.get(item["call_id"], ""),
                }
            )
    messages = [
        HistoryMessage(
            role=t["role"],
            content=t["content"],
            reasoning=t.get("reasoning", "") if t.get("tool_calls") else "",
            tool_calls=t.get("tool_calls", []),
            tool_call_id=t.get("tool_call_id", ""),
            name=t.get("name", ""),
        )
        for t in turns
    ]
    return "\n\n".join(s for s in system if s.strip()), messages
