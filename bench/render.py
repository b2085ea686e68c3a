"""Rendering cost per streamed delta in the browser: chatweb's StreamingMarkdown vs re-rendering
the whole message on every delta (what Open WebUI does).

    .venv/bin/python bench/render.py [--chars 40000] [--delta 24]

Serves static/ on a local port, opens the OS chromium (Playwright), and streams one
long markdown answer (paragraphs, lists, code fences) into each renderer in deltas of
--delta characters, timing every append including layout (a forced reflow). Prints
the mean ms per delta in windows of the answer's length and writes
bench/results/render.csv.
"""

from __future__ import annotations

import argparse
import csv
import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PAGE = """<!doctype html><html><body><div id="a"></div><div id="b"></div>
<script type="module">
import { StreamingMarkdown, renderMarkdown, highlightIn } from "/js/markdown.js";
window.run = (text, delta) => {
  const windows = {};
  const record = (name, at, ms) => {
    const w = Math.floor(at / 5000) * 5000;
    (windows[name] ??= {})[w] ??= [];
    windows[name][w].push(ms);
  };
  const a = new StreamingMarkdown(document.getElementById("a"));
  const b = document.getElementById("b");
  let whole = "";
  for (let i = 0; i < text.length; i += delta) {
    const piece = text.slice(i, i + delta);
    let t = performance.now();
    a.append(piece);
    document.getElementById("a").offsetHeight;
    record("streaming", i, performance.now() - t);
    t = performance.now();
    whole += piece;
    b.innerHTML = renderMarkdown(whole);
    highlightIn(b);
    b.offsetHeight;
    record("whole", i, performance.now() - t);
  }
  return windows;
};
window.ready = true;
</script></body></html>"""


def answer(chars: int) -> str:
    blocks = []
    i = 0
    while sum(len(b) for b in blocks) < chars:
        i += 1
        if i % 4 == 0:
            blocks.append(f"```python\ndef step_{i}(dough):\n    return knead(dough, minutes={i})\n```")
        elif i % 4 == 1:
            blocks.append(f"## Chapter {i}\n\nThe dragon **kneaded** the dough for {i} minutes, " * 3)
        elif i % 4 == 2:
            blocks.append("\n".join(f"- step {k}: fold, turn, *rest*" for k in range(5)))
        else:
            blocks.append(f"Smoke rose from the oven as loaf number {i} browned. " * 4)
    return "\n\n".join(blocks)[:chars]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chars", type=int, default=40_000)
    parser.add_argument("--delta", type=int, default=24)
    args = parser.parse_args()

    static = ROOT / "static"

    class Handler(http.server.SimpleHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the stdlib's name
            if self.path == "/":
                body = PAGE.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
            else:
                super().do_GET()

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(static)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(f"http://127.0.0.1:{server.server_port}/")
        page.wait_for_function("window.ready === true")
        windows = page.evaluate("([t, d]) => window.run(t, d)", [answer(args.chars), args.delta])
        browser.close()
    server.shutdown()

    rows = []
    for start in sorted({int(w) for w in windows["streaming"]}):
        s = windows["streaming"][str(start)]
        w = windows["whole"][str(start)]
        rows.append((start, start + 5000, sum(s) / len(s), sum(w) / len(w)))
    print(f"{args.chars:,} characters of markdown streamed in deltas of {args.delta} characters")
    print()
    print("| answer so far (chars) | StreamingMarkdown ms/delta | whole re-render ms/delta | ratio |")
    print("| --- | ---: | ---: | ---: |")
    for start, end, s, w in rows:
        print(f"| {start:,}-{end:,} | {s:.2f} | {w:.2f} | {w / s:.0f}x |")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with (out / "render.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["from_chars", "to_chars", "streaming_ms_per_delta", "whole_ms_per_delta"])
        writer.writerows(rows)
    plot(rows)


def plot(rows: list[tuple[int, int, float, float]]) -> None:
    sys.path.insert(0, str(ROOT / "bench"))
    import common

    ends = [end for _, end, _, _ in rows]
    common.plot(
        "render",
        "Browser work per streamed delta, by answer length so far",
        {
            "chatweb StreamingMarkdown": (ends, [s for _, _, s, _ in rows]),
            "whole message re-rendered": (ends, [w for _, _, _, w in rows]),
        },
        "answer so far (characters)",
        "ms per delta",
    )


if __name__ == "__main__":
    main()
