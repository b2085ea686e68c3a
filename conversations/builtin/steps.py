"""A stored tool step in words, for the Markdown export and the admin's reading (the chat
page says the same in its own JavaScript, through the same catalog)."""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext


def headline(step: dict[str, Any]) -> str:
    kind = step.get("kind")
    if kind == "search":
        text = gettext("Searched for “%(query)s”") % {"query": step.get("query", "")}
    elif kind == "open":
        text = gettext("Read %(page)s") % {"page": step.get("title") or step.get("url") or step.get("target", "")}
    elif kind == "find":
        text = gettext("Looked for “%(pattern)s”") % {"pattern": step.get("pattern", "")}
    elif kind == "python":
        text = gettext("Ran python")
    else:
        text = gettext("Called %(tool)s") % {"tool": step.get("tool", "")}
    status = step.get("status")
    if status == "limit":
        text += " · " + gettext("stopped by a limit")
    elif status == "failed":
        text += " · " + gettext("failed")
    elif status == "stopped":
        text += " · " + gettext("stopped")
    elif status == "running":  # stored by a worker that was lost while it ran
        text += " · " + gettext("interrupted")
    if isinstance(step.get("seconds"), int | float):
        text += " · " + gettext("%(seconds).1f s") % {"seconds": step["seconds"]}
    return text


def details(step: dict[str, Any]) -> list[tuple[str, str]]:
    """(label, text) pairs under the headline: the code and its output, the page's address."""
    out = []
    if step.get("code"):
        out.append((gettext("Code"), step["code"]))
    if step.get("output"):
        out.append((gettext("Output"), step["output"]))
    if step.get("url"):
        out.append((gettext("Address"), step["url"]))
    if step.get("error"):
        out.append((gettext("Error"), step["error"]))
    return out
