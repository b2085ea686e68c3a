"""What the built-in tool loop costs beyond the tools' own time, and what the sandbox costs
each python call.

    .venv/bin/python bench/tool_loop.py [--requests 8] [--calls 30]

Part 1, the sandbox: `print(1)` run --calls times through conversations.builtin.sandbox
(bubblewrap, a fresh uid when root, the limits), the same sent to a tool worker
(TOOLS_QUEUE: a Celery task, the result back through Redis), and the same interpreter
started plainly (`python3 -c`), taken in turn; the p50 of each and of the paired
differences from plain.

Part 2, the loop: through the Responses API with server-side tools, one request at a time,
on the tiny gpt-oss driven by the test scripts (the same tokens every time), with a key
that saves history so that each step's own time (`seconds`, kept with the message) can be
read back. Kinds, taken in turn: `answer` (no tools: the engine's time per token here);
`search, open, python` (three steps, the stand-in search engine and site of
chatweb/testing/web.py); `python x8` (eight python calls and a ninth refused at the step
limit). Each is streamed, to time its first token. Per step: (turn - the answer's first
token - the other completion tokens x the answer's time per token after its first - the
steps' own time) / steps: the engine request that continues after a tool's result (its
prefill over the prefix cache), the thread hop, the step's events and saves. Writes
bench/results/tool_loop_sandbox.csv and tool_loop.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

MODEL = "bench-gpt-oss"
QUEUE = "bench-tools"


def p50(values) -> float:
    return round(statistics.median(values), 1)


def sandbox_rows(calls: int, root: str) -> list[dict]:
    """print(1) plainly, in the sandbox here, and in the sandbox of a tool worker (TOOLS_QUEUE)."""
    from django.conf import settings

    from conversations.builtin import remote, sandbox

    settings.SANDBOX_DIR = root
    limits = sandbox.Limits.from_settings(wall_seconds=10)

    def plain() -> None:
        out = subprocess.run([settings.SANDBOX_PYTHON, "-c", "print(1)"], capture_output=True, check=True)
        assert out.stdout == b"1\n"

    def boxed() -> None:
        settings.TOOLS_QUEUE = ""
        assert sandbox.run_python("print(1)", "cbench", limits).output == "1\n"

    def queued() -> None:
        settings.TOOLS_QUEUE = QUEUE
        assert remote.run_python("print(1)", "cbench", limits).output == "1\n"

    ways = {"python3 -c print(1)": plain, "sandbox.run_python print(1)": boxed, "the same, on a tool worker": queued}
    times: dict[str, list[float]] = {name: [] for name in ways}
    for i in range(calls + 2):
        for name in list(ways) if i % 2 == 0 else list(reversed(ways)):
            started = time.perf_counter()
            ways[name]()
            if i >= 2:  # the first two warm the page cache
                times[name].append((time.perf_counter() - started) * 1000)
    base = times["python3 -c print(1)"]
    rows = []
    for name, runs in times.items():
        paired = p50([r - b for r, b in zip(runs, base, strict=True)])
        rows.append({"kind": name, "calls": calls, "p50 ms": p50(runs), "- plain p50 ms": paired})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=8, help="rounds (one request of each kind per round)")
    parser.add_argument("--calls", type=int, default=30, help="python calls per way, in part 1")
    args = parser.parse_args()
    db = common.setup_django("tool_loop")
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()
    common.fresh_database(db)

    from accounts.models import SiteSettings
    from accounts.services import api_key_create
    from chatweb.testing.web import PUBLIC_NETWORK, tea_stand_ins

    root = tempfile.mkdtemp(prefix="chatweb-bench-sandbox-")
    os.chmod(root, 0o711)
    procs = common.Processes()
    procs.redis()
    procs.start(
        "tool-worker",
        [sys.executable, "manage.py", "run_tool_worker", "--loglevel", "WARNING"],
        {"TOOLS_QUEUE": QUEUE, "SANDBOX_DIR": root},
    )
    try:
        first = sandbox_rows(args.calls, root)
    except BaseException:
        procs.stop()
        raise
    common.print_table(f"{common.machine()}; the python sandbox's start", list(first[0]), first)

    site = SiteSettings.load()
    site.browser_tool_enabled = site.python_tool_enabled = True
    site.save()
    user = common.unlimited_user("tools@example.com")
    key = api_key_create(user=user, name="bench", save_history=True)[1]
    web, engine = tea_stand_ins()
    try:
        address = procs.daphne()[1]
        common.scripted_gpt_oss(
            procs,
            MODEL,
            {"BROWSER_SEARCH_URL": engine.base, "BROWSER_ALLOWED_NETWORKS": PUBLIC_NETWORK, "SANDBOX_DIR": root},
        )
        rows = asyncio.run(rounds(args, address, key))
    finally:
        procs.stop()
        web.close()
        engine.close()
        shutil.rmtree(root, ignore_errors=True)
    common.print_table(f"{common.machine()}; the tool loop, tiny gpt-oss, scripted", list(rows[0]), rows)
    print(f"wrote {common.write_csv('tool_loop_sandbox', first)} and {common.write_csv('tool_loop', rows)}")


async def rounds(args, address: str, key: str) -> list[dict]:
    import openai
    from asgiref.sync import sync_to_async

    from chatweb.testing.workers import LIMIT_QUESTION, TOOLS_QUESTION
    from conversations.models import Message

    api = openai.AsyncOpenAI(base_url=f"http://{address}/api", api_key=key, max_retries=0, timeout=600)
    tools = [{"type": "web_search"}, {"type": "code_interpreter", "container": {"type": "auto"}}]
    kinds = {
        "answer": ("What is it?", []),
        "search, open, python": (TOOLS_QUESTION, tools),
        "python x8": (LIMIT_QUESTION, tools),
    }

    def steps_of(response_id: str) -> list[dict]:
        message = Message.objects.get(request_id=response_id.removeprefix("resp_"), role="assistant")
        return message.tool_steps

    expected_steps = {"answer": 0, "search, open, python": 3, "python x8": 9}

    async def one(kind: str) -> tuple[float, int, list[dict], float]:
        """(turn ms, completion tokens, steps, first token ms): streamed, to time the first token."""
        question, extra = kinds[kind]
        sent = time.perf_counter()
        first = None
        stream = await api.responses.create(
            model=MODEL,
            input=question,
            max_output_tokens=600,
            store=False,
            stream=True,
            **({"tools": extra} if extra else {}),
        )
        kinds_seen = []
        async for event in stream:
            kinds_seen.append(event.type)
            if first is None and event.type.endswith(".delta"):
                first = (time.perf_counter() - sent) * 1000
        assert kinds_seen[-1] in ("response.completed", "response.incomplete"), kinds_seen[-3:]  # (the step limit)
        response = event.response
        took = (time.perf_counter() - sent) * 1000
        steps = await sync_to_async(steps_of)(response.id)
        assert len(steps) == expected_steps[kind], (kind, steps)
        return took, response.usage.output_tokens, steps, first

    for kind in kinds:  # warm-up: the engine, the prefix cache, the sandbox's pages
        await one(kind)
    results: dict[str, list[tuple[float, int, list[dict], float]]] = {kind: [] for kind in kinds}
    for i in range(args.requests):
        order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
        for kind in order:
            results[kind].append(await one(kind))

    answers = results["answer"]
    rows = []
    for kind, runs in results.items():
        per_step = []
        for (took, tokens, steps, _), (plain, plain_tokens, _, plain_first) in zip(runs, answers, strict=True):
            if steps:
                # the answer's first token, then its time per token after it, for every token here
                per_token = (plain - plain_first) / (plain_tokens - 1)
                engine_ms = plain_first + (tokens - 1) * per_token
                own_ms = sum(s.get("seconds", 0) for s in steps) * 1000
                per_step.append((took - engine_ms - own_ms) / len(steps))
        rows.append(
            {
                "kind": kind,
                "requests": len(runs),
                "turn p50 ms": p50([r[0] for r in runs]),
                "first token p50 ms": p50([r[3] for r in runs]),
                "completion tokens": runs[0][1],
                "steps": len(runs[0][2]),
                "steps' own p50 ms": p50([sum(s.get("seconds", 0) for s in r[2]) * 1000 for r in runs]),
                "overhead per step p50 ms": p50(per_step) if per_step else "",
            }
        )
    return rows


if __name__ == "__main__":
    main()
