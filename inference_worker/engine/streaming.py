"""Streaming one request from the engine: its tokens parsed into reasoning, content and
function calls, pushed to the coalescer, and its end.

On harmony an answer may take more than one engine request (engine.steering decides):
the first writes freely (the reasoning stays free) until a header where a grammar must
start (a forced or strict call, a structured final answer); it is aborted there, and the
next continues from the same tokens (or from a call header written in place of the
model's), with the grammar. Prefix caching makes each new start cheap. vLLM's own way
(its reasoning parser decides where the grammar starts) constrains gpt-oss's reasoning
too in this release: its openai_gptoss parser says reasoning has always ended.
"""

from __future__ import annotations

import time
import uuid
from typing import TYPE_CHECKING, Any

from inference_worker.engine.logprobs import TokenNames, entry, names_for
from inference_worker.engine.steering import Steering, Turn, call_header, names_grammar, pick_header
from inference_worker.engine.tool_loop import builtin_recipient, finished_call, result_tokens
from inference_worker.events import Event

if TYPE_CHECKING:
    from inference_worker.engine.coalescer import Coalescer
    from inference_worker.engine.generation import RequestState
    from inference_worker.jobs import ToolRunner

PICK_MAX_TOKENS = 64  # a function's name is at most 64 characters


def _next_step(sampling, grammar, *, used: int, script_from: int | None):
    """The next engine request of a steered harmony answer: the grammar, what is left of
    max_tokens, and (tests) the script from where the model's own writing stopped; a step
    with no script (the pick of a function) is the model's and the grammar's alone."""
    from inference_worker.testing import SCRIPT_ARG

    params = sampling.clone()
    params.structured_outputs = grammar
    params.max_tokens = max(1, (sampling.max_tokens or 1) - used)
    params.min_tokens = max(0, min(sampling.min_tokens - used, params.max_tokens))
    script = (sampling.extra_args or {}).get(SCRIPT_ARG)
    if script:
        rest = {k: v for k, v in sampling.extra_args.items() if k != SCRIPT_ARG}
        if script_from is not None:
            rest[SCRIPT_ARG] = script[script_from:]
        params.extra_args = rest or None
    return params


class Streaming:
    """A mixin of EngineHost."""

    engine: Any
    builder: Any
    spec: Any
    coalescers: dict[str, Coalescer]
    _usage: Any  # Generating's

    async def _stream(
        self,
        prompt,
        sampling,
        state: RequestState,
        steering: Steering | None = None,
        top: int | None = None,
        tools: ToolRunner | None = None,
        builtin: frozenset[str] = frozenset(),
    ) -> None:
        from openai_harmony import StreamState

        rid = state.request_id
        coalescer = self.coalescers[rid]
        encoding = self.builder.encoding if self.spec.prompt_format == "harmony" else None
        parser = _assistant_parser(encoding) if encoding is not None else None
        if parser is None or (steering is not None and steering.idle):
            steering = None
        if parser is None or tools is None:
            builtin = frozenset()
        told_to_stop = False  # a tool limit was reached and the model told to answer
        rules = steering  # `steering` itself goes once it has turned the answer
        start_token = encoding.encode("<|start|>", allowed_special="all")[0] if steering else None
        base = sampling
        prompt_ids = list(prompt.token_ids)
        written: list[int] = []  # the answer's tokens so far, while a later step may need them
        message_start = 0  # where the message being written begins in `written`
        finish_reason = ""
        extras: dict[int, Choice] = {}  # n > 1: the choices after the first
        tokenizer = getattr(self.builder, "tokenizer", None)
        # special tokens a chat template's model may sample: left out of the text, named "" in logprobs
        hidden = frozenset(getattr(tokenizer, "all_special_ids", ()) or ())
        new_names = self._token_names(encoding, tokenizer) if top is not None else None
        names = new_names() if new_names is not None else None
        while True:
            turn: Turn | None = None
            async for output in self.engine.generate({"prompt_token_ids": prompt_ids}, sampling, state.engine_id):
                if state.aborted and not output.finished:  # stopped as this step began: it missed the abort
                    await self.engine.abort(state.engine_id)
                completion = None
                for other in output.outputs:  # n > 1: the other choices are kept whole, for the end
                    if other.index == 0:
                        completion = other
                    else:
                        state.completion_tokens += len(other.token_ids)
                        if other.index not in extras:
                            extras[other.index] = Choice(encoding, top, hidden, new_names() if new_names else None)
                        extras[other.index].feed(other)
                if completion is None:
                    continue
                content = reasoning = arguments = ""
                tokens = completion.token_ids
                logprobs = [] if top is not None and completion.logprobs is not None else None
                if parser is not None:
                    for i, token in enumerate(tokens):
                        was = parser.state
                        parser.process(token)
                        if steering is not None or builtin:
                            written.append(token)
                        if steering is not None:
                            if token == start_token:
                                message_start = len(written) - 1
                            if parser.state == StreamState.CONTENT and was != StreamState.CONTENT:
                                turn = steering.at_header(parser.current_channel or "", parser.current_recipient or "")
                                if turn is not None:
                                    tokens = tokens[: i + 1]
                                    break
                        kind, delta, name = classify(parser, was, builtin)
                        if logprobs is not None and kind == "content":
                            logprobs.append(entry(token, completion.logprobs[i], top, names))
                        if not delta or kind == "builtin":  # a built-in call is shown as its step
                            continue
                        if kind == "call":  # a call: its arguments, after what came before
                            if not state.tool_calls or state.tool_calls[-1]["name"] != name:
                                await coalescer.push(content, reasoning)
                                content = reasoning = ""
                                call = new_call(name)
                                state.tool_calls.append(call)
                                await coalescer.calling(call["id"], call["name"])
                            state.tool_calls[-1]["arguments"] += delta
                            arguments += delta
                        elif kind == "reasoning":
                            reasoning += delta
                            state.reasoning_tokens += 1
                        else:  # the final answer, or a preamble to a call (commentary to no one)
                            content += delta
                else:
                    content = completion.text
                    if logprobs is not None:
                        logprobs += [entry(t, completion.logprobs[i], top, names, hidden) for i, t in enumerate(tokens)]
                if tokens and state.first_token_at is None:
                    state.first_token_at = time.time()
                state.completion_tokens += len(tokens)
                state.content += content
                state.reasoning += reasoning
                if content or reasoning or arguments or logprobs:  # (a special token: logprobs, no text)
                    await coalescer.push(content, reasoning, arguments, logprobs)
                if turn is not None:
                    break
                if completion.finish_reason:  # (n > 1: the first choice may end before the others)
                    finish_reason = completion.finish_reason
            if turn is None:
                call = finished_call(parser, builtin) if finish_reason == "stop" else None
                if call is None or state.aborted:
                    break
                outcome = await self._tool_step(state, coalescer, tools, *call)
                if state.aborted:
                    finish_reason = "abort"
                    break
                if told_to_stop:  # told a limit was reached, it called again: the step says so, the answer ends
                    state.tool_limit_passed = True
                    finish_reason = "length"
                    break
                told_to_stop = outcome.last
                prompt_ids = prompt_ids + written + result_tokens(encoding, call[0], outcome.text)
                written, message_start, parser = [], 0, _assistant_parser(encoding)
                used = state.completion_tokens
                sampling = _next_step(base, None, used=used, script_from=used)
                state.engine_id = f"{rid}-tool{len(state.tool_steps)}"
                finish_reason = ""
                continue
            await self.engine.abort(state.engine_id)
            if state.aborted:  # stopped between two steps
                finish_reason = "abort"
                break
            steering, used = None, state.completion_tokens  # one turn per answer: free or constrained after it
            grammar = turn.grammar
            if turn.force is not None:  # the model's header goes; a call header takes its place
                first = message_start == 0
                written = written[:message_start]
                name = turn.force or await self._pick(prompt_ids + written, first, base, state, rules.candidates())
                if name is None:
                    finish_reason = "abort"
                    break
                written += encoding.encode(call_header(name, first=first), allowed_special="all")
                grammar = grammar or rules.arguments(name)
                parser = _assistant_parser(encoding)
                for token in written:
                    parser.process(token)
            sampling = _next_step(base, grammar, used=state.completion_tokens, script_from=used)
            prompt_ids, written = prompt_ids + written, []
            state.engine_id = f"{rid}-step{state.completion_tokens}"
        await coalescer.flush()
        state.extra_choices = [extras[i].end() for i in sorted(extras)]
        state.reasoning_tokens += sum(c.reasoning_tokens for c in extras.values())
        self._end_state(state, finish_reason, coalescer.seq)

    def _token_names(self, encoding, tokenizer):
        """The engine's maker of TokenNames, built once: it caches each token's bytes."""
        made = getattr(self, "_names_maker", None)
        if made is None:
            made = self._names_maker = names_for(encoding, tokenizer)
        return made

    async def _pick(self, prefix: list[int], first: bool, base, state: RequestState, names: list[str]) -> str | None:
        """The function the model picks among several (tool_choice "required"): a short step
        whose grammar allows only their names. None when the answer was stopped meanwhile."""
        encoding = self.builder.encoding
        prompt = prefix + encoding.encode(pick_header(first=first), allowed_special="all")
        params = _next_step(base, names_grammar(names), used=state.completion_tokens, script_from=None)
        params.max_tokens, params.min_tokens, params.ignore_eos = PICK_MAX_TOKENS, 0, False  # a name, then its end
        state.engine_id = f"{state.request_id}-pick"
        ids: list[int] = []
        async for output in self.engine.generate({"prompt_token_ids": prompt}, params, state.engine_id):
            ids += output.outputs[0].token_ids
        state.completion_tokens += len(ids)
        if state.aborted:
            return None
        stops = set(self.builder.stop_token_ids())
        name = encoding.decode([t for t in ids if t not in stops]).strip()
        return name if name in names else names[0]

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
        if state.tool_steps:
            state.final_event["steps"] = [dict(s) for s in state.tool_steps]
        if state.tool_limit_passed:
            state.final_event["notice"] = "tool_limit"
        if state.extra_choices:
            state.final_event["choices"] = state.extra_choices


def classify(parser, was, builtin: frozenset[str] = frozenset()) -> tuple[str, str, str]:
    """What the token the harmony parser just took is: ("header", "", "") for a token of a
    message's header or end; else its kind ("reasoning", "content", "call" with the
    function's name, or "builtin" with the built-in tool's name) and the text it added
    (empty mid-character)."""
    from openai_harmony import StreamState

    if not (was == parser.state == StreamState.CONTENT):
        return "header", "", ""
    delta = parser.last_content_delta or ""
    recipient = parser.current_recipient or ""
    if recipient.startswith("functions."):
        return "call", delta, recipient.removeprefix("functions.")
    if builtin and builtin_recipient(recipient, builtin):
        return "builtin", delta, recipient
    if parser.current_channel == "analysis":
        return "reasoning", delta, ""
    return "content", delta, ""  # the final answer, or a preamble to a call (commentary to no one)


def new_call(name: str) -> dict[str, str]:
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "name": name, "arguments": ""}


class Choice:
    """One of the other choices of an n > 1 request, kept whole for the end: they are
    sampled in the same engine request as the first, which streams."""

    def __init__(
        self, encoding, top: int | None, hidden: frozenset[int] = frozenset(), names: TokenNames | None = None
    ) -> None:
        self.parser = _assistant_parser(encoding) if encoding is not None else None
        self.top, self.hidden, self.names = top, hidden, names
        self.content = self.reasoning = self.finish_reason = ""
        self.reasoning_tokens = 0
        self.tool_calls: list[dict[str, str]] = []
        self.logprobs: list[dict] | None = [] if top is not None else None

    def feed(self, completion) -> None:
        if completion.finish_reason:
            self.finish_reason = completion.finish_reason
        wanted = self.logprobs is not None and self.names is not None and completion.logprobs is not None
        if self.parser is None:
            self.content += completion.text
            if wanted:
                self.logprobs += [entry(t, completion.logprobs[i], self.top, self.names, self.hidden)
                                  for i, t in enumerate(completion.token_ids)]  # fmt: skip
            return
        for i, token in enumerate(completion.token_ids):
            was = self.parser.state
            self.parser.process(token)
            kind, delta, name = classify(self.parser, was)
            if wanted and kind == "content":
                self.logprobs.append(entry(token, completion.logprobs[i], self.top, self.names))
            if kind == "call":
                if not self.tool_calls or self.tool_calls[-1]["name"] != name:
                    self.tool_calls.append(new_call(name))
                self.tool_calls[-1]["arguments"] += delta
            elif kind == "reasoning":
                self.reasoning += delta
                self.reasoning_tokens += bool(delta)
            elif kind == "content":
                self.content += delta

    def end(self) -> dict:
        reason = self.finish_reason or "stop"
        if self.tool_calls and reason != "length":
            reason = "tool_calls"
        out = {"content": self.content, "reasoning": self.reasoning, "finish_reason": reason}
        if self.tool_calls:
            out["tool_calls"] = self.tool_calls
        if self.logprobs is not None:
            out["logprobs"] = self.logprobs
        return out


def _assistant_parser(encoding):
    """A StreamableParser positioned after "<|start|>assistant", where completions begin."""
    from openai_harmony import Role, StreamableParser

    return StreamableParser(encoding, role=Role.ASSISTANT)
