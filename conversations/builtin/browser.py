"""harmony's browser tool: search, open and find, over one answer's pages.

The model addresses pages by cursor (the order they were shown in) and links by
their number on a page; what it is shown is cut into numbered lines so it can
cite `【cursor†Lstart-Lend】`. Search goes to a SearXNG-compatible JSON endpoint
the operator configures; pages are fetched with fetching.fetch.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

import urllib3
from django.conf import settings

from . import fetching, pages

LINES_SHOWN = 60
TOP_N = 10


class BrowserError(Exception):
    """Said to the model as the tool's answer, and shown in the step."""


@dataclass
class Shown:
    text: str  # for the model
    cursor: int | None
    title: str
    url: str


def search_results(query: str, topn: int, seconds: float) -> list[dict]:
    base = settings.BROWSER_SEARCH_URL
    if not base:
        raise BrowserError("search is not configured on this server")
    url = base.rstrip("/") + "/search?" + urlencode({"q": query, "format": "json"})
    # The search endpoint is the operator's own choice: it is not held to the
    # page rules (it often lives on the private network), but gets no redirects.
    try:
        response = urllib3.request(
            "GET", url, timeout=urllib3.Timeout(total=seconds), redirect=False, retries=False,
            headers={"Accept": "application/json", "User-Agent": fetching.USER_AGENT},
        )  # fmt: skip
    except urllib3.exceptions.HTTPError as exc:
        raise BrowserError(f"the search engine could not be reached ({type(exc).__name__})") from None
    if response.status != 200:
        raise BrowserError(f"the search engine answered HTTP {response.status}")
    try:
        results = json.loads(response.data)["results"]
    except (ValueError, KeyError, TypeError):
        raise BrowserError("the search engine's answer is not SearXNG's JSON") from None
    kept = []
    for item in results if isinstance(results, list) else []:
        if isinstance(item, dict) and isinstance(item.get("url"), str):
            kept.append({
                "url": item["url"],
                "title": str(item.get("title") or item["url"])[:300],
                "content": str(item.get("content") or "")[:1000],
            })  # fmt: skip
        if len(kept) >= topn:
            break
    return kept


class Browser:
    """One answer's browsing: the pages it has been shown, by cursor."""

    def __init__(self) -> None:
        self.pages: list[pages.Page] = []

    def _show(self, page: pages.Page, loc: int = 0, num_lines: int = LINES_SHOWN) -> Shown:
        self.pages.append(page)
        cursor = len(self.pages) - 1
        text = pages.render(cursor, page, loc, num_lines if num_lines > 0 else LINES_SHOWN)
        return Shown(text, cursor, page.title, page.url)

    def _page(self, cursor) -> pages.Page:
        if not self.pages:
            raise BrowserError("no page is open yet: search or open a URL first")
        if cursor is None or cursor == -1:
            return self.pages[-1]
        if not isinstance(cursor, int) or not 0 <= cursor < len(self.pages):
            raise BrowserError(f"there is no page with cursor {cursor}")
        return self.pages[cursor]

    def search(self, query: str, topn: int = TOP_N, *, seconds: float) -> Shown:
        if not isinstance(query, str) or not query.strip():
            raise BrowserError("search needs a query")
        topn = max(1, min(int(topn or TOP_N), 20))
        results = search_results(query, topn, seconds)
        lines: list[str] = []
        links: list[str] = []
        for item in results:
            links.append(item["url"])
            lines.append(f"【{len(links) - 1}†{item['title']}†{pages.domain(item['url'])}】")
            lines.extend(pages._wrap(item["content"]))
            lines.append("")
        page = pages.Page(url="", title=f"Search results for `{query}`", lines=lines or ["No results."], links=links)
        return self._show(page)

    def open(self, id=-1, cursor=-1, loc=-1, num_lines=-1, *, seconds: float) -> Shown:
        loc = loc if isinstance(loc, int) and loc >= 0 else 0
        num_lines = num_lines if isinstance(num_lines, int) else -1
        if isinstance(id, str) and not id.lstrip("-").isdigit():
            url = id
        elif id is not None and int(id) >= 0:
            page = self._page(cursor)
            if int(id) >= len(page.links):
                raise BrowserError(f"page {cursor} has no link {id}")
            url = page.links[int(id)]
        else:
            # Scroll: the same page again from loc.
            return self._show(self._page(cursor), loc, num_lines)
        try:
            fetched = fetching.fetch(url, seconds=seconds)
        except fetching.FetchError as exc:
            raise BrowserError(str(exc)) from None
        text = fetched.body.decode(fetched.charset or "utf-8", errors="replace")
        if fetched.content_type in ("text/html", "application/xhtml+xml"):
            page = pages.from_html(fetched.url, text)
        else:
            page = pages.from_text(fetched.url, text, fetched.content_type)
        if fetched.truncated:
            page.lines.append(f"[the page was cut at {len(fetched.body)} bytes]")
        return self._show(page, loc, num_lines)

    def find(self, pattern: str, cursor=-1) -> Shown:
        if not isinstance(pattern, str) or not pattern:
            raise BrowserError("find needs a pattern")
        page = self._page(cursor)
        source = self.pages.index(page)
        needle = pattern.lower()
        lines = [f"match at L{n}: {line}" for n, line in enumerate(page.lines) if needle in line.lower()][:50]
        found = pages.Page(
            url=page.url,
            title=f"Find results for `{pattern}` in [{source}] {page.title} (open cursor {source} at a line)",
            lines=lines or [f"No `{pattern}` on the page."],
        )
        return self._show(found)


def call(browser: Browser, function: str, arguments: dict, *, seconds: float) -> Shown:
    """Run browser.FUNCTION with the model's arguments."""
    try:
        if function == "search":
            return browser.search(arguments.get("query"), arguments.get("topn", TOP_N), seconds=seconds)
        if function == "open":
            kept = {k: arguments[k] for k in ("id", "cursor", "loc", "num_lines") if k in arguments}
            return browser.open(**kept, seconds=seconds)
        if function == "find":
            return browser.find(arguments.get("pattern"), arguments.get("cursor", -1))
    except (TypeError, ValueError) as exc:
        raise BrowserError(f"browser.{function} got arguments it cannot use ({exc})") from None
    raise BrowserError(f"the browser has no function {function!r}: search, open or find")
