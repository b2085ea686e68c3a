"""Time to first token of two chatweb checkouts, side by side: a paired comparison.

    .venv/bin/python bench/first_token_ab.py --a DIR --b DIR [--requests 20] [--tokens 16]

A checkout is a directory holding the project, e.g. `git worktree add /tmp/a <commit>`;
both run with this one's virtualenv, models, scratch database and Redis. Each serves
the API and the chat websocket from its own daphne; one worker (from --b's checkout)
serves both, so both sides meet the same engine. Requests go one at a time,
alternating between the two, on the API and on the chat websocket.

Why paired, and why one engine: this shared machine's speed drifts by more, between
two runs of bench/serving.py, than the milliseconds a change to the request path saves
(the engine's own first token moved by 150 ms within an hour), and two engines loaded
side by side differ from each other by tens of ms. A pair of requests sees the same
moment and the same engine. For the time to the "start" event (the worker has handed
the request to the engine; on the API, the first chunk, which carries the role) and to
the first token, the table gives each side's p50 and the p50 of the paired differences
(a - b); and chatweb's own part of the first token: the client's time less the
engine's (`time_to_first_token_ms` of the websocket's `done` event; the API does not
carry it), each side's p50 and the p50 of the paired differences. Writes bench/results/first-token-ab.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import serving  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--a", type=Path, required=True, help="a checkout (the baseline)")
    parser.add_argument("--b", type=Path, required=True, help="another checkout (the change)")
    parser.add_argument("--requests", type=int, default=20, help="pairs per path")
    parser.add_argument("--tokens", type=int, default=16)
    args = parser.parse_args()
    args.dtype, args.level_list = "float32", [1]
    db = common.setup_django("first-token-ab")
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()
    common.fresh_database(db)

    from accounts.services import api_key_create
    from conversations.models import Conversation
    from inference_worker import presence
    from inference_worker.models import ChatModel

    user = common.unlimited_user("ab@example.com")
    key = api_key_create(user=user, name="ab")[1]
    sides = {"a": args.a.resolve(), "b": args.b.resolve()}
    procs = common.Processes()
    try:
        procs.redis()
        model = ChatModel.objects.create(name=serving.MODEL, **serving.model_fields(args))
        address = {side: procs.daphne(f"daphne-{side}", cwd=root)[1] for side, root in sides.items()}
        procs.worker(model.name, "ab", cwd=sides["b"])
        common.wait_for(lambda: any(w["state"] == "ready" for w in presence.live_workers(model.name)), 600, "worker", 1)
        one = {"owner": user, "model": model, "title": "ab", "title_auto": False}
        fresh = Conversation.objects.bulk_create(Conversation(**one) for _ in range(2 * args.requests + 2))
        conversations = {"a": iter(fresh[::2]), "b": iter(fresh[1::2])}
        rows = asyncio.run(pairs(args, sides, address, key, common.session_cookie(user), conversations))
    finally:
        procs.stop()
    common.print_table(f"{common.machine()}; a = {args.a}, b = {args.b}", list(rows[0]), rows)
    print(f"wrote {common.write_csv('first-token-ab', rows)}")


async def pairs(args, sides, address, key, cookie, conversations) -> list[dict]:
    import openai

    clients = {
        side: openai.AsyncOpenAI(base_url=f"http://{address[side]}/api", api_key=key, max_retries=0, timeout=600)
        for side in sides
    }

    async def api(side: str) -> tuple[float, float, None]:
        sent = time.perf_counter()
        stream = await clients[side].chat.completions.create(
            model=serving.MODEL,
            messages=[{"role": "user", "content": serving.PROMPT}],
            max_tokens=args.tokens,
            temperature=0.7,
            stream=True,
            extra_body={"ignore_eos": True},
        )
        start = first = None
        async for chunk in stream:
            now = (time.perf_counter() - sent) * 1000
            start = start or now  # the role chunk: sent once the worker's "start" event is in
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = now
        return start, first, None

    async def ws(side: str) -> tuple[float, float, float]:
        async with common.chat_socket(address[side], cookie, next(conversations[side]).pk) as socket:
            await socket.recv()  # "ready"
            sent = time.perf_counter()
            params = {"max_tokens": args.tokens, "temperature": 0.7, "ignore_eos": True}
            await socket.send(json.dumps({"type": "send", "content": serving.PROMPT, "params": params}))
            start = first = None
            while True:
                event = json.loads(await socket.recv())
                now = (time.perf_counter() - sent) * 1000
                if event["type"] == "start":
                    start = now
                elif event["type"] == "delta" and event.get("content") and first is None:
                    first = now
                elif event["type"] == "done":
                    return start, first, event["time_to_first_token_ms"]
                elif event["type"] == "error":
                    raise SystemExit(f"the chat refused: {event}")

    paths = {"api": api, "ws": ws}
    for one in paths.values():  # warm-up, both sides
        for side in sides:
            await one(side)
    results = {(path, side): [] for path in paths for side in sides}
    for i in range(args.requests):
        order = list(sides) if i % 2 == 0 else list(reversed(sides))  # neither side always goes first
        for path, one in paths.items():
            for side in order:
                results[(path, side)].append(await one(side))

    def p50(values) -> float:
        return round(statistics.median(values), 1)

    rows = []
    for path in paths:
        a, b = results[(path, "a")], results[(path, "b")]
        row = {"path": path, "pairs": len(a)}
        for i, what in ((0, "start"), (1, "ttft")):  # the "start" event: the engine has the request
            row[f"a_{what}_p50_ms"] = p50(x[i] for x in a)
            row[f"b_{what}_p50_ms"] = p50(x[i] for x in b)
            row[f"a_minus_b_{what}_p50_ms"] = p50(x[i] - y[i] for x, y in zip(a, b, strict=True))
        # chatweb's part of the first token: the client's time less the engine's (websocket only)
        row["a_chatweb_p50_ms"] = p50(x[1] - x[2] for x in a) if path == "ws" else None
        row["b_chatweb_p50_ms"] = p50(x[1] - x[2] for x in b) if path == "ws" else None
        row["a_minus_b_chatweb_p50_ms"] = (
            p50((x[1] - x[2]) - (y[1] - y[2]) for x, y in zip(a, b, strict=True)) if path == "ws" else None
        )
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
