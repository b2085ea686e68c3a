"""Real HTTP servers on loopback addresses, for the browser tool's tests.

127.0.0.2 stands for a public site (the tests' BROWSER_ALLOWED_NETWORKS lets the
browser reach it and nothing else of loopback); 127.0.0.3 stands in for the search
engine, the one part that would leave the machine, answering in SearXNG's JSON.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

PUBLIC_NETWORK = "127.0.0.2/32"

TEA_TITLE = "Tea & its history"
TEA_ARTICLE = (
    "<html><head><title>Tea &amp; its history</title></head><body><nav><a href='/'>Home</a></nav><article>"
    "<h1>Tea</h1>"
    + "".join(
        f"<p>Paragraph {i}: tea was first brewed in China and spread along the trade routes; "
        f"see <a href='/region/{i}'>region {i}</a> for more of its long story.</p>"
        for i in range(6)
    )
    + "<p>茶起源于中国，后来沿着贸易路线传播到世界各地。</p><script>alert('x')</script></article></body></html>"
)


class Site:
    """A real HTTP server on one loopback address; routes map a path (with its query) to
    (status, headers, body), a body may be a function called per request."""

    def __init__(self, host: str, fallback: Callable[[str], tuple] | None = None):
        self.requests: list[dict] = []
        self.routes: dict[str, tuple] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                site.requests.append({"path": self.path, "headers": dict(self.headers)})
                route = site.routes.get(self.path) or (fallback and fallback(self.path)) or (404, {}, b"not here")
                status, headers, body = route
                if callable(body):
                    body = body()
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:
                    pass

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.base = f"http://{host}:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def html(self, path: str, body: str, **headers: str) -> None:
        self.routes[path] = (200, {"Content-Type": "text/html; charset=utf-8", **headers}, body.encode())

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def search_engine(results: Callable[[str], list[dict]]) -> Site:
    """A stand-in for a SearXNG instance: GET /search?q=...&format=json."""

    def answer(path: str):
        parts = urlsplit(path)
        query = parse_qs(parts.query)
        if parts.path != "/search" or query.get("format") != ["json"]:
            return None
        body = json.dumps({"query": query.get("q", [""])[0], "results": results(query.get("q", [""])[0])})
        return 200, {"Content-Type": "application/json"}, body.encode()

    return Site("127.0.0.3", fallback=answer)


@pytest.fixture(scope="session")
def web_stand_ins():
    """A public site with the tea article and a search engine that finds it, for the whole
    session (the shared gpt-oss worker is pointed at them when it starts)."""
    site, engine = tea_stand_ins()
    yield site, engine
    site.close()
    engine.close()


def tea_stand_ins() -> tuple[Site, Site]:
    """The site and the search engine of `web_stand_ins` (bench/tool_loop.py starts them too)."""
    site = Site("127.0.0.2")
    site.html("/tea", TEA_ARTICLE)
    engine = search_engine(
        lambda q: [
            {"url": site.base + "/tea", "title": TEA_TITLE, "content": "Where tea was first brewed."},
            {"url": "https://example.org/coffee", "title": "Coffee", "content": "Not tea."},
        ]
    )
    return site, engine
