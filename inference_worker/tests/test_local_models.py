"""The models that setup builds offline are real, loadable, and what they claim."""

from __future__ import annotations

import json

import pytest
from django.conf import settings

from inference_worker.local_models import SMOLLM2, TINY_GPT_OSS, is_built


def model_dir(name: str):
    path = settings.MODELS_DIR / name
    if not is_built(path):
        pytest.fail(f"{path} is not built: run scripts/setup.sh (or make models)")
    return path


def test_smollm2_folder_is_a_hugging_face_model_with_its_chat_template():
    path = model_dir(SMOLLM2)
    config = json.loads((path / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nHi<|im_end|>" in prompt and prompt.endswith("<|im_start|>assistant\n")


CORPUS = [
    "Hello, world!",
    "The capital of France is Paris.",
    "  leading spaces and trailing   \n\n\ttabs",
    "ünïcödé ✓ 数字 12345 6789012 — emoji 🙂👍🏽",
    "def f(x):\n    return x ** 2  # code\n",
    "I'm sure they've said it's 'fine', DON'T you THINK?",
    "<|start|>user<|message|>hi<|end|>",
]


@pytest.fixture(scope="module")
def gpt_oss_tokenizers():
    """Loaded once for the whole corpus: a 200k-token vocabulary takes seconds to load."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding
    from transformers import AutoTokenizer

    return load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS), AutoTokenizer.from_pretrained(
        model_dir(TINY_GPT_OSS)
    )


@pytest.mark.parametrize("text", CORPUS)
def test_tiny_gpt_oss_tokenizer_is_o200k_harmony(gpt_oss_tokenizers, text):
    harmony, tokenizer = gpt_oss_tokenizers
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert ids == harmony.encode(text, allowed_special="all")
    assert tokenizer.decode(ids) == text


def test_tiny_gpt_oss_config_suits_the_cpu_backend():
    config = json.loads((model_dir(TINY_GPT_OSS) / "config.json").read_text())
    assert config["architectures"] == ["GptOssForCausalLM"]
    assert config["head_dim"] >= 32
    assert config["vocab_size"] == 201088


# The built SmolLM2 answering the France question in the real engine (float32,
# greedy) is tested end to end through a worker in test_worker.py.
