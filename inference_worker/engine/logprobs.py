"""Token log probabilities in OpenAI's shape, from vLLM's per-position logprobs.

Each entry is {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}, built in
the worker, which has the tokenizer. A token that ends mid-character decodes with a
replacement character, and its bytes are those of that text, as vLLM's own server gives
them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def _one(text: str, logprob: float) -> dict[str, Any]:
    logprob = max(logprob, -9999.0)  # -inf is not JSON
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", errors="replace"))}


def entry(
    chosen: int, position: dict, top: int, decode: Callable[[int], str] | None, hidden: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """The chosen token of one position and the `top` most likely ones there. `decode` names
    tokens when the engine did not (harmony: the engine does not detokenize). A chosen token
    in `hidden` (a special token, which the text leaves out) is named "": the tokens of an
    answer add up to its text."""

    def text(token_id: int, logprob) -> str:
        return logprob.decoded_token if logprob.decoded_token is not None or decode is None else decode(token_id)

    mine = position.get(chosen)
    if chosen in hidden:
        name = ""
    else:
        name = text(chosen, mine) if mine is not None else (decode(chosen) if decode else "")
    out = _one(name, mine.logprob if mine is not None else float("-inf"))
    ranked = sorted(position.items(), key=lambda kv: (kv[1].rank or 1 << 30, -kv[1].logprob))
    out["top_logprobs"] = [_one(text(t, lp), lp.logprob) for t, lp in ranked[:top]]
    return out
