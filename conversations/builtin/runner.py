"""One answer's built-in tool calls, run for the engine host (inference_worker.jobs.ToolRunner):
which tool, its limits, and the step users see and the message stores."""

from __future__ import annotations

import json
import time
from typing import Any

from django.conf import settings

from accounts.models import User
from accounts.quotas import QuotaExceeded, limits_for, quota_take_tool_call

from . import browser, remote, sandbox

CODE_SHOWN = 20_000  # characters of a python call's code kept in its step


def _arguments(text: str) -> dict:
    try:
        value = json.loads(text or "{}")
    except ValueError:
        raise browser.BrowserError("the call's arguments are not JSON") from None
    if not isinstance(value, dict):
        raise browser.BrowserError("the call's arguments must be a JSON object")
    return value


def _cut(text: str) -> str:
    limit = settings.TOOL_OUTPUT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[cut: {len(text) - limit} more characters were not kept]"


class AnswerTools:
    """The tools of one answer: the browser's pages live as long as the answer, python's
    files as long as the conversation (`sandbox_key`)."""

    def __init__(self, *, sandbox_key: str, enabled: list[str], user_id: int | None = None) -> None:
        self.sandbox_key = sandbox_key
        self.user_id = user_id  # whose daily tool calls these are (accounts.quotas)
        self.day_limit: int | None = None  # their limit, read at the answer's first call
        self.day_left: int | None = None  # what their day has left after the last call (None: no limit)
        self.enabled = set(enabled)
        self.browser = browser.Browser()
        self.calls = 0
        self.started = time.monotonic()

    def close(self) -> None:
        """An answer with no conversation (an API call) keeps no files."""
        if self.sandbox_key.startswith("r"):
            remote.remove_workdir(self.sandbox_key)

    def start(self, recipient: str, text: str) -> dict[str, Any]:
        if recipient == "python":
            return {"kind": "python", "code": text[:CODE_SHOWN]}
        function = recipient.removeprefix("browser.")
        try:
            arguments = _arguments(text)
        except browser.BrowserError:
            arguments = {}
        if function == "search":
            return {"kind": "search", "query": str(arguments.get("query", ""))[:500]}
        if function == "open":
            target = arguments.get("id", -1)
            return {"kind": "open", "target": str(target)[:2000]}
        if function == "find":
            return {"kind": "find", "pattern": str(arguments.get("pattern", ""))[:500]}
        return {"kind": "unknown", "arguments": text[:2000]}

    def _limit(self) -> tuple[str, str] | None:
        if self.calls >= settings.TOOL_STEPS:
            return "steps", f"the limit of {settings.TOOL_STEPS} tool calls in one answer is reached"
        if time.monotonic() - self.started >= settings.TOOL_ANSWER_SECONDS:
            return "time", f"the {settings.TOOL_ANSWER_SECONDS} s the tools may take in one answer are spent"
        return None

    def _quota(self) -> tuple[str, str] | None:
        """Take one call from the user's day (after the answer's own limits passed)."""
        if self.user_id is None:
            return None
        if self.day_limit is None:
            self.day_limit = limits_for(User.objects.get(pk=self.user_id)).tool_calls_per_day
        try:
            self.day_left = quota_take_tool_call(user_id=self.user_id, limit=self.day_limit)
        except QuotaExceeded:
            return "quota", f"the user's {self.day_limit} tool calls for today are used up"
        return None

    def run(self, recipient: str, text: str, step: dict[str, Any], cancelled) -> Any:
        from inference_worker.jobs import ToolOutcome

        limit = self._limit() or self._quota()
        if limit is not None:
            code, why = limit
            return ToolOutcome(
                text=f"Not run: {why}. Answer now with what you have; do not call a tool again.",
                step={"status": "limit", "limit": code},
                last=True,
            )
        self.calls += 1
        left = settings.TOOL_ANSWER_SECONDS - (time.monotonic() - self.started)
        seconds = max(1.0, min(settings.TOOL_CALL_SECONDS, left))
        namespace = recipient.split(".", 1)[0]
        if namespace not in self.enabled:
            return ToolOutcome(text=f"There is no tool {recipient!r} here.", step={"status": "failed"})
        if recipient == "python":
            outcome = self._python(text, seconds, cancelled)
        else:
            outcome = self._browse(recipient.removeprefix("browser."), text, seconds)
        if self._limit() is not None or self.day_left == 0:  # that was the last one allowed: say so now
            outcome.text += "\n[That was the last tool call allowed in this answer: answer now.]"
            outcome.last = True
        return outcome

    def _python(self, code: str, seconds: float, cancelled) -> Any:
        from inference_worker.jobs import ToolOutcome

        try:
            run = remote.run_python(
                code, self.sandbox_key, sandbox.Limits.from_settings(wall_seconds=seconds), cancelled=cancelled
            )
        except sandbox.SandboxUnavailable as exc:
            return ToolOutcome(text=f"python is unavailable: {exc}.", step={"status": "failed", "error": str(exc)})
        step = {"output": run.output, "exit_code": run.exit_code, "stopped_by": run.stopped_by, "cut": run.cut}
        if run.stopped_by or run.exit_code:
            step["status"] = "failed" if not run.stopped_by else "stopped" if run.stopped_by == "cancelled" else "limit"
        return ToolOutcome(text=run.for_model(), step=step)

    def _browse(self, function: str, text: str, seconds: float) -> Any:
        from inference_worker.jobs import ToolOutcome

        try:
            shown = browser.call(self.browser, function, _arguments(text), seconds=seconds)
        except browser.BrowserError as exc:
            return ToolOutcome(text=f"Error: {exc}", step={"status": "failed", "error": str(exc)})
        step = {"title": shown.title[:300], "cursor": shown.cursor}
        if shown.url:
            step["url"] = shown.url
        return ToolOutcome(text=_cut(shown.text), step=step)


def runner_for(
    *, enabled: list[str], conversation_id: int | None, request_id: str, user_id: int | None = None
) -> AnswerTools | None:
    if not enabled:
        return None
    key = f"c{conversation_id}" if conversation_id is not None else f"r{request_id}"
    return AnswerTools(sandbox_key=key, enabled=enabled, user_id=user_id)
