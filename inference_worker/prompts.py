"""Prompt formats: harmony for gpt-oss (openai_harmony), the tokenizer's chat template otherwise.

Both turn (system prompt, history) into prompt token ids that fit the model's
context minus the tokens reserved for the answer, dropping the oldest turns first.
The system prompt and the newest user message always stay.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

HARMONY_EFFORTS = ("low", "medium", "high")


class PromptTooLong(Exception):
    def __init__(self, tokens: int, limit: int, context: int, max_tokens: int) -> None:
        self.tokens, self.limit, self.context, self.max_tokens = tokens, limit, context, max_tokens
        super().__init__(
            f"This message is {tokens} tokens, this model accepts {limit} "
            f"(a context of {context} minus {max_tokens} reserved for the answer). "
            "Shorten it, or lower max tokens."
        )


@dataclass
class Prompt:
    token_ids: list[int]
    dropped: int = 0  # history messages left out to fit
    stop_token_ids: list[int] = field(default_factory=list)


def _system_texts(history: list[dict[str, Any]], system_prompt: str) -> tuple[str, list[dict[str, Any]]]:
    """Fold system / developer messages into one system prompt; return the rest."""
    parts = [system_prompt.strip()] if system_prompt.strip() else []
    rest = []
    for message in history:
        if message["role"] in ("system", "developer"):
            if message["content"].strip():
                parts.append(message["content"].strip())
        else:
            rest.append(message)
    return "\n\n".join(parts), rest


def _window_starts(turns: list[dict[str, Any]]) -> list[int]:
    """Where a trimmed history may start: at a user message (never mid-exchange)."""
    starts = [i for i, m in enumerate(turns) if m["role"] == "user"]
    return starts or [max(len(turns) - 1, 0)]


class PromptBuilder:
    def __init__(self, *, context_length: int) -> None:
        self.context_length = context_length

    def render(self, system: str, turns: list[dict[str, Any]], options: dict[str, Any]) -> list[int]:
        raise NotImplementedError

    def stop_token_ids(self) -> list[int]:
        return []

    def build(
        self,
        *,
        history: list[dict[str, Any]],
        system_prompt: str = "",
        max_tokens: int,
        options: dict[str, Any] | None = None,
    ) -> Prompt:
        options = options or {}
        system, turns = _system_texts(history, system_prompt)
        limit = self.context_length - max_tokens
        starts = _window_starts(turns)
        # The fewest dropped turns that fit: tokens only shrink as the start moves
        # right, so binary search over the allowed starts.
        lo, hi = 0, len(starts) - 1
        best: tuple[int, list[int]] | None = None
        while lo <= hi:
            mid = (lo + hi) // 2
            ids = self.render(system, turns[starts[mid] :], options)
            if len(ids) <= limit:
                best = (starts[mid], ids)
                hi = mid - 1
            else:
                lo = mid + 1
        if best is None:
            smallest = self.render(system, turns[starts[-1] :], options)
            raise PromptTooLong(len(smallest), max(limit, 0), self.context_length, max_tokens)
        start, ids = best
        return Prompt(token_ids=ids, dropped=start, stop_token_ids=self.stop_token_ids())


class HarmonyPromptBuilder(PromptBuilder):
    """gpt-oss: system message (reasoning effort, date), developer message, history."""

    def __init__(self, *, context_length: int) -> None:
        super().__init__(context_length=context_length)
        from openai_harmony import HarmonyEncodingName, load_harmony_encoding

        self.encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)

    def stop_token_ids(self) -> list[int]:
        return list(self.encoding.stop_tokens_for_assistant_actions())

    def render(self, system: str, turns: list[dict[str, Any]], options: dict[str, Any]) -> list[int]:
        from openai_harmony import (
            Conversation,
            DeveloperContent,
            Message,
            ReasoningEffort,
            Role,
            SystemContent,
            ToolDescription,
        )

        effort = {"low": ReasoningEffort.LOW, "medium": ReasoningEffort.MEDIUM, "high": ReasoningEffort.HIGH}[
            options.get("reasoning_effort") or "medium"
        ]
        today = options.get("date") or datetime.date.today().isoformat()
        system_content = SystemContent.new().with_reasoning_effort(effort).with_conversation_start_date(today)
        for name in options.get("builtin_tools") or []:
            system_content = system_content.with_tools(_builtin_namespace(name))
        messages = [Message.from_role_and_content(Role.SYSTEM, system_content)]
        # tool_choice "none": the model is not told of the functions, so it cannot call one.
        tools = options.get("tools") or [] if options.get("tool_choice") != "none" else []
        if system or tools:
            developer = DeveloperContent.new()
            if system:
                developer = developer.with_instructions(system)
            if tools:
                developer = developer.with_function_tools(
                    [
                        ToolDescription.new(t["name"], t.get("description") or "", parameters=t.get("parameters"))
                        for t in tools
                    ]
                )
            messages.append(Message.from_role_and_content(Role.DEVELOPER, developer))
        for turn in turns:
            messages += _harmony_messages(turn)
        # harmony drops the reasoning of turns before the last final answer by itself
        return list(
            self.encoding.render_conversation_for_completion(Conversation.from_messages(messages), Role.ASSISTANT)
        )


PYTHON_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the user. "
    "This tool should be used for internal reasoning, but not for code that is intended to be visible to the "
    "user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it will be executed in a fresh Python process "
    "(the standard library only): print what you want to see. python will respond with the output of the "
    "execution or time out after {seconds} seconds. Files saved in '/mnt/data' persist for this conversation. "
    "Internet access for this session is disabled."
)


def _builtin_namespace(name: str):
    """harmony's own configuration of a built-in tool; python's says what the sandbox is."""
    from openai_harmony import ToolNamespaceConfig

    if name == "browser":
        return ToolNamespaceConfig.browser()
    if name == "python":
        from django.conf import settings

        return ToolNamespaceConfig(
            name="python", description=PYTHON_DESCRIPTION.format(seconds=settings.TOOL_CALL_SECONDS), tools=[]
        )
    raise ValueError(f"no built-in tool {name!r}")


def _harmony_messages(turn: dict[str, Any]) -> list:
    """One history message as harmony's messages: an answer goes back as its final text; a
    turn that called functions as its reasoning, its preamble and each call; a tool's result
    as a message from the function to the assistant."""
    from openai_harmony import Author, Message, Role

    role = turn["role"]
    if role == "user":
        return [Message.from_role_and_content(Role.USER, turn["content"])]
    if role == "tool":
        author = Author.new(Role.TOOL, f"functions.{turn.get('name') or 'unknown'}")
        return [
            Message.from_author_and_content(author, turn["content"])
            .with_channel("commentary")
            .with_recipient("assistant")
        ]
    calls = turn.get("tool_calls") or []
    if not calls:
        return [Message.from_role_and_content(Role.ASSISTANT, turn["content"]).with_channel("final")]
    messages = []
    if turn.get("reasoning"):
        messages.append(Message.from_role_and_content(Role.ASSISTANT, turn["reasoning"]).with_channel("analysis"))
    if turn["content"]:  # a preamble: commentary with no recipient
        messages.append(Message.from_role_and_content(Role.ASSISTANT, turn["content"]).with_channel("commentary"))
    for call in calls:
        messages.append(
            Message.from_role_and_content(Role.ASSISTANT, call["arguments"] or "{}")
            .with_channel("commentary")
            .with_recipient(f"functions.{call['name']}")
            .with_content_type("<|constrain|>json")
        )
    return messages


class ChatTemplatePromptBuilder(PromptBuilder):
    """Any other model: its tokenizer's chat template; everything it writes is content."""

    def __init__(self, *, context_length: int, tokenizer) -> None:
        super().__init__(context_length=context_length)
        self.tokenizer = tokenizer

    def render(self, system: str, turns: list[dict[str, Any]], options: dict[str, Any]) -> list[int]:
        messages = ([{"role": "system", "content": system}] if system else []) + [
            {"role": t["role"], "content": t["content"]} for t in turns
        ]
        ids = self.tokenizer.apply_chat_template(messages, tokenize=True, add_generation_prompt=True)
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        return list(ids)


def prompt_builder_for(*, prompt_format: str, context_length: int, path: str) -> PromptBuilder:
    if prompt_format == "harmony":
        return HarmonyPromptBuilder(context_length=context_length)
    from transformers import AutoTokenizer

    return ChatTemplatePromptBuilder(context_length=context_length, tokenizer=AutoTokenizer.from_pretrained(path))
