"""Token log probabilities in OpenAI's shape, from vLLM's per-position logprobs.

Each entry is {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}, built in
the worker, which has the tokenizer. `bytes` are the token's own bytes, as OpenAI gives
them: a character split across tokens has its bytes spread over them, and the bytes of an
answer's tokens add up to its text. The chosen tokens are named by decoding those bytes in
order, so their names add up to the text as well: a token that ends mid-character is named
"" and the one that completes it carries the whole character; bytes that never make a
character come out as U+FFFD, as they do in the text. (vLLM names a split character's
pieces the same way, but leaves out the replacement character of bytes that never
complete, and harmony's decoder names each piece U+FFFD.) An alternative is named alone.
"""

from __future__ import annotations

import codecs
import functools
import re
from collections.abc import Callable
from typing import Any

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # SentencePiece's byte fallback


class TokenNames:
    """Names and bytes for the chosen tokens of one answer (or one of its n choices), in order."""

    def __init__(self, token_bytes: Callable[[int], bytes], decode: Callable[[int], str] | None) -> None:
        self.token_bytes, self.decode = token_bytes, decode
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def chosen(self, token_id: int) -> tuple[str, bytes]:
        raw = self.token_bytes(token_id)
        return self._utf8.decode(raw), raw

    def alone(self, token_id: int, logprob) -> str:
        """An alternative's name: the engine's, or decoded alone (harmony: the engine does not detokenize)."""
        if logprob.decoded_token is not None or self.decode is None:
            return logprob.decoded_token or ""
        return self.decode(token_id)


def names_for(encoding=None, tokenizer=None) -> Callable[[], TokenNames]:
    """A maker of TokenNames for a harmony `encoding`, or else a Hugging Face `tokenizer`."""
    if encoding is not None:
        inner = getattr(encoding, "_inner", None)  # the Rust encoding; the Python class hides decode_bytes

        def harmony_bytes(token_id: int) -> bytes:
            if inner is not None:
                return bytes(inner.decode_bytes([token_id]))
            return encoding.decode([token_id]).encode()

        decode = functools.lru_cache(maxsize=4096)(lambda t: encoding.decode([t]))
        token_bytes = functools.lru_cache(maxsize=65536)(harmony_bytes)
        return lambda: TokenNames(token_bytes, decode)
    token_bytes = functools.lru_cache(maxsize=65536)(_hf_bytes(tokenizer))
    return lambda: TokenNames(token_bytes, None)


def _hf_bytes(tokenizer) -> Callable[[int], bytes]:
    """A token's bytes from a Hugging Face tokenizer: byte-level BPE (GPT-2, SmolLM2, Llama 3,
    Qwen) maps each byte to a character of its own; SentencePiece writes a lone byte as
    <0xNN> and a space as ▁; anything else (a special token) is its decoded text."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    table = {c: b for b, c in bytes_to_unicode().items()}

    def token_bytes(token_id: int) -> bytes:
        piece = tokenizer.convert_ids_to_tokens(token_id) if tokenizer is not None else None
        if not isinstance(piece, str) or not piece:
            return tokenizer.decode([token_id]).encode() if tokenizer is not None else b""
        if token_id in tokenizer.all_special_ids:
            return tokenizer.decode([token_id]).encode()
        if byte := _BYTE_PIECE.fullmatch(piece):
            return bytes([int(byte.group(1), 16)])
        if "▁" not in piece and all(c in table for c in piece):
            return bytes(table[c] for c in piece)
        return piece.replace("▁", " ").encode()

    return token_bytes


def _one(text: str, logprob: float, raw: bytes) -> dict[str, Any]:
    return {"token": text, "logprob": max(logprob, -9999.0), "bytes": list(raw)}  # -inf is not JSON


def entry(
    chosen: int, position: dict, top: int, names: TokenNames, hidden: frozenset[int] = frozenset()
) -> dict[str, Any]:
    """The chosen token of one position and the `top` most likely ones there. A chosen token
    in `hidden` (a special token, which the text leaves out) is named "", with no bytes."""
    mine = position.get(chosen)
    name, raw = ("", b"") if chosen in hidden else names.chosen(chosen)
    out = _one(name, mine.logprob if mine is not None else float("-inf"), raw)
    ranked = sorted(position.items(), key=lambda kv: (kv[1].rank or 1 << 30, -kv[1].logprob))
    out["top_logprobs"] = [_one(names.alone(t, lp), lp.logprob, names.token_bytes(t)) for t, lp in ranked[:top]]
    return out
