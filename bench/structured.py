"""What structured outputs cost: plain answers against answers held to a JSON schema or to
JSON, through the API, one request at a time, on SmolLM2 and one engine.

    .venv/bin/python bench/structured.py [--requests 12] [--tokens 48]

Kinds of request, taken in turn so that each round sees the same moment of this shared
machine: `plain`; `json_object`; `json_schema, same` (one schema every time: vLLM keeps
its compiled grammar); `json_schema, new` (a property named anew each time: the grammar is
compiled for every request, as for a client whose schemas differ). For each: the p50 time
to the first token (the grammar is compiled before it), the p50 time per token after it,
and the p50 of the paired differences from `plain` in the same round. Writes
bench/results/structured.csv.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import serving  # noqa: E402

SCHEMA = {
    "type": "object",
    "properties": {"title": {"type": "string"}, "chapters": {"type": "array", "items": {"type": "string"}}},
    "required": ["title", "chapters"],
}


def fmt_schema(name: str, schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12, help="rounds (one request of each kind per round)")
    parser.add_argument("--tokens", type=int, default=48, help="max_tokens of each answer")
    args = parser.parse_args()
    args.dtype, args.level_list = "float32", [1]
    db = common.setup_django("structured")
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()
    common.fresh_database(db)

    from accounts.services import api_key_create
    from inference_worker import presence
    from inference_worker.models import ChatModel

    key = api_key_create(user=common.unlimited_user("structured@example.com"), name="bench")[1]
    procs = common.Processes()
    try:
        procs.redis()
        model = ChatModel.objects.create(name=serving.MODEL, **serving.model_fields(args))
        address = procs.daphne()[1]
        procs.worker(model.name, "structured")
        common.wait_for(lambda: any(w["state"] == "ready" for w in presence.live_workers(model.name)), 600, "worker", 1)
        rows = asyncio.run(rounds(args, address, key))
    finally:
        procs.stop()
    common.print_table(f"{common.machine()}; SmolLM2 float32, {args.tokens} tokens", list(rows[0]), rows)
    print(f"wrote {common.write_csv('structured', rows)}")


async def rounds(args, address: str, key: str) -> list[dict]:
    import openai

    api = openai.AsyncOpenAI(base_url=f"http://{address}/api", api_key=key, max_retries=0, timeout=600)

    async def one(response_format: dict | None) -> tuple[float, float, int]:
        extra = {"response_format": response_format} if response_format else {}
        sent = time.perf_counter()
        stream = await api.chat.completions.create(
            model=serving.MODEL,
            messages=[{"role": "user", "content": serving.PROMPT}],
            max_tokens=args.tokens,
            temperature=0.7,
            stream=True,
            stream_options={"include_usage": True},
            **extra,
        )
        first = tokens = None
        async for chunk in stream:
            if first is None and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter()
            if chunk.usage is not None:
                tokens = chunk.usage.completion_tokens
        done = time.perf_counter()
        per_token = (done - first) * 1000 / max(1, tokens - 1)
        return (first - sent) * 1000, per_token, tokens

    kinds = {
        "plain": lambda i: None,
        "json_object": lambda i: {"type": "json_object"},
        "json_schema, same": lambda i: fmt_schema("story", SCHEMA),
        "json_schema, new": lambda i: fmt_schema(
            "story", {**SCHEMA, "properties": {**SCHEMA["properties"], f"note_{i}": {"type": "string"}}}
        ),
    }
    for kind in kinds.values():  # warm-up: the engine, and the "same" schema's grammar
        await one(kind(-1))
    results: dict[str, list[tuple[float, float, int]]] = {kind: [] for kind in kinds}
    for i in range(args.requests):
        order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
        for kind in order:
            results[kind].append(await one(kinds[kind](i)))

    def p50(values) -> float:
        return round(statistics.median(values), 1)

    plain = results["plain"]
    rows = []
    for kind, runs in results.items():
        rows.append(
            {
                "kind": kind,
                "requests": len(runs),
                "ttft p50 ms": p50([r[0] for r in runs]),
                "ttft - plain p50 ms": p50([r[0] - p[0] for r, p in zip(runs, plain, strict=True)]),
                "per token p50 ms": p50([r[1] for r in runs]),
                "per token - plain p50 ms": p50([r[1] - p[1] for r, p in zip(runs, plain, strict=True)]),
                "tokens p50": p50([r[2] for r in runs]),
            }
        )
    return rows


if __name__ == "__main__":
    main()
