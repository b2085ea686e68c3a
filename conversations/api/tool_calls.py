"""A function call on its way out: streamed in OpenAI's pieces, and checked against a strict
function's schema before a client takes it for valid."""

from __future__ import annotations

import json

import jsonschema

from conversations.api.errors import ApiError
from conversations.api.protocol import DeltaFunction, DeltaToolCall
from inference_worker.jobs import FunctionTool


def bad_call(calls: list[dict], tools: list[FunctionTool]) -> ApiError | None:
    """A call to a strict function whose arguments do not parse or do not fit its schema: an
    error, never a call the client would take for valid. The engine constrains such calls
    (engine.steering); this is the last check before a client trusts one."""
    strict = {t.name: t.parameters or {} for t in tools if t.strict}
    for call in calls:
        schema = strict.get(call.get("name"))
        if schema is None:
            continue
        try:
            jsonschema.validate(json.loads(call.get("arguments") or ""), schema)
        except (ValueError, jsonschema.ValidationError) as exc:
            message = f"The model's call to {call['name']} does not fit its strict schema ({exc.__class__.__name__})."
            return ApiError(500, message, type="api_error", code="invalid_tool_call")
    return None


class CallStream:
    """A function call as OpenAI streams it: index, id, type and name first, then the
    arguments in pieces. Arguments that came before the call's header (lost in a mended
    gap) wait for it; the end's own list of calls completes whatever did not come."""

    def __init__(self) -> None:
        self.header: dict | None = None
        self.held = ""
        self.sent = ""

    def pieces(self, event: dict) -> list[DeltaToolCall]:
        out = []
        if event.get("tool_call") and self.header is None:
            self.header = event["tool_call"]
            out.append(self._header())
        self.held += event.get("arguments") or ""
        if self.header is not None and self.held:
            out.append(DeltaToolCall(function=DeltaFunction(arguments=self.held)))
            self.sent, self.held = self.sent + self.held, ""
        return out

    def rest(self, calls: list[dict]) -> list[DeltaToolCall]:
        if not calls:
            return []
        out = []
        if self.header is None:
            self.header = calls[0]
            out.append(self._header())
        missing = calls[0]["arguments"][len(self.sent) :] if calls[0]["arguments"].startswith(self.sent) else ""
        if missing:
            out.append(DeltaToolCall(function=DeltaFunction(arguments=missing)))
        return out

    def _header(self) -> DeltaToolCall:
        return DeltaToolCall(id=self.header["id"], type="function", function=DeltaFunction(name=self.header["name"]))
