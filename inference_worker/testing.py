"""Test-only vLLM logits processor: force a scripted token sequence on one request.

Random weights never emit harmony's channel tokens, so the harmony path is tested
end to end by scripting them: a request whose SamplingParams.extra_args carries
`chatweb_script` (a list of token ids) gets exactly those tokens, one per step;
every other request in the batch is untouched. A scripted token that a grammar has
masked (structured outputs run first) is not forced: the grammar wins and the model
picks among what it allows, as an unscripted model would. Workers load it only when started
with CHATWEB_SCRIPTED_LOGITS=1 (the test fixtures do); such a worker started with
CHATWEB_SCRIPT=<comma-separated ids> scripts every request that names no script of
its own (chats sent from a websocket or a browser). This module must be importable
in vLLM's spawned engine process.
"""

from __future__ import annotations

import torch
from vllm.v1.sample.logits_processor import BatchUpdate, LogitsProcessor, MoveDirectionality

SCRIPT_ARG = "chatweb_script"


class ScriptedTokens(LogitsProcessor):
    def __init__(self, vllm_config, device: torch.device, is_pin_memory: bool) -> None:
        # batch row -> (script, the request's live list of output token ids)
        self.rows: dict[int, tuple[list[int], list[int]]] = {}

    def is_argmax_invariant(self) -> bool:
        return False

    def update_state(self, batch_update: BatchUpdate | None) -> None:
        if batch_update is None:
            return
        for index in batch_update.removed:
            self.rows.pop(index, None)
        for index, params, _prompt_ids, output_ids in batch_update.added:
            script = (getattr(params, "extra_args", None) or {}).get(SCRIPT_ARG)
            if script:
                self.rows[index] = ([int(t) for t in script], output_ids)
            else:
                self.rows.pop(index, None)
        for src, dst, direction in batch_update.moved:
            moving = self.rows.pop(src, None)
            other = self.rows.pop(dst, None)
            if moving is not None:
                self.rows[dst] = moving
            if direction == MoveDirectionality.SWAP and other is not None:
                self.rows[src] = other

    def apply(self, logits: torch.Tensor) -> torch.Tensor:
        for index, (script, output_ids) in self.rows.items():
            step = len(output_ids)
            if step < len(script) and logits[index, script[step]] != float("-inf"):
                logits[index].fill_(float("-inf"))
                logits[index, script[step]] = 0.0
        return logits
