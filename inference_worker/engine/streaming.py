"""Streaming one request from the engine: its tokens parsed into reasoning, content and
function calls, pushed to the coalescer, and its end.

A structured answer (response_format) on harmony runs in two engine requests: the first
writes freely (the reasoning stays free) until the model opens its final channel; it is
aborted there, and the second continues from the same tokens, with the grammar, so only
the final answer is constrained. Prefix caching makes the second start cheap. vLLM's own
way (its reasoning parser decides where the grammar starts) constrains gpt-oss's
reasoning too in this release: its openai_gptoss parser says reasoning has always ended.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from inference_worker.events import Event

if TYPE_CHECKING:
    from inference_worker.engine.coalescer import Coalescer
    from inference_worker.engine.generation import RequestState


def grammar_for(response_format: dict[str, Any] | None):
    """vLLM's structured outputs for a response format; None for plain text."""
    kind = (response_format or {}).get("type", "text")
    if kind == "text":
        return None
    from vllm.sampling_params import StructuredOutputsParams

    if kind == "json_object":
        return StructuredOutputsParams(json_object=True)
    return StructuredOutputsParams(json=response_format["schema"])


def _final_step(sampling, grammar, used: int):
    """The second engine request of a structured harmony answer: the grammar, what is left of
    max_tokens, and (tests) what is left of a script."""
    from inference_worker.testing import SCRIPT_ARG

    params = sampling.clone()
    params.structured_outputs = grammar
    params.max_tokens = max(1, (sampling.max_tokens or 1) - used)
    script = (sampling.extra_args or {}).get(SCRIPT_ARG)
    if script:
        params.extra_args = {**sampling.extra_args, SCRIPT_ARG: script[used:]}
    return params


class Streaming:
    """A mixin of EngineHost."""

    engine: Any
    builder: Any
    spec: Any
    coalescers: dict[str, Coalescer]
    _usage: Any  # Generating's

    async def _stream(self, prompt, sampling, state: RequestState, response_format: dict | None = None) -> None:
        from openai_harmony import StreamState

        rid = state.request_id
        coalescer = self.coalescers[rid]
        parser = _assistant_parser(self.builder.encoding) if self.spec.prompt_format == "harmony" else None
        grammar = grammar_for(response_format) if parser is not None else None
        prompt_ids, written = list(prompt.token_ids), []  # written: this engine request's tokens
        finish_reason = ""
        while True:
            switch = False
            async for output in self.engine.generate({"prompt_token_ids": prompt_ids}, sampling, state.engine_id):
                completion = output.outputs[0]
                content = reasoning = arguments = ""
                tokens = completion.token_ids
                if parser is not None:
                    for i, token in enumerate(tokens):
                        parser.process(token)
                        if grammar is not None:  # only a second step needs the first one's tokens
                            written.append(token)
                        if (
                            grammar is not None
                            and parser.state == StreamState.CONTENT
                            and parser.current_channel == "final"
                        ):
                            tokens, switch = tokens[: i + 1], True  # the final channel is open: constrain from here
                            break
                        delta = parser.last_content_delta or ""
                        if not delta:
                            continue
                        recipient = parser.current_recipient or ""
                        if recipient.startswith("functions."):  # a call: its arguments, after what came before
                            name = recipient.removeprefix("functions.")
                            if not state.tool_calls or state.tool_calls[-1]["name"] != name:
                                await coalescer.push(content, reasoning)
                                content = reasoning = ""
                                call = {"id": f"call_{uuid.uuid4().hex[:24]}", "name": name}
                                state.tool_calls.append({**call, "arguments": ""})
                                await coalescer.calling(call["id"], call["name"])
                            state.tool_calls[-1]["arguments"] += delta
                            arguments += delta
                        elif parser.current_channel == "analysis":
                            reasoning += delta
                            state.reasoning_tokens += 1
                        else:  # the final answer, or a preamble to a call (commentary to no one)
                            content += delta
                else:
                    content = completion.text
                if tokens and state.first_token_at is None:
                    state.first_token_at = time.time()
                state.completion_tokens += len(tokens)
                state.content += content
                state.reasoning += reasoning
                if content or reasoning or arguments:
                    await coalescer.push(content, reasoning, arguments)
                if switch:
                    break
                if output.finished:
                    finish_reason = completion.finish_reason or ""
            if not switch:
                break
            await self.engine.abort(state.engine_id)
            if state.aborted:  # stopped between the two
                finish_reason = "abort"
                break
            sampling = _final_step(sampling, grammar, used=state.completion_tokens)
            prompt_ids, written, grammar = prompt_ids + written, [], None
            state.engine_id = f"{rid}-final"
        await coalescer.flush()
        self._end_state(state, finish_reason, coalescer.seq)

    def _end_state(self, state: RequestState, finish_reason: str, deltas: int) -> None:
        state.finished_at = time.time()
        if state.aborted or finish_reason == "abort":
            state.status, state.finish_reason = "stopped", "abort"
        else:
            state.status = "done"
            state.finish_reason = (
                "tool_calls" if state.tool_calls and finish_reason != "length" else finish_reason or "stop"
            )
        state.final_event = {
            "event": Event.DONE,
            "status": state.status,
            "finish_reason": state.finish_reason,
            "deltas": deltas,  # how many were sent: a reader that got fewer lost some
            **self._usage(state),
        }
        if state.tool_calls:
            state.final_event["tool_calls"] = [dict(c) for c in state.tool_calls]


def _assistant_parser(encoding):
    """A StreamableParser positioned after "<|start|>assistant", where completions begin."""
    from openai_harmony import Role, StreamableParser

    return StreamableParser(encoding, role=Role.ASSISTANT)
