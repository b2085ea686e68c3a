"""The Responses API's built-in tools: `web_search` (gpt-oss's browser) and `code_interpreter`
(its python, in an automatic container: the sandbox's working directory for one response,
deleted when it ends). The request's tool entries, what chatweb cannot honour in them (a 400
naming the field), and a tool step (conversations/builtin) as OpenAI's output item."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from conversations.api.errors import ApiError

WEB_SEARCH_TYPES = ("web_search", "web_search_2025_08_26")
# the OpenAI tool type -> gpt-oss's built-in tool (inference_worker.jobs.BUILTIN_TOOLS)
BUILTIN_OF = {**dict.fromkeys(WEB_SEARCH_TYPES, "browser"), "code_interpreter": "python"}
CODE_OUTPUTS = "code_interpreter_call.outputs"


class WebSearchParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["web_search", "web_search_2025_08_26"]
    search_context_size: Literal["low", "medium", "high"] | None = None
    user_location: dict | None = None
    filters: dict | None = None
    external_web_access: bool | None = None


class CodeInterpreterParam(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["code_interpreter"]
    container: str | dict


def unhonoured(i: int, raw: dict) -> None:
    """A built-in tool entry that asks for what chatweb cannot do is refused by its field."""

    def refuse(field: str, why: str) -> None:
        raise ApiError(400, f"{why} (tools.{i}.{field}).", param=f"tools.{i}.{field}", code="unsupported_parameter")

    if raw.get("type") in WEB_SEARCH_TYPES:
        if raw.get("user_location") not in (None, {}, {"type": "approximate"}):
            refuse("user_location", "The search engine here takes no location")
        filters = raw.get("filters")
        if filters not in (None, {}) and (not isinstance(filters, dict) or filters.get("allowed_domains")):
            refuse("filters", "Domain filters are not supported; leave them out")
        if raw.get("search_context_size") not in (None, "medium"):
            refuse("search_context_size", "Only the medium search context is supported")
        if raw.get("external_web_access") is False:
            refuse("external_web_access", "There is no offline search cache here")
    elif raw.get("type") == "code_interpreter":
        container = raw.get("container")
        if isinstance(container, str):
            refuse("container", "Only an automatic container ({'type': 'auto'}) is supported")
        if not isinstance(container, dict) or container.get("type") != "auto":
            refuse("container", "The container must be {'type': 'auto'}")
        if container.get("file_ids"):
            refuse("container.file_ids", "Files cannot be put in the container")
        if container.get("memory_limit") is not None:
            refuse("container.memory_limit", "The sandbox's memory limit is set by the server")
        if container.get("network_policy") not in (None, {"type": "disabled"}):
            refuse("container.network_policy", "The sandbox has no network")


_STATUS = {"running": "in_progress", "done": "completed", "stopped": "incomplete"}


def step_item(step: dict[str, Any], request_id: str) -> dict[str, Any] | None:
    """A tool step as a kept output item (None for a step of no built-in tool)."""
    status = _STATUS.get(step.get("status", ""), "failed")
    if step.get("tool") == "python":
        outputs = [{"type": "logs", "logs": step["output"]}] if step.get("output") else []
        if step.get("error"):
            outputs.append({"type": "logs", "logs": step["error"]})
        return {
            "type": "code_interpreter_call",
            "id": f"ci_{step['id'].removeprefix('step_')}",
            "status": status,
            "code": step.get("code", ""),
            "container_id": f"cntr_{request_id}",
            "outputs": outputs,
        }
    if str(step.get("tool", "")).startswith("browser."):
        kind = step.get("kind")
        if kind == "search":
            action = {"type": "search", "query": step.get("query", "")}
        elif kind == "find":
            action = {"type": "find_in_page", "url": step.get("url", ""), "pattern": step.get("pattern", "")}
        else:
            action = {"type": "open_page", "url": step.get("url")}
        return {"type": "web_search_call", "id": f"ws_{step['id'].removeprefix('step_')}", "status": status,
                "action": action}  # fmt: skip
    return None


def public_step_item(item: dict[str, Any], include: frozenset[str]) -> dict[str, Any]:
    """As OpenAI shows it: a code call's outputs only when `include` asks for them."""
    if item["type"] == "code_interpreter_call" and CODE_OUTPUTS not in include:
        return {**item, "outputs": None}
    return item


CITATION = re.compile(r"【(\d+)†([^【】]*)】")


def citations(text: str, steps: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The answer's citations 【cursor†L..】 of pages it opened, as url_citation annotations
    over the marker (the text keeps the marker, as the model wrote it)."""
    pages = {s["cursor"]: s for s in steps if s.get("kind") == "open" and isinstance(s.get("cursor"), int)}
    out = []
    for match in CITATION.finditer(text):
        page = pages.get(int(match.group(1)))
        if page is None or not str(page.get("url", "")).startswith(("http://", "https://")):
            continue
        out.append({"type": "url_citation", "start_index": match.start(), "end_index": match.end(),
                    "url": page["url"], "title": page.get("title") or page["url"]})  # fmt: skip
    return out
