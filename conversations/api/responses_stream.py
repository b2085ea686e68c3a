"""A Responses API stream: the server-sent events of one response in OpenAI's sequence, from
the follower's events (answering.py); the response is kept (`keep`) when it ends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from asgiref.sync import sync_to_async

from conversations.api.answering import STOPPED, Begun, was_stopped
from conversations.api.builtin_items import citations, step_item
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
        self.request_id = admitted.request_id
        self.seq = 0
        self.items: list[dict] = []
        self.open: dict | None = None
        self.calls = 0  # function calls begun
        self.steps: dict[str, dict] = {}  # built-in tool steps by id, as last heard

    def emit(self, kind: str, **fields: Any) -> bytes:
        out = event(kind, self.seq, **fields)
        self.seq += 1
        return out

    def _public(self, item: dict, status: str = "completed"):
        a = self.admitted
        seal_for = a.user_id if a.body.wants_sealed_reasoning() and status == "completed" else None
        return public_item(
            item, show_reasoning=a.show_reasoning, seal_for=seal_for, status=status, include=a.body.included()
        )

    def take(self, ev: dict) -> list[bytes]:
        """A delta's events: reasoning, text, a function call's header and arguments, a
        built-in tool's step."""
        out: list[bytes] = []
        if ev.get("reasoning"):
            out += self.piece("reasoning", ev["reasoning"], make=self._made("reasoning"))
        if ev.get("step"):
            out += self.step(ev["step"])
        if ev.get("content") or ev.get("logprobs"):  # (a special token's logprob comes with no text)
            out += self.piece(
                "message", ev.get("content") or "", make=self._made("message"), logprobs=ev.get("logprobs")
            )
        if ev.get("tool_call"):
            out += self.start(_call(self.request_id, self.calls, ev["tool_call"]))
            self.calls += 1
        if ev.get("arguments") and self.open is not None and self.open["type"] == "function_call":
            out += self.piece("function_call", ev["arguments"], make=self.open)
        return out

    def _made(self, kind: str) -> dict:
        """A new reasoning or message item; reasoning after a tool step is an item of its own."""
        if kind == "message":
            return {"type": "message", "id": f"msg_{self.request_id}", "role": "assistant", "text": ""}
        n = sum(i["type"] == "reasoning" for i in self.items)
        return {"type": "reasoning", "id": f"rs_{self.request_id}" + (f"_{n}" if n else ""), "text": ""}

    def step(self, step: dict) -> list[bytes]:
        """A built-in tool step began (its item is added, in progress) or ended (done)."""
        item = step_item(step, self.request_id)
        if item is None:
            return []
        self.steps[step["id"]] = step
        kind = item["type"]
        if step.get("status") == "running":
            out = self.start(item)
            index = len(self.items) - 1
            ids = {"item_id": item["id"], "output_index": index}
            out.append(self.emit(f"response.{kind}.in_progress", **ids))
            if kind == "web_search_call":
                out.append(self.emit("response.web_search_call.searching", **ids))
            else:
                out.append(self.emit("response.code_interpreter_call_code.delta", delta=item["code"], **ids))
                out.append(self.emit("response.code_interpreter_call_code.done", code=item["code"], **ids))
                out.append(self.emit("response.code_interpreter_call.interpreting", **ids))
            return out
        index = next((n for n, i in enumerate(self.items) if i["id"] == item["id"]), None)
        if index is None:  # its start was not heard (a mended gap): added whole
            out = self.start(item)
            index = len(self.items) - 1
        else:
            out = []
            self.items[index].update(item)
        out.append(self.emit(f"response.{kind}.completed", item_id=item["id"], output_index=index))
        if self.open is self.items[index]:
            out += self.close()
        return out

    def end(self, ev: dict) -> list[bytes]:
        """The answer's end: the calls it lists complete what did not come as deltas; the
        last item is done."""
        return _mend_calls(self, ev.get("tool_calls") or [], self.request_id) + self.close()

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
            if self.steps:
                item["annotations"] = citations(item["text"], list(self.steps.values()))
            annotations = item.get("annotations") or []
            part = {"type": "output_text", "text": item["text"], "annotations": annotations, "logprobs": logprobs}
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
                for b in out.take(ev):
                    yield b
            elif kind == "waiting":
                yield b": waiting\n\n"
            elif kind == "done" and not was_stopped(ev):
                for b in out.end(ev):
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


def output_items(admitted: Admitted, deltas: tuple[dict, ...], end: dict) -> list[dict]:
    """A whole answer's output items (a response that does not stream): its deltas taken as a
    stream takes them."""
    out = _Events(admitted)
    for ev in deltas:
        out.take(ev)
    out.end(end)
    return out.items


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
