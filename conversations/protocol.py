"""The OpenAI chat-completions request, validated strictly (vLLM's protocol.py is the model).

Unknown fields are ignored, as OpenAI's own server does with ones it does not know;
known fields with bad values are refused with the field named in `param`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, ValidationError, field_validator, model_validator

__all__ = ["ChatCompletionRequest", "ValidationError", "first_error"]


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


class ChatCompletionRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(min_length=1, max_length=2000)
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    max_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    max_completion_tokens: int | None = Field(default=None, ge=1, le=1_000_000)
    stop: str | list[str] | None = None
    seed: int | None = Field(default=None, ge=0, le=2**63 - 1)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    reasoning_effort: Literal["low", "medium", "high"] | None = None
    n: int | None = Field(default=None, ge=1, le=1)
    user: str | None = Field(default=None, max_length=256)
    ignore_eos: StrictBool | None = None  # vLLM's extension: write max_tokens tokens (benchmarks)

    @field_validator("stop")
    @classmethod
    def _stop(cls, value: str | list[str] | None) -> list[str] | None:
        if value is None:
            return None
        stops = [value] if isinstance(value, str) else value
        if len(stops) > 4 or any(not s or len(s) > 200 for s in stops):
            raise ValueError("stop takes up to 4 non-empty strings of at most 200 characters")
        return stops

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

    def history(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.text()} for m in self.messages if m.role in ("user", "assistant")]

    def params(self) -> dict:
        params = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": self.max_completion_tokens or self.max_tokens,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "seed": self.seed,
            "reasoning_effort": self.reasoning_effort,
            "stop": self.stop,
            "ignore_eos": self.ignore_eos or None,
        }
        return {k: v for k, v in params.items() if v is not None}


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
