"""What a tool-calling turn costs: a turn that answers, against turns that call a function,
through the API, one request at a time, on the tiny gpt-oss driven by the test scripts
(the same tokens every time, so only the path differs).

    .venv/bin/python bench/tools.py [--requests 12]

Kinds, taken in turn so that each round sees the same moment of this shared machine:
`answer` (no tools); `answer, tools offered` (the functions in the prompt, not called);
`call` (the model's own call, `auto`); `call, strict` (its arguments constrained from the
call's header: one more engine request); `call, named` (the model would answer: its
header is replaced by the call's, one more engine request); `call, required of 2` (the
same, and a short step in which the model picks the function). For each: the p50 time
of the whole turn, the p50 of the paired differences from `call` in the same round, and
the turn's time per completion token (the scripts differ in length), and the prompt and
completion tokens. Writes bench/results/tools.csv.
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

MODEL = "bench-gpt-oss"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=12, help="rounds (one request of each kind per round)")
    args = parser.parse_args()
    db = common.setup_django("tools")
    from inference_worker.engine import cpu_engine_env

    cpu_engine_env()
    common.fresh_database(db)

    from accounts.services import api_key_create

    key = api_key_create(user=common.unlimited_user("tools@example.com"), name="bench")[1]
    procs = common.Processes()
    try:
        procs.redis()
        address = procs.daphne()[1]
        common.scripted_gpt_oss(procs, MODEL)
        rows = asyncio.run(rounds(args, address, key))
    finally:
        procs.stop()
    common.print_table(f"{common.machine()}; tiny gpt-oss, scripted", list(rows[0]), rows)
    print(f"wrote {common.write_csv('tools', rows)}")


async def rounds(args, address: str, key: str) -> list[dict]:
    import openai

    from chatweb.testing.workers import UNCALLED_QUESTION, WEATHER_QUESTION, WEATHER_TOOL

    api = openai.AsyncOpenAI(base_url=f"http://{address}/api", api_key=key, max_retries=0, timeout=600)
    strict = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True}}
    other = {"type": "function", "function": {**WEATHER_TOOL["function"], "name": "get_time"}}
    named = {"type": "function", "function": {"name": "get_weather"}}
    kinds = {
        "answer": ("What is it?", {}),
        "answer, tools offered": ("What is it?", {"tools": [WEATHER_TOOL]}),
        "call": (WEATHER_QUESTION, {"tools": [WEATHER_TOOL]}),
        "call, strict": (WEATHER_QUESTION, {"tools": [strict]}),
        "call, named": (UNCALLED_QUESTION, {"tools": [WEATHER_TOOL], "tool_choice": named}),
        "call, required of 2": (UNCALLED_QUESTION, {"tools": [WEATHER_TOOL, other], "tool_choice": "required"}),
    }

    async def one(question: str, extra: dict) -> tuple[float, int, int]:
        sent = time.perf_counter()
        answer = await api.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": question}], max_tokens=200, **extra
        )
        took = (time.perf_counter() - sent) * 1000
        want_call = question != "What is it?"
        assert bool(answer.choices[0].message.tool_calls) == want_call, answer
        return took, answer.usage.prompt_tokens, answer.usage.completion_tokens

    for question, extra in kinds.values():  # warm-up: the engine, each grammar, the prefix cache
        await one(question, extra)
    results: dict[str, list[tuple[float, int, int]]] = {kind: [] for kind in kinds}
    for i in range(args.requests):
        order = list(kinds) if i % 2 == 0 else list(reversed(kinds))
        for kind in order:
            results[kind].append(await one(*kinds[kind]))

    def p50(values) -> float:
        return round(statistics.median(values), 1)

    call = results["call"]
    return [
        {
            "kind": kind,
            "requests": len(runs),
            "turn p50 ms": p50([r[0] for r in runs]),
            "turn - call p50 ms": p50([r[0] - c[0] for r, c in zip(runs, call, strict=True)]),
            "ms per completion token p50": p50([r[0] / r[2] for r in runs]),
            "prompt tokens": runs[0][1],
            "completion tokens": runs[0][2],
        }
        for kind, runs in results.items()
    ]


if __name__ == "__main__":
    main()
