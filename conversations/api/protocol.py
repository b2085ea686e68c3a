"""The OpenAI chat-completions request, validated strictly (vLLM's protocol.py is the model).

Unknown fields are ignored, as OpenAI's own server does with ones it does not know;
known fields with bad values are refused with the field named in `param`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from inference_worker.jobs import HistoryMessage, Integer, Sampling

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
