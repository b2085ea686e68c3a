"""A Responses API stream: the server-sent events of one response in OpenAI's sequence, from
the follower's events (answering.py); the response is kept (`keep`) when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from conversations.api.answering import STOPPED, Begun, was_stopped
from conversations.api.reply_stream import abandon
from conversations.api.responses_protocol import ErrorOut, event, public_item
from conversations.api.tool_calls import bad_call

if TYPE_CHECKING:
    from conversations.api.responses import Admitted


class _Events:
    """The server-sent events of one response, in OpenAI's sequence: each output item added,
    its deltas, done; the response created, in progress, then completed (or incomplete, or
    failed)."""

    def __init__(self, admitted: Admitted) -> None:
        self.admitted = admitted
        self.seq = 0
        self.items: list[dict] = []
        self.open: dict | None = None

    def emit(self, kind: str, **fields: Any) -> bytes:
        out = event(kind, self.seq, **fields)
        self.seq += 1
        return out

    def _public(self, item: dict, status: str = "completed"):
        a = self.admitted
        seal_for = a.user_id if a.body.wants_sealed_reasoning() and status == "completed" else None
        return public_item(item, show_reasoning=a.show_reasoning, seal_for=seal_for, status=status)

    def start(self, item: dict) -> list[bytes]:
        out = self.close()
        self.open = item
        self.items.append(item)
        index = len(self.items) - 1
        added = self._public({**item, "text": "", "arguments": ""}, status="in_progress")
        out.append(self.emit("response.output_item.added", output_index=index, item=added))
        if item["type"] == "message":
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
            out.append(
                self.emit(
                    "response.content_part.added", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        return out

    def piece(self, kind: str, text: str, *, make: dict, logprobs: list | None = None) -> list[bytes]:
        """A delta of reasoning, text or arguments, opening its item first if it is not open."""
        out = [] if self.open is not None and self.open["type"] == make["type"] else self.start(make)
        item, index = self.open, len(self.items) - 1
        key = "arguments" if kind == "function_call" else "text"
        item[key] += text
        if kind == "reasoning":
            if self.admitted.show_reasoning:
                out.append(self.emit("response.reasoning_text.delta", item_id=item["id"], output_index=index,
                                     content_index=0, delta=text))  # fmt: skip
        elif kind == "message":
            if logprobs:
                item["logprobs"] = item.get("logprobs", []) + logprobs
            out.append(self.emit("response.output_text.delta", item_id=item["id"], output_index=index,
                                 content_index=0, delta=text, logprobs=logprobs or []))  # fmt: skip
        else:
            out.append(
                self.emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=text)
            )
        return out

    def close(self) -> list[bytes]:
        item, self.open = self.open, None
        if item is None:
            return []
        index, out = len(self.items) - 1, []
        if item["type"] == "reasoning" and self.admitted.show_reasoning:
            out.append(self.emit("response.reasoning_text.done", item_id=item["id"], output_index=index,
                                 content_index=0, text=item["text"]))  # fmt: skip
        elif item["type"] == "message":
            logprobs = item.get("logprobs") or []
            part = {"type": "output_text", "text": item["text"], "annotations": [], "logprobs": logprobs}
            out.append(self.emit("response.output_text.done", item_id=item["id"], output_index=index,
                                 content_index=0, text=item["text"], logprobs=logprobs))  # fmt: skip
            out.append(
                self.emit(
                    "response.content_part.done", item_id=item["id"], output_index=index, content_index=0, part=part
                )
            )
        elif item["type"] == "function_call":
            out.append(self.emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                                 name=item["name"], arguments=item["arguments"]))  # fmt: skip
        out.append(self.emit("response.output_item.done", output_index=index, item=self._public(item)))
        return out


async def events(begun: Begun, request_id: str, keep: Callable[..., None]) -> AsyncIterator[bytes]:
    admitted: Admitted = begun.admitted
    out = _Events(admitted)
    finished = False
    calls = 0
    try:
        opening = admitted.view([], "in_progress", None)
        yield out.emit("response.created", response=opening)
        yield out.emit("response.in_progress", response=opening)
        pending = [begun.first]
        while True:
            ev = pending.pop() if pending else await anext(begun.replies, None)
            if ev is None:
                break
            kind = ev.get("event")
            if kind == "delta":
                if ev.get("reasoning"):
                    for b in out.piece("reasoning", ev["reasoning"], make=_reasoning(request_id)):
                        yield b
                if ev.get("content") or ev.get("logprobs"):  # (a special token's logprob comes with no text)
                    text, logprobs = ev.get("content") or "", ev.get("logprobs")
                    for b in out.piece("message", text, make=_message(request_id), logprobs=logprobs):
                        yield b
                if ev.get("tool_call"):
                    for b in out.start(_call(request_id, calls, ev["tool_call"])):
                        yield b
                    calls += 1
                if ev.get("arguments") and out.open is not None and out.open["type"] == "function_call":
                    for b in out.piece("function_call", ev["arguments"], make=out.open):
                        yield b
            elif kind == "waiting":
                yield b": waiting\n\n"
            elif kind == "done" and not was_stopped(ev):
                for b in _mend_calls(out, ev.get("tool_calls") or [], request_id):
                    yield b
                for b in out.close():
                    yield b
                usage = ev.get("usage") or {}
                bad = bad_call(ev.get("tool_calls") or [], admitted.body.function_tools())
                if bad is not None:
                    await sync_to_async(keep)(admitted, [], usage, "failed", bad.message, bad.code)
                    error = ErrorOut(code=bad.code or "invalid_tool_call", message=bad.message)
                    yield out.emit("response.failed", response=admitted.view(out.items, "failed", usage, error))
                    break
                status = "incomplete" if ev.get("finish_reason") == "length" else "completed"
                await sync_to_async(keep)(admitted, out.items, usage, status)
                yield out.emit(f"response.{status}", response=admitted.view(out.items, status, usage))
                break
            elif kind in ("error", "done"):
                ev = STOPPED if kind == "done" else ev
                for b in out.close():
                    yield b
                error = ErrorOut(code=ev.get("code") or "engine_error", message=ev.get("message", ""))
                await sync_to_async(keep)(admitted, out.items, {}, "failed", error.message, error.code)
                yield out.emit("response.failed", response=admitted.view(out.items, "failed", None, error))
                break
        finished = True
    finally:
        if finished:
            await begun.stream.close()
        else:  # the client went away, or the stream broke
            await abandon(begun.stream, request_id)


def _reasoning(request_id: str) -> dict:
    return {"type": "reasoning", "id": f"rs_{request_id}", "text": ""}


def _message(request_id: str) -> dict:
    return {"type": "message", "id": f"msg_{request_id}", "role": "assistant", "text": ""}


def _call(request_id: str, n: int, header: dict) -> dict:
    return {"type": "function_call", "id": f"fc_{request_id}_{n}", "call_id": header["id"],
            "name": header["name"], "arguments": ""}  # fmt: skip


def _mend_calls(out: _Events, calls: list[dict], request_id: str) -> list[bytes]:
    """The end's own list of calls completes what did not come as deltas (a mended gap)."""
    chunks: list[bytes] = []
    for n, call in enumerate(calls):
        item = next((i for i in out.items if i["type"] == "function_call" and i["call_id"] == call["id"]), None)
        if item is None:
            chunks += out.start(_call(request_id, n, call))
            item = out.open
        missing = call["arguments"][len(item["arguments"]) :] if call["arguments"].startswith(item["arguments"]) else ""
        if missing and out.open is item:
            chunks += out.piece("function_call", missing, make=item)
    return chunks
