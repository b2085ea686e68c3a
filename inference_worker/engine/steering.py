"""Where a harmony answer stops writing freely: a function call that tool_choice forces, a
strict function's arguments, a structured final answer (response_format).

chatweb builds the prompt tokens itself, so it can decide at each message header the
model writes. The reasoning (the analysis channel) always stays free. At the first
other header the engine loop asks `Steering.at_header` what to do:
- go on as the model writes;
- switch: keep the header the model wrote and constrain what follows with a grammar (its
  own call to a strict or forced function; its final answer under response_format);
- force: drop the header the model wrote (a final answer, a preamble, a call to another
  function) and write a call header instead, to the named function, to the only one, or
  to the one the model picks among several (a short step whose grammar allows only their
  names); the arguments follow under the function's schema.
vLLM's own server supports only tool_choice "auto" for gpt-oss; its grammar cannot start
mid-answer (its reasoning parser says gpt-oss's reasoning has always ended).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from inference_worker.jobs import FunctionTool

FORCED = ("required",)  # with a function's name: a call is forced


def _schema_grammar(schema: dict[str, Any] | None):
    from vllm.sampling_params import StructuredOutputsParams

    if schema is None:
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=schema)


def format_grammar(response_format: dict[str, Any] | None):
    """vLLM's structured outputs for a response format; None for plain text."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    if kind == "json_object":
        return _schema_grammar(None)
    return _schema_grammar(response_format["schema"])


def names_grammar(names: list[str]):
    from vllm.sampling_params import StructuredOutputsParams

    return StructuredOutputsParams(choice=names)


@dataclass(frozen=True, slots=True)
class Turn:
    """What happens at a header: `grammar` from here on; with `force`, the model's header is
    replaced by a call to the function `force` names ("" while the model is yet to pick)."""

    grammar: Any
    force: str | None = None


class Steering:
    def __init__(self, tools: list[FunctionTool], tool_choice: str, response_format: dict[str, Any] | None) -> None:
        self.tools = {t.name: t for t in tools} if tool_choice != "none" else {}
        self.choice = tool_choice if self.tools else "auto"
        self.response_format = response_format

    @property
    def idle(self) -> bool:
        """Nothing to decide: the model writes freely throughout."""
        strict = any(t.strict for t in self.tools.values())
        return self.choice == "auto" and not strict and format_grammar(self.response_format) is None

    def forced(self) -> bool:
        return self.choice in FORCED or self.choice in self.tools

    def candidates(self) -> list[str]:
        """The functions a forced call may go to."""
        return [self.choice] if self.choice in self.tools else list(self.tools)

    def arguments(self, name: str):
        tool = self.tools[name]
        if tool.parameters is None and tool.strict:  # strict with no parameters: an empty object
            return _schema_grammar({"type": "object", "properties": {}, "additionalProperties": False})
        return _schema_grammar(tool.parameters)

    def at_header(self, channel: str, recipient: str) -> Turn | None:
        """The model just wrote a header (channel, recipient); None: it goes on freely."""
        if channel == "analysis":
            return None
        called = recipient.removeprefix("functions.") if recipient.startswith("functions.") else None
        if self.forced():
            wanted = self.candidates()
            if called in wanted:
                return Turn(self.arguments(called))
            if len(wanted) == 1:
                return Turn(self.arguments(wanted[0]), force=wanted[0])
            return Turn(None, force="")  # the model picks the function, then its arguments follow
        if called is not None:
            tool = self.tools.get(called)
            return Turn(self.arguments(called)) if tool is not None and tool.strict else None
        if channel == "final" and (grammar := format_grammar(self.response_format)) is not None:
            return Turn(grammar)
        return None


def call_header(name: str, *, first: bool) -> str:
    """The header of a call to `name`, as harmony renders one. The first message of an answer
    begins after the prompt's "<|start|>assistant"."""
    start = "" if first else "<|start|>assistant"
    return f"{start}<|channel|>commentary to=functions.{name} <|constrain|>json<|message|>"


def pick_header(*, first: bool) -> str:
    """A call header up to the function's name, which the model picks."""
    return call_header("", first=first).partition(" <|constrain|>")[0]
