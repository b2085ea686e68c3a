"""Pages as the model reads them: text cut into numbered lines, with links it can
open by number, the way harmony's browser tool shows them (`【id†text†domain】`)."""

from __future__ import annotations

import json
import re
import textwrap
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import lxml.html
import trafilatura

WIDTH = 100
_MARKER = re.compile(r"【[^】]*】")
_NBSP = "\u00a0"
_LINK = re.compile(r"!?\[([^\]]*)\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


@dataclass
class Page:
    url: str
    title: str
    lines: list[str]
    links: list[str] = field(default_factory=list)  # link id -> absolute URL


def domain(url: str) -> str:
    return urlsplit(url).hostname or ""


def _wrap(text: str) -> list[str]:
    lines: list[str] = []
    for raw in text.splitlines():
        raw = raw.rstrip()
        if not raw:
            if lines and lines[-1]:
                lines.append("")
            continue
        # A link's marker stays on one line: its spaces do not break.
        raw = _MARKER.sub(lambda m: m.group(0).replace(" ", _NBSP), raw)
        wrapped = textwrap.wrap(raw, WIDTH, break_on_hyphens=False) or [""]
        lines.extend(line.replace(_NBSP, " ") for line in wrapped)
    while lines and not lines[-1]:
        lines.pop()
    return lines


def _number_links(markdown: str, base: str, links: list[str]) -> str:
    def replace(match: re.Match) -> str:
        text, href = match.group(1).strip(), match.group(2)
        if match.group(0).startswith("!"):
            return f"[image: {text}]" if text else ""
        target = urljoin(base, href)
        if urlsplit(target).scheme not in ("http", "https"):
            return text
        links.append(target)
        return f"【{len(links) - 1}†{text or domain(target)}†{domain(target)}】"

    return _LINK.sub(replace, markdown)


def from_html(url: str, html: str) -> Page:
    links: list[str] = []
    markdown = trafilatura.extract(
        html, url=url, output_format="markdown", include_links=True, include_tables=True,
        include_comments=False, favor_recall=True,
    )  # fmt: skip
    title = ""
    try:
        tree = lxml.html.fromstring(html)
        title = (tree.findtext(".//title") or "").strip()
        if markdown is None:
            for bad in tree.xpath("//script|//style|//noscript|//template"):
                bad.drop_tree()
            markdown = tree.text_content()
    except (lxml.etree.ParserError, ValueError):
        markdown = markdown or ""
    text = _number_links(markdown, url, links)
    return Page(url=url, title=" ".join(title.split()) or domain(url), lines=_wrap(text), links=links)


def from_text(url: str, text: str, media: str) -> Page:
    if media == "application/json":
        try:
            text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        except ValueError:
            pass
    return Page(url=url, title=url.rsplit("/", 1)[-1] or domain(url), lines=_wrap(text))


def render(cursor: int, page: Page, loc: int, count: int) -> str:
    """What the model reads: a header, then lines loc .. loc+count-1 numbered."""
    total = len(page.lines)
    loc = max(0, min(loc, max(total - 1, 0)))
    end = min(total, loc + count)
    head = f"[{cursor}] {page.title}" + (f" ({page.url})" if page.url else "")
    if not total:
        return head + "\n**the page has no text**"
    body = "\n".join(f"L{n}: {page.lines[n]}" for n in range(loc, end))
    return f"{head}\n**viewing lines [{loc} - {end - 1}] of {total - 1}**\n\n{body}"
