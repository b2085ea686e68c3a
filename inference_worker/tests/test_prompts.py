"""Prompt building with the real tokenizers: formats, trimming, the too-long error."""

from __future__ import annotations

import pytest
from django.conf import settings

from inference_worker.local_models import SMOLLM2, is_built
from inference_worker.prompts import HarmonyPromptBuilder, PromptTooLong, prompt_builder_for


@pytest.fixture(scope="module")
def harmony() -> HarmonyPromptBuilder:
    return HarmonyPromptBuilder(context_length=400)


@pytest.fixture(scope="module")
def chatml():
    path = settings.MODELS_DIR / SMOLLM2
    if not is_built(path):
        pytest.fail(f"{path} is not built: run scripts/setup.sh")
    return prompt_builder_for(prompt_format="chat_template", context_length=300, path=str(path))


def decode(builder: HarmonyPromptBuilder, ids: list[int]) -> str:
    return builder.encoding.decode(ids)


def test_harmony_has_effort_date_developer_and_only_final_answers(harmony):
    prompt = harmony.build(
        history=[
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "user", "content": "And now?"},
        ],
        system_prompt="Answer in French.",
        max_tokens=50,
        options={"reasoning_effort": "high", "date": "2026-11-23"},
    )
    text = decode(harmony, prompt.token_ids)
    assert text.startswith("<|start|>system<|message|>")
    assert "Reasoning: high" in text and "2026-11-23" in text
    assert "<|start|>developer<|message|># Instructions\n\nAnswer in French.<|end|>" in text
    assert "<|start|>assistant<|channel|>final<|message|>Hello!<|end|>" in text
    assert "analysis" not in text.split("<|start|>user")[1]  # no earlier reasoning is re-sent
    assert text.endswith("<|start|>user<|message|>And now?<|end|><|start|>assistant")
    assert set(prompt.stop_token_ids) == {200002, 200012}  # <|return|>, <|call|>


def test_oldest_turns_are_dropped_first_and_the_system_prompt_stays(chatml):
    history = []
    for n in range(30):
        history += [
            {"role": "user", "content": f"question {n} " * 5},
            {"role": "assistant", "content": f"answer {n} " * 5},
        ]
    history.append({"role": "user", "content": "the newest question"})
    prompt = chatml.build(history=history, system_prompt="SYSTEM-RULES", max_tokens=100)
    text = chatml.tokenizer.decode(prompt.token_ids)
    assert len(prompt.token_ids) <= 300 - 100
    assert prompt.dropped > 0
    assert "SYSTEM-RULES" in text
    assert "the newest question" in text
    assert "question 0 " not in text
    assert "question 29" in text  # the most recent exchange survived
    # the kept window starts at a user turn, never with an orphaned answer
    assert text.index("<|im_start|>user") < text.index("<|im_start|>assistant")


def test_a_message_that_alone_does_not_fit_says_how_big_it_is(chatml):
    with pytest.raises(PromptTooLong) as info:
        chatml.build(history=[{"role": "user", "content": "word " * 400}], max_tokens=100)
    error = info.value
    assert error.limit == 200 and error.tokens > 200
    assert f"This message is {error.tokens} tokens, this model accepts 200" in str(error)


def test_system_and_developer_messages_fold_into_the_system_prompt(harmony):
    prompt = harmony.build(
        history=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
        system_prompt="",
        max_tokens=20,
    )
    assert "# Instructions\n\nBe brief." in decode(harmony, prompt.token_ids)
