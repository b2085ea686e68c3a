"""gpt-oss's built-in tools inside one answer: a call the model writes to `python` or
`browser.*` (on the analysis channel, ended by <|call|>) is run by the submitter's
ToolRunner in a thread, its result goes back as harmony's tool message, and the answer
goes on in a new engine request over the same tokens (prefix caching makes that cheap).
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import TYPE_CHECKING, Any

from inference_worker.jobs import BUILTIN_TOOLS, ToolOutcome

if TYPE_CHECKING:
    from inference_worker.engine.coalescer import Coalescer
    from inference_worker.engine.generation import RequestState
    from inference_worker.jobs import ToolRunner


def builtin_recipient(recipient: str, enabled: frozenset[str]) -> bool:
    """Whether a message to `recipient` is a call of an enabled built-in tool."""
    return recipient.split(".", 1)[0] in enabled and recipient.split(".", 1)[0] in BUILTIN_TOOLS


def finished_call(parser, enabled: frozenset[str]) -> tuple[str, str] | None:
    """The built-in call the model just ended with <|call|>: (recipient, text); else None."""
    from openai_harmony import StreamState

    if not enabled or parser.state != StreamState.EXPECT_START or not parser.messages:
        return None
    last = parser.messages[-1]
    recipient = last.recipient or ""
    if not builtin_recipient(recipient, enabled):
        return None
    return recipient, "".join(getattr(part, "text", "") for part in last.content)


def result_tokens(encoding, recipient: str, text: str) -> list[int]:
    """The tool's message to the assistant, then the assistant's next turn opened."""
    from openai_harmony import Author, Message, Role

    message = (
        Message.from_author_and_content(Author.new(Role.TOOL, recipient), text)
        .with_channel("analysis")
        .with_recipient("assistant")
    )
    return list(encoding.render(message)) + encoding.encode("<|start|>assistant", allowed_special="all")


class ToolLoop:
    """A mixin of EngineHost."""

    async def _tool_step(
        self, state: RequestState, coalescer: Coalescer, tools: ToolRunner, recipient: str, text: str
    ) -> ToolOutcome:
        """Run one call in a thread (the engine loop goes on serving other answers), showing
        its step as it starts and as it ends."""
        started = time.monotonic()
        step: dict[str, Any] = {
            "id": f"step_{uuid.uuid4().hex[:16]}",
            "tool": recipient,
            "status": "running",
            **await asyncio.to_thread(tools.start, recipient, text),
        }
        state.tool_steps.append(step)
        await coalescer.step(step)
        try:
            outcome = await asyncio.to_thread(tools.run, recipient, text, dict(step), lambda: state.aborted)
        except Exception as exc:  # noqa: BLE001 - a tool's failure is the model's to read, not the answer's end
            outcome = ToolOutcome(
                text=f"The tool failed ({exc.__class__.__name__}).", step={"status": "failed", "error": str(exc)}
            )
        done = {**step, "status": "done", **outcome.step, "seconds": round(time.monotonic() - started, 3)}
        if state.aborted:
            done["status"] = "stopped"
        state.tool_steps[state.tool_steps.index(step)] = done
        await coalescer.step(done)
        return outcome
