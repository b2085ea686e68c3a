"""A stored tool step in words, for the Markdown export and the admin's reading (the chat
page says the same in its own JavaScript, through the same catalog)."""

from __future__ import annotations

import math
from typing import Any

from django.utils.translation import gettext, ngettext


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
    elif kind == "knowledge":
        text = knowledge_headline(step)
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
        if kind == "knowledge":
            # half up, as the page's Math.round (Python's round() goes to even: 64.5 -> 64)
            text += " · " + gettext("%(ms)s ms") % {"ms": math.floor(step["seconds"] * 1000 + 0.5)}
        else:
            text += " · " + gettext("%(seconds).1f s") % {"seconds": step["seconds"]}
    return text


def knowledge_headline(step: dict[str, Any]) -> str:
    """ "Searched 3 files: 5 passages"."""
    files, passages = _count(step.get("files")), _count(step.get("passages"))
    # The same msgids as the chat page's steps.js (the JavaScript catalog fills %(x)s only).
    return gettext("Searched %(files)s: %(passages)s") % {
        "files": ngettext("%(count)s file", "%(count)s files", files) % {"count": files},
        "passages": ngettext("%(count)s passage", "%(count)s passages", passages) % {"count": passages},
    }


def _count(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


def source_label(source: dict[str, Any]) -> str:
    """ "report.pdf, page 3 (Results > Costs)"."""
    label = str(source.get("name", ""))
    if source.get("page"):
        label += ", " + gettext("page %(page)s") % {"page": source["page"]}
    if source.get("heading"):
        label += f" ({source['heading']})"
    return label


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
