"""Function calling over /api/chat/completions with the official `openai` client: the tiny
gpt-oss, scripted through the real engine (chatweb.testing.workers.weather_scripts), calls
get_weather, is given the result, and answers."""

from __future__ import annotations

import json

import openai
import pytest

from chatweb.testing.workers import (
    UNCALLED_QUESTION,
    UNCALLED_REASONING,
    WEATHER_ANSWER,
    WEATHER_ARGUMENTS,
    WEATHER_QUESTION,
    WEATHER_REASONING,
    WEATHER_RESULT,
    WEATHER_TOOL,
)
from conftest import ensure_model_row
from conversations.tests.test_api_chat import client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

QUESTION = [{"role": "user", "content": WEATHER_QUESTION}]


def test_a_call_then_its_result_then_the_answer(live_daphne, users, gpt_oss, key):
    api = client(live_daphne, key)
    first = api.chat.completions.create(model="gpt-oss-test", messages=QUESTION, tools=[WEATHER_TOOL])
    (choice,) = first.choices
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id.startswith("call_")
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == json.loads(WEATHER_ARGUMENTS)
    assert choice.message.content is None
    assert choice.message.model_extra["reasoning_content"] == WEATHER_REASONING
    assert first.usage.completion_tokens > 0

    # The call and its result go back, with the reasoning that led to the call (harmony needs it).
    history = [
        *QUESTION,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [call.model_dump()],
            "reasoning_content": WEATHER_REASONING,
        },
        {"role": "tool", "tool_call_id": call.id, "content": WEATHER_RESULT},
    ]
    second = api.chat.completions.create(model="gpt-oss-test", messages=history, tools=[WEATHER_TOOL])
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == WEATHER_ANSWER and not second.choices[0].message.tool_calls


def test_a_streamed_call_comes_as_openais_tool_call_deltas(live_daphne, users, gpt_oss, key):
    stream = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test", messages=QUESTION, tools=[WEATHER_TOOL], stream=True
    )
    pieces, finish = [], None
    for chunk in stream:
        for choice in chunk.choices:
            pieces += choice.delta.tool_calls or []
            finish = choice.finish_reason or finish
    head, *rest = pieces
    assert head.index == 0 and head.id.startswith("call_") and head.type == "function"
    assert head.function.name == "get_weather"
    assert all(p.index == 0 and p.id is None and p.function.name is None for p in rest)
    arguments = (head.function.arguments or "") + "".join(p.function.arguments for p in rest)
    assert json.loads(arguments) == json.loads(WEATHER_ARGUMENTS) and finish == "tool_calls"


def test_tool_choice_none_hides_the_functions_from_the_model():
    """Not told of get_weather, the model cannot call it: the prompt declares no functions."""
    from inference_worker.prompts import HarmonyPromptBuilder

    builder = HarmonyPromptBuilder(context_length=4096)
    told = builder.encoding.decode(
        builder.render("", QUESTION, {"tools": [WEATHER_TOOL["function"]], "tool_choice": "auto"})
    )
    hidden = builder.encoding.decode(
        builder.render("", QUESTION, {"tools": [WEATHER_TOOL["function"]], "tool_choice": "none"})
    )
    assert "type get_weather" in told and "get_weather" not in hidden


def test_functions_are_refused_for_a_model_whose_prompt_format_cannot_carry_them(live_daphne, users, smollm2, key):
    with pytest.raises(openai.BadRequestError) as refused:
        client(live_daphne, key).chat.completions.create(
            model="smollm2-test", messages=[{"role": "user", "content": "hi"}], tools=[WEATHER_TOOL]
        )
    assert refused.value.body["param"] == "tools" and "SmolLM2" in refused.value.body["message"]


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tool_choice": {"type": "function"}}, "tool_choice"),
        ({"tools": [], "tool_choice": "auto"}, "tool_choice"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": 12}}}]}, "tools"),
        ({"tools": [WEATHER_TOOL, WEATHER_TOOL]}, "tools"),
        ({"tools": [{"type": "function", "function": {"name": "bad name!"}}]}, "tools.0.function.name"),
        ({"messages": [*QUESTION, {"role": "tool", "tool_call_id": "call_x", "content": "{}"}]}, "messages"),
    ],
)
def test_bad_tool_requests_are_400_naming_the_field_and_count_nothing(asgi_api, users, key, change, param):
    from accounts.models import ApiKey

    ensure_model_row("gpt-oss-test")
    body = {"model": "gpt-oss-test", "messages": QUESTION, "tools": [WEATHER_TOOL], **change}
    response = asgi_api.post("/api/chat/completions", key=key, json=body)
    assert response.status_code == 400, response.content
    assert response.json()["error"]["param"].startswith(param), response.json()
    assert not ApiKey.objects.filter(requests__gt=0).exists()


def test_a_strict_functions_arguments_fit_its_schema_where_the_model_would_write_otherwise(
    live_daphne, users, gpt_oss, key
):
    """The script writes city "Paris"; this strict get_weather knows only Berlin. The engine
    constrains the arguments from the call's header on, so the call fits (the scripted token
    yields where the grammar masks it, and the model writes what the grammar allows)."""
    berlin = {"type": "object", "properties": {"city": {"enum": ["Berlin"]}}, "required": ["city"]}
    strict = {"type": "function", "function": {**WEATHER_TOOL["function"], "strict": True, "parameters": berlin}}
    answer = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test", messages=QUESTION, tools=[strict], temperature=0
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Berlin"}
    assert answer.choices[0].finish_reason == "tool_calls"


ALSO_TIME = {
    "type": "function",
    "function": {**WEATHER_TOOL["function"], "name": "get_time", "description": "The time now in a city."},
}


def test_a_named_tool_choice_makes_the_call_the_model_would_not_make(live_daphne, users, gpt_oss, key):
    api = client(live_daphne, key)
    asked = [{"role": "user", "content": UNCALLED_QUESTION}]
    alone = api.chat.completions.create(model="gpt-oss-test", messages=asked, tools=[WEATHER_TOOL, ALSO_TIME])
    assert alone.choices[0].finish_reason == "stop" and not alone.choices[0].message.tool_calls  # it would not

    named = {"type": "function", "function": {"name": "get_time"}}
    forced = api.chat.completions.create(
        model="gpt-oss-test", messages=asked, tools=[WEATHER_TOOL, ALSO_TIME], tool_choice=named
    )
    (call,) = forced.choices[0].message.tool_calls
    assert forced.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_time" and json.loads(call.function.arguments) == json.loads(WEATHER_ARGUMENTS)
    assert forced.choices[0].message.model_extra["reasoning_content"] == UNCALLED_REASONING, "reasoning stays free"
    assert forced.choices[0].message.content is None

    # The model's own call to another function is replaced too: it called get_weather.
    instead = api.chat.completions.create(
        model="gpt-oss-test", messages=QUESTION, tools=[WEATHER_TOOL, ALSO_TIME], tool_choice=named, stream=True
    )
    pieces = [p for chunk in instead for c in chunk.choices for p in c.delta.tool_calls or []]
    assert pieces[0].function.name == "get_time"
    json.loads("".join(p.function.arguments or "" for p in pieces))


@pytest.mark.parametrize("tools", [[WEATHER_TOOL], [WEATHER_TOOL, ALSO_TIME]], ids=["one", "two"])
def test_tool_choice_required_makes_a_call(live_daphne, users, gpt_oss, key, tools):
    """With several functions the model picks one (a short step whose grammar allows only
    their names), then writes its arguments under its schema."""
    answer = client(live_daphne, key).chat.completions.create(
        model="gpt-oss-test",
        messages=[{"role": "user", "content": UNCALLED_QUESTION}],
        tools=tools,
        tool_choice="required",
        temperature=0,
    )
    (call,) = answer.choices[0].message.tool_calls
    assert call.function.name in {t["function"]["name"] for t in tools}
    assert json.loads(call.function.arguments) == json.loads(WEATHER_ARGUMENTS)
    assert answer.choices[0].finish_reason == "tool_calls"


def test_the_agents_sdk_runs_an_agent_with_a_python_tool_to_its_answer(live_daphne, users, gpt_oss, key):
    """The real openai-agents package over chat completions: the model calls the Python
    function, the SDK runs it and sends the result back, the model answers."""
    from agents import Agent, OpenAIChatCompletionsModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    cities = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather now in a city."""
        cities.append(city)
        return WEATHER_RESULT

    model = OpenAIChatCompletionsModel(
        model="gpt-oss-test",
        openai_client=openai.AsyncOpenAI(base_url=f"{live_daphne.url}/api", api_key=key, max_retries=0),
    )
    agent = Agent(name="weather", instructions="Answer with the tool's facts.", model=model, tools=[get_weather])
    result = Runner.run_sync(agent, WEATHER_QUESTION)
    assert cities == ["Paris"], "the tool was really called"
    assert result.final_output == WEATHER_ANSWER


def test_langchains_bind_tools_returns_the_call(live_daphne, users, gpt_oss, key):
    from langchain_openai import ChatOpenAI

    llm = ChatOpenAI(model="gpt-oss-test", base_url=f"{live_daphne.url}/api", api_key=key, max_retries=0)
    message = llm.bind_tools([WEATHER_TOOL]).invoke(WEATHER_QUESTION)
    (call,) = message.tool_calls
    assert call["name"] == "get_weather" and call["args"] == json.loads(WEATHER_ARGUMENTS)
    assert call["id"].startswith("call_")


def test_the_async_client_streams_a_call_and_answers_its_result(live_daphne, users, gpt_oss, key):
    import asyncio

    async def loop() -> str:
        api = openai.AsyncOpenAI(base_url=f"{live_daphne.url}/api", api_key=key, max_retries=0, timeout=180)
        stream = await api.chat.completions.create(
            model="gpt-oss-test", messages=QUESTION, tools=[WEATHER_TOOL], stream=True
        )
        pieces = [p async for chunk in stream for c in chunk.choices for p in c.delta.tool_calls or []]
        call_id, name = pieces[0].id, pieces[0].function.name
        arguments = "".join(p.function.arguments or "" for p in pieces)
        assert name == "get_weather" and json.loads(arguments) == json.loads(WEATHER_ARGUMENTS)
        call = {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        history = [
            *QUESTION,
            {"role": "assistant", "content": None, "tool_calls": [call], "reasoning_content": WEATHER_REASONING},
            {"role": "tool", "tool_call_id": call_id, "content": WEATHER_RESULT},
        ]
        answer = await api.chat.completions.create(model="gpt-oss-test", messages=history, tools=[WEATHER_TOOL])
        return answer.choices[0].message.content

    assert asyncio.run(loop()) == WEATHER_ANSWER
