"""Structured outputs over /api/chat/completions: response_format enforced in the engine with
vLLM's structured outputs, on SmolLM2 (a real model, whose plain answer is prose) and on the
tiny gpt-oss (whose reasoning stays free: only its final answer is constrained)."""

from __future__ import annotations

import json

import jsonschema
import pytest

from chatweb.testing.workers import (
    STRUCTURED_ANSWER,
    STRUCTURED_QUESTION,
    STRUCTURED_SCHEMA,
    UNCALLED_QUESTION,
    WEATHER_ARGUMENTS,
)
from conversations.tests.test_api_chat import FRANCE, PARIS, client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

CAPITAL = {
    "type": "object",
    "properties": {"country": {"type": "string"}, "capital": {"type": "string"}},
    "required": ["country", "capital"],
    "additionalProperties": False,
}


def schema_format(schema: dict) -> dict:
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


def test_smollm2_answers_in_json_that_fits_the_schema_where_it_would_write_prose(live_daphne, users, smollm2, key):
    api = client(live_daphne, key)
    plain = api.chat.completions.create(model="smollm2-test", messages=FRANCE, temperature=0)
    assert plain.choices[0].message.content == PARIS  # prose, unconstrained

    shaped = api.chat.completions.create(
        model="smollm2-test", messages=FRANCE, temperature=0, max_tokens=200, response_format=schema_format(CAPITAL)
    )
    assert shaped.choices[0].finish_reason == "stop"
    jsonschema.validate(json.loads(shaped.choices[0].message.content), CAPITAL)

    streamed = api.chat.completions.create(
        model="smollm2-test",
        messages=FRANCE,
        temperature=0,
        max_tokens=200,
        response_format=schema_format(CAPITAL),
        stream=True,
    )
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert json.loads(text) == json.loads(shaped.choices[0].message.content)


def test_gpt_oss_reasons_freely_and_only_its_final_answer_is_constrained(live_daphne, users, gpt_oss, key):
    """Two engine requests: free until the model opens its final channel, then the grammar
    from there (the scripted model says STRUCTURED_ANSWER; the grammar lets it)."""
    answer = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test",
        messages=[{"role": "user", "content": STRUCTURED_QUESTION}],
        max_tokens=200,
        response_format=schema_format(STRUCTURED_SCHEMA),
    )
    message = answer.choices[0].message
    assert message.content == STRUCTURED_ANSWER
    jsonschema.validate(json.loads(message.content), STRUCTURED_SCHEMA)
    assert message.model_extra["reasoning_content"], "the reasoning is there, unconstrained"
    assert answer.usage.completion_tokens > len(message.content) // 8

    # Any JSON object (one key: xgrammar 0.2.8 wants a space after each comma of a schemaless
    # object, where the script writes none; vLLM's xgrammar backend notes the bug).
    as_object = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test",
        messages=[{"role": "user", "content": UNCALLED_QUESTION}],
        max_tokens=200,
        response_format={"type": "json_object"},
    )
    assert json.loads(as_object.choices[0].message.content) == json.loads(WEATHER_ARGUMENTS)


def test_langchains_structured_output_returns_a_validated_dict(live_daphne, users, smollm2, key):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(
        model="smollm2-test",
        base_url=f"{live_daphne.url}/api",
        api_key=key,
        max_retries=0,
        temperature=0,
        max_tokens=200,
    )
    shaped = llm.with_structured_output(CAPITAL | {"title": "Capital"}, method="json_schema", strict=True)
    result = shaped.invoke(FRANCE[0]["content"])
    jsonschema.validate(result, CAPITAL)


@pytest.mark.parametrize(
    ("response_format", "param"),
    [
        ({"type": "xml"}, "response_format"),
        ({"type": "json_schema"}, "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "a", "schema": {"type": 7}}}, "response_format"),
        ({"type": "json_schema", "json_schema": {"name": "a b", "schema": {}}}, "response_format"),
    ],
)
def test_a_bad_response_format_is_400_naming_it(asgi_api, users, key, response_format, param):
    from conftest import ensure_model_row

    ensure_model_row("smollm2-test")
    body = {"model": "smollm2-test", "messages": FRANCE, "response_format": response_format}
    response = asgi_api.post("/api/chat/completions", key=key, json=body)
    assert response.status_code == 400 and response.json()["error"]["param"].startswith(param), response.json()


def test_the_official_client_parses_into_a_pydantic_model(live_daphne, users, smollm2, key):
    """`client.chat.completions.parse` sends a strict json_schema and parses the answer."""
    import pydantic

    class Capital(pydantic.BaseModel):
        country: str
        capital: str

    parsed = client(live_daphne, key).chat.completions.parse(
        model="smollm2-test", messages=FRANCE, temperature=0, max_tokens=200, response_format=Capital
    )
    assert isinstance(parsed.choices[0].message.parsed, Capital)
