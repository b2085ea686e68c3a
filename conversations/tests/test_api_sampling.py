"""What the engine samples beyond one text: token logprobs in OpenAI's shapes (SmolLM2,
detokenized by the engine; the tiny gpt-oss, its answer's tokens only, never its
reasoning's or the harmony headers'), and n choices in one engine request."""

from __future__ import annotations

import math

import pytest

from conftest import GPT_OSS_ANSWER, ensure_model_row
from conversations.tests.test_api_chat import FRANCE, PARIS, client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]


def check_entries(entries, text: str, top: int) -> None:
    """Names and bytes both add up to the text (a character split across tokens has its bytes
    spread over them, and is named by the token that completes it)."""
    assert "".join(e.token for e in entries) == text
    assert b"".join(bytes(e.bytes) for e in entries).decode(errors="replace") == text
    for e in entries:
        assert e.logprob <= 0
        assert len(e.top_logprobs) == top
        assert [t.logprob for t in e.top_logprobs] == sorted((t.logprob for t in e.top_logprobs), reverse=True)


def test_chat_completions_give_each_tokens_logprob_and_its_alternatives(live_daphne, users, smollm2, key):
    api = client(live_daphne, key)
    answer = api.chat.completions.create(
        model="smollm2-test", messages=FRANCE, temperature=0, logprobs=True, top_logprobs=3
    )
    (choice,) = answer.choices
    assert choice.message.content == PARIS
    entries = choice.logprobs.content
    check_entries(entries, PARIS, 3)
    for e in entries:  # greedy: each chosen token is the most likely one (the end token is named "")
        assert math.isclose(e.logprob, e.top_logprobs[0].logprob)
        assert e.token in (e.top_logprobs[0].token, "")

    chunks = list(
        api.chat.completions.create(
            model="smollm2-test", messages=FRANCE, temperature=0, logprobs=True, top_logprobs=3, stream=True
        )
    )
    streamed = [e for c in chunks for ch in c.choices if ch.logprobs for e in ch.logprobs.content]
    assert [(e.token, round(e.logprob, 4)) for e in streamed] == [(e.token, round(e.logprob, 4)) for e in entries]

    plain = api.chat.completions.create(model="smollm2-test", messages=FRANCE, temperature=0)
    assert plain.choices[0].logprobs is None

    # A special token the model samples (<|endoftext|>, pushed here) is left out of the text,
    # and named "" in logprobs: the tokens add up to the text (seen at temperature 1.5).
    pushed = api.chat.completions.create(
        model="smollm2-test", messages=FRANCE, max_tokens=3, logit_bias={"0": 100}, logprobs=True
    )
    assert pushed.choices[0].message.content == ""
    assert [e.token for e in pushed.choices[0].logprobs.content] == ["", "", ""]


def test_gpt_oss_gives_logprobs_of_its_answer_only(live_daphne, users, gpt_oss, key):
    answer = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test", messages=[{"role": "user", "content": "What is it?"}], logprobs=True
    )
    (choice,) = answer.choices
    assert choice.message.content == GPT_OSS_ANSWER
    check_entries(choice.logprobs.content, GPT_OSS_ANSWER, 0)


def test_responses_give_logprobs_when_included(live_daphne, users, smollm2, key):
    api = client(live_daphne, key)
    response = api.responses.create(
        model="smollm2-test",
        input=FRANCE[0]["content"],
        temperature=0,
        top_logprobs=2,
        include=["message.output_text.logprobs"],
    )
    (part,) = response.output[0].content
    assert part.text == PARIS
    check_entries(part.logprobs, PARIS, 2)
    events = list(
        api.responses.create(
            model="smollm2-test",
            input=FRANCE[0]["content"],
            temperature=0,
            top_logprobs=2,
            include=["message.output_text.logprobs"],
            stream=True,
        )
    )
    streamed = [lp for e in events if e.type == "response.output_text.delta" for lp in e.logprobs]
    assert "".join(lp.token for lp in streamed) == PARIS


def test_n_choices_come_from_one_request_and_usage_counts_them_all(live_daphne, users, smollm2, key):
    api = client(live_daphne, key)
    one = api.chat.completions.create(model="smollm2-test", messages=FRANCE, max_tokens=12, temperature=1.5, seed=1)
    three = api.chat.completions.create(
        model="smollm2-test", messages=FRANCE, max_tokens=12, temperature=1.5, n=3, logprobs=True
    )
    assert [c.index for c in three.choices] == [0, 1, 2]
    texts = [c.message.content for c in three.choices]
    assert all(texts) and len(set(texts)) > 1, texts  # sampled, not copied
    for choice in three.choices:
        check_entries(choice.logprobs.content, choice.message.content, 0)
    written = sum(len(c.logprobs.content) for c in three.choices)  # the text's tokens; usage adds each end token
    assert written <= three.usage.completion_tokens <= written + 3
    assert three.usage.completion_tokens > one.usage.completion_tokens
    assert three.usage.prompt_tokens == one.usage.prompt_tokens  # one prompt, sampled three times

    chunks = list(
        api.chat.completions.create(
            model="smollm2-test",
            messages=FRANCE,
            max_tokens=12,
            temperature=1.5,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text: dict[int, str] = {}
    finished = set()
    for chunk in chunks:
        for c in chunk.choices:
            text[c.index] = text.get(c.index, "") + (c.delta.content or "")
            if c.finish_reason:
                finished.add(c.index)
    assert set(text) == finished == {0, 1} and all(text.values())
    assert chunks[-1].usage.completion_tokens >= 2


@pytest.mark.parametrize(
    ("model", "change", "param"),
    [
        ("smollm2-test", {"logprobs": True, "top_logprobs": 21}, "top_logprobs"),
        ("smollm2-test", {"top_logprobs": 3}, "top_logprobs"),
        ("smollm2-test", {"n": 5}, "n"),  # over API_MAX_CHOICES
        ("smollm2-test", {"n": 0}, "n"),
        ("gpt-oss-test", {"n": 2, "response_format": {"type": "json_object"}}, "n"),
    ],
)
def test_bad_sampling_requests_are_400(asgi_api, users, key, model, change, param):
    ensure_model_row(model)
    body = {"model": model, "messages": FRANCE, **change}
    response = asgi_api.post("/api/chat/completions", key=key, json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == param, response.json()
