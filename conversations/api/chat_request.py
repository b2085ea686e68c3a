"""The chat completions request, as pydantic models (vLLM's entrypoints/openai/protocol.py is
the model), and the fields of OpenAI's API that chatweb refuses by name.

Requests are validated strictly: unknown fields are ignored, as OpenAI's own server does
with ones it does not know; known fields with bad values are refused with the field
named in `param`.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import jsonschema
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference_worker.jobs import TOOL_NAME, FunctionTool, HistoryMessage, Integer, Sampling, ToolCall, error_place

__all__ = ["ChatCompletionRequest", "JsonSchema", "ValidationError", "first_error", "storable", "unhonoured"]


class TextPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text"]
    text: str


def _a_json_schema(schema: dict[str, Any]) -> dict[str, Any]:
    try:
        jsonschema.validators.validator_for(schema).check_schema(schema)
    except jsonschema.SchemaError as exc:
        raise ValueError(f"not a JSON schema ({exc.message})") from None
    return schema


JsonSchema = Annotated[dict[str, Any], AfterValidator(_a_json_schema)]


def storable(texts: list[tuple[str, str]]) -> None:
    """Text that every database stores and the tokenizers accept: no NUL, no lone surrogate
    (`texts`: where each is, and the text)."""
    for where, text in texts:
        if "\x00" in text:
            raise ValueError(f"{where}: contains a NUL character")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ValueError(f"{where}: not valid Unicode (a lone surrogate)") from None


class CalledFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=TOOL_NAME)
    arguments: str = Field(max_length=1_000_000)


class RequestToolCall(BaseModel):
    """A call an assistant message made earlier in the history."""

    model_config = ConfigDict(extra="ignore")
    id: str = Field(min_length=1, max_length=100)
    type: Literal["function"] = "function"
    function: CalledFunction


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None  # None: an assistant message that only calls
    tool_calls: list[RequestToolCall] | None = Field(default=None, max_length=128)
    tool_call_id: str | None = Field(default=None, max_length=100)
    reasoning_content: str | None = None  # an assistant's reasoning sent back (vLLM's name)
    reasoning: str | None = None  # the same (OpenRouter's name)

    @model_validator(mode="after")
    def _shape(self) -> ChatMessage:
        if self.content is None and not (self.role == "assistant" and self.tool_calls):
            raise ValueError("content: is required (only an assistant message with tool_calls may leave it out)")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("tool_call_id: a tool message names the call it answers")
        if self.tool_calls and self.role != "assistant":
            raise ValueError("tool_calls: only an assistant message makes calls")
        return self

    def sent_reasoning(self) -> str:
        return self.reasoning_content or self.reasoning or ""

    def text(self) -> str:
        if self.content is None:
            return ""
        return self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)


class FunctionDefinition(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str = Field(pattern=TOOL_NAME)
    description: str = Field(default="", max_length=100_000)
    parameters: JsonSchema | None = None
    strict: bool | None = None


class ToolParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: FunctionDefinition


class NamedFunction(BaseModel):
    model_config = ConfigDict(extra="ignore")
    name: str


class NamedToolChoice(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["function"]
    function: NamedFunction


class JsonSchemaFormat(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    name: str = Field(pattern=TOOL_NAME)
    description: str = ""
    json_schema: JsonSchema = Field(alias="schema")
    strict: bool | None = None


class ResponseFormat(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("json_schema: is required with type json_schema")
        return self

    def for_job(self) -> dict[str, Any] | None:
        """What the engine enforces: None for text."""
        if self.type == "json_object":
            return {"type": "json_object"}
        if self.type == "json_schema":
            return {"type": "json_schema", "schema": self.json_schema.json_schema}
        return None


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
    n: Integer | None = Field(default=None, ge=1, le=128)
    user: str | None = Field(default=None, max_length=256)
    tools: list[ToolParam] | None = Field(default=None, max_length=128)
    tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None  # gpt-oss makes one call per turn: either value holds
    response_format: ResponseFormat | None = None
    logprobs: bool | None = None
    top_logprobs: Integer | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _logprobs(self) -> ChatCompletionRequest:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs: needs logprobs: true")
        return self

    def logprobs_wanted(self) -> int | None:
        """How many alternatives each token's logprob comes with; None: no logprobs."""
        return (self.top_logprobs or 0) if self.logprobs else None

    @model_validator(mode="after")
    def _tools(self) -> ChatCompletionRequest:
        names = [t.function.name for t in self.tools or []]
        if len(set(names)) != len(names):
            raise ValueError("tools: two functions have the same name")
        choice = self.tool_choice
        if choice not in (None, "none") and not names:
            raise ValueError("tool_choice: is only allowed when tools are given")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(f"tool_choice: no function named {choice.function.name!r} among the tools")
        calls: dict[str, str] = {}
        for i, message in enumerate(self.messages):
            for call in message.tool_calls or []:
                calls[call.id] = call.function.name
            if message.role == "tool" and message.tool_call_id not in calls:
                raise ValueError(f"messages.{i}.tool_call_id: no earlier assistant call has this id")
        return self

    @model_validator(mode="after")
    def _storable_text(self) -> ChatCompletionRequest:
        """Text that every database stores and the tokenizers accept: no NUL, no lone surrogate."""
        texts = [("model", self.model), ("user", self.user or "")]
        texts += [(f"messages.{i}.content", m.text()) for i, m in enumerate(self.messages)]
        texts += [
            (f"messages.{i}.tool_calls", c.function.arguments)
            for i, m in enumerate(self.messages)
            for c in m.tool_calls or []
        ]
        texts += [(f"messages.{i}.reasoning", m.sent_reasoning()) for i, m in enumerate(self.messages)]
        texts += [("stop", s) for s in self.stop or []]
        storable(texts)
        return self

    def system_prompt(self) -> str:
        return "\n\n".join(m.text() for m in self.messages if m.role in ("system", "developer"))

    def history(self) -> list[HistoryMessage]:
        names: dict[str, str] = {}
        history = []
        for m in self.messages:
            if m.role in ("system", "developer"):
                continue
            calls = [
                ToolCall(id=c.id, name=c.function.name, arguments=c.function.arguments) for c in m.tool_calls or []
            ]
            names.update((c.id, c.name) for c in calls)
            history.append(
                HistoryMessage(
                    role=m.role,
                    content=m.text(),
                    reasoning=m.sent_reasoning() if calls else "",
                    tool_calls=calls,
                    tool_call_id=m.tool_call_id or "",
                    name=names.get(m.tool_call_id or "", ""),
                )
            )
        return history

    def function_tools(self) -> list[FunctionTool]:
        return [
            FunctionTool(
                name=t.function.name,
                description=t.function.description,
                parameters=t.function.parameters,
                strict=bool(t.function.strict),
            )
            for t in self.tools or []
        ]

    def choice(self) -> str:
        """tool_choice as the job carries it: "auto", "none", "required" or a function's name."""
        if isinstance(self.tool_choice, NamedToolChoice):
            return self.tool_choice.function.name
        return self.tool_choice or "auto"

    def sampling(self) -> Sampling:
        fields = {name: getattr(self, name) for name in Sampling.model_fields}
        fields["max_tokens"] = self.max_completion_tokens or self.max_tokens
        return Sampling(**fields)


# OpenAI's request fields chatweb does not honour (yet), each with the values that ask for
# nothing: any other value is refused by name, never ignored (a client must not silently
# get something other than what it asked for). Fields outside OpenAI's API are ignored.
UNHONOURED: dict[str, tuple[Any, ...]] = {
    "functions": (None, []),
    "function_call": (None, "none"),
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
    where, message = error_place(where, error["msg"].removeprefix("Value error, "))
    return f"Invalid value for '{where}': {message}.", where
