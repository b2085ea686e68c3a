"""The Responses API with the official `openai` client and the Agents SDK's default model: the
tiny gpt-oss, scripted through the real engine (chatweb.testing.workers), answers, streams
OpenAI's event sequence, calls get_weather and answers its result, statefully
(previous_response_id) and statelessly (reasoning sealed and handed back)."""

from __future__ import annotations

import json

import jsonschema
import openai
import pytest

from accounts.models import ApiKey, UsageDay
from chatweb.testing.workers import (
    STRUCTURED_ANSWER,
    STRUCTURED_QUESTION,
    STRUCTURED_SCHEMA,
    WEATHER_ANSWER,
    WEATHER_ARGUMENTS,
    WEATHER_QUESTION,
    WEATHER_REASONING,
    WEATHER_RESULT,
    WEATHER_TOOL,
)
from conftest import GPT_OSS_ANSWER, GPT_OSS_REASONING, ensure_model_row, wait_for
from conversations.tests.test_api_chat import client

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(400)]

TOOL = {"type": "function", **WEATHER_TOOL["function"]}  # the Responses API's flat shape


def test_an_answer_with_its_reasoning_and_real_usage(live_daphne, users, gpt_oss, key):
    response = client(live_daphne, key).responses.create(model="gpt-oss-test", input="What is it?")
    assert response.object == "response" and response.id.startswith("resp_")
    assert response.status == "completed" and response.output_text == GPT_OSS_ANSWER
    reasoning, message = response.output
    assert reasoning.type == "reasoning" and reasoning.content[0].text == GPT_OSS_REASONING
    assert message.type == "message" and message.content[0].text == GPT_OSS_ANSWER
    usage = response.usage
    assert usage.input_tokens > 0 and usage.output_tokens > usage.output_tokens_details.reasoning_tokens > 0
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens

    # Counted on the key and the user's day exactly as a chat completion is.
    row = ApiKey.objects.get(user=users.alice)
    wait_for(lambda: ApiKey.objects.get(pk=row.pk).requests == 1, 10, "the key's usage")
    row.refresh_from_db()
    assert (row.prompt_tokens, row.completion_tokens) == (usage.input_tokens, usage.output_tokens)
    assert UsageDay.objects.get(user=users.alice).completion_tokens == usage.output_tokens


def test_a_stream_comes_in_openais_event_sequence(live_daphne, users, gpt_oss, key):
    events = list(client(live_daphne, key).responses.create(model="gpt-oss-test", input="What is it?", stream=True))
    kinds = [e.type for e in events]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert kinds[:3] == ["response.created", "response.in_progress", "response.output_item.added"]
    assert kinds[-1] == "response.completed"
    squeezed = [k for i, k in enumerate(kinds) if i == 0 or k != kinds[i - 1]]  # runs of deltas as one
    assert squeezed == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_text.delta",
        "response.reasoning_text.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == GPT_OSS_ANSWER
    assert "".join(e.delta for e in events if e.type == "response.reasoning_text.delta") == GPT_OSS_REASONING
    done = events[-1].response
    assert done.output_text == GPT_OSS_ANSWER and done.usage.output_tokens > 0, "real usage, not zeros"


def test_a_streamed_call_and_its_arguments(live_daphne, users, gpt_oss, key):
    events = list(
        client(live_daphne, key).responses.create(
            model="gpt-oss-test", input=WEATHER_QUESTION, tools=[TOOL], stream=True
        )
    )
    added = [e.item for e in events if e.type == "response.output_item.added"]
    assert [i.type for i in added] == ["reasoning", "function_call"]
    arguments = "".join(e.delta for e in events if e.type == "response.function_call_arguments.delta")
    (done,) = [e for e in events if e.type == "response.function_call_arguments.done"]
    assert json.loads(arguments) == json.loads(done.arguments) == json.loads(WEATHER_ARGUMENTS)
    (call,) = [i for i in events[-1].response.output if i.type == "function_call"]
    assert call.name == "get_weather" and call.call_id.startswith("call_")


def test_a_stateless_tool_loop_of_three_turns_hands_back_its_sealed_reasoning(live_daphne, users, gpt_oss, key):
    """store=false throughout: the client carries the conversation, and the reasoning that led
    to the call goes back sealed. It reaches the prompt: the turn with it is longer. The
    third turn carries all of it again, with the answer and a new question."""
    api = client(live_daphne, key)
    first = api.responses.create(
        model="gpt-oss-test",
        input=WEATHER_QUESTION,
        tools=[TOOL],
        store=False,
        include=["reasoning.encrypted_content"],
    )
    reasoning, call = first.output
    assert reasoning.encrypted_content and WEATHER_REASONING not in reasoning.encrypted_content
    assert call.type == "function_call" and json.loads(call.arguments) == json.loads(WEATHER_ARGUMENTS)
    result = {"type": "function_call_output", "call_id": call.call_id, "output": WEATHER_RESULT}
    question = {"role": "user", "content": WEATHER_QUESTION}
    sealed = {"type": "reasoning", "id": reasoning.id, "summary": [], "encrypted_content": reasoning.encrypted_content}
    with_reasoning = api.responses.create(
        model="gpt-oss-test", input=[question, sealed, call.model_dump(), result], tools=[TOOL], store=False
    )
    without = api.responses.create(
        model="gpt-oss-test", input=[question, call.model_dump(), result], tools=[TOOL], store=False
    )
    assert with_reasoning.output_text == WEATHER_ANSWER
    assert with_reasoning.usage.input_tokens > without.usage.input_tokens

    answered = [question, sealed, call.model_dump(), result, *(i.model_dump() for i in with_reasoning.output)]
    third = api.responses.create(
        model="gpt-oss-test", input=[*answered, {"role": "user", "content": "Thanks. And then?"}], store=False
    )
    assert third.output_text == GPT_OSS_ANSWER

    tampered = {**sealed, "encrypted_content": sealed["encrypted_content"][:-8] + "AAAAAAA="}
    with pytest.raises(openai.BadRequestError) as refused:
        api.responses.create(model="gpt-oss-test", input=[question, tampered, call.model_dump(), result], store=False)
    assert refused.value.body["param"] == "input.1.encrypted_content"
    with pytest.raises(openai.NotFoundError):  # nothing was kept
        api.responses.retrieve(first.id)


def test_a_stateful_loop_of_three_turns_continues_from_previous_responses(live_daphne, users, gpt_oss, key):
    api = client(live_daphne, key)
    first = api.responses.create(model="gpt-oss-test", input=WEATHER_QUESTION, tools=[TOOL])
    (call,) = [i for i in first.output if i.type == "function_call"]
    second = api.responses.create(
        model="gpt-oss-test",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": WEATHER_RESULT}],
        tools=[TOOL],
    )
    assert second.output_text == WEATHER_ANSWER and second.previous_response_id == first.id
    third = api.responses.create(model="gpt-oss-test", previous_response_id=second.id, input="Thanks. And then?")
    alone = api.responses.create(model="gpt-oss-test", input="Thanks. And then?", store=False)
    assert third.output_text == GPT_OSS_ANSWER
    assert first.usage.input_tokens < second.usage.input_tokens
    # After a final answer harmony drops the reasoning before it; the exchange itself stays.
    assert third.usage.input_tokens > alone.usage.input_tokens + len(WEATHER_RESULT) // 4

    kept = api.responses.retrieve(second.id)
    assert kept.output_text == WEATHER_ANSWER and kept.usage.input_tokens == second.usage.input_tokens


def test_only_the_owner_reads_continues_or_deletes_a_response(live_daphne, users, gpt_oss, key):
    from accounts.services import api_key_create

    alice = client(live_daphne, key)
    bob = client(live_daphne, api_key_create(user=users.bob, name="bob's")[1])
    response = alice.responses.create(model="gpt-oss-test", input="What is it?")
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError) as continued:
        bob.responses.create(model="gpt-oss-test", input="And?", previous_response_id=response.id)
    assert continued.value.body["param"] == "previous_response_id"
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(response.id)
    assert alice.responses.retrieve(response.id).output_text == GPT_OSS_ANSWER
    alice.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(response.id)


def test_reasoning_stays_hidden_from_users_the_site_excludes_but_can_travel_sealed(live_daphne, users, gpt_oss, key):
    from accounts.models import SiteSettings

    site = SiteSettings.load()
    site.reasoning_visibility = "admins"
    site.save()
    api = client(live_daphne, key)  # alice's
    response = api.responses.create(model="gpt-oss-test", input="What is it?", include=["reasoning.encrypted_content"])
    reasoning = response.output[0]
    assert reasoning.type == "reasoning" and not reasoning.content and reasoning.encrypted_content
    assert GPT_OSS_REASONING not in response.model_dump_json()
    assert GPT_OSS_REASONING not in api.responses.retrieve(response.id).model_dump_json()
    events = list(api.responses.create(model="gpt-oss-test", input="What is it?", stream=True))
    assert not [e for e in events if e.type.startswith("response.reasoning_text")]
    assert all(GPT_OSS_REASONING not in e.model_dump_json() for e in events)


def test_text_format_json_schema_is_enforced(live_daphne, users, gpt_oss, key):
    response = client(live_daphne, key).responses.create(
        model="gpt-oss-test",
        input=STRUCTURED_QUESTION,
        text={"format": {"type": "json_schema", "name": "city", "schema": STRUCTURED_SCHEMA, "strict": True}},
    )
    assert response.output_text == STRUCTURED_ANSWER
    jsonschema.validate(json.loads(response.output_text), STRUCTURED_SCHEMA)


def test_the_agents_sdk_runs_an_agent_over_the_responses_api(live_daphne, users, gpt_oss, key):
    """The real openai-agents package with its default model class (OpenAIResponsesModel)."""
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)
    cities = []

    @function_tool
    def get_weather(city: str) -> str:
        """The weather now in a city."""
        cities.append(city)
        return WEATHER_RESULT

    model = OpenAIResponsesModel(
        model="gpt-oss-test",
        openai_client=openai.AsyncOpenAI(base_url=f"{live_daphne.url}/api", api_key=key, max_retries=0),
    )
    agent = Agent(name="weather", instructions="Answer with the tool's facts.", model=model, tools=[get_weather])
    result = Runner.run_sync(agent, WEATHER_QUESTION)
    assert cities == ["Paris"], "the tool was really called"
    assert result.final_output == WEATHER_ANSWER


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"input": [{"type": "input_image", "image_url": "x"}]}, "input.0.type"),
        ({"tools": [{"type": "file_search", "vector_store_ids": ["vs_1"]}]}, "tools.0.type"),
        ({"include": ["file_search_call.results"]}, "include"),
        ({"input": [{"type": "function_call_output", "call_id": "call_x", "output": "{}"}]}, "input.0.call_id"),
        ({"text": {"format": {"type": "json_schema", "name": "x"}}}, "text"),
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"type": 12}}}}, "text"),
        ({"tool_choice": {"type": "function", "name": "nope"}, "tools": [TOOL]}, "tool_choice"),
        ({"input": [{"type": "reasoning", "summary": [], "encrypted_content": "bm90IGEgc2VhbA=="}]}, "input.0"),
        ({"background": True}, "background"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"metadata": {"k": 5}}, "metadata"),
        ({"previous_response_id": "resp_none"}, "previous_response_id"),
        ({"input": []}, "input"),
    ],
)
def test_bad_requests_are_errors_naming_the_field_and_change_nothing(asgi_api, users, key, change, param):
    from conversations.models import StoredResponse

    ensure_model_row("gpt-oss-test")
    body = {"model": "gpt-oss-test", "input": "What is it?", **change}
    response = asgi_api.post("/api/responses", key=key, json=body)
    assert response.status_code in (400, 404), response.content
    assert (response.json()["error"]["param"] or "").startswith(param), response.json()
    assert not ApiKey.objects.filter(requests__gt=0).exists() and not StoredResponse.objects.exists()


def test_a_key_that_saves_history_saves_a_responses_call_too(live_daphne, users, gpt_oss):
    from accounts.services import api_key_create
    from conversations.models import Conversation

    saving = api_key_create(user=users.alice, name="saver", save_history=True)[1]
    response = client(live_daphne, saving).responses.create(
        model="gpt-oss-test", instructions="Be brief.", input="What is it?"
    )
    conversation = Conversation.objects.get()
    assert conversation.owner == users.alice and conversation.system_prompt == "Be brief."
    question, reply = conversation.messages.order_by("pk")
    assert question.content == "What is it?"
    wait_for(lambda: type(reply).objects.get(pk=reply.pk).status == "done", 10, "the stored answer")
    reply.refresh_from_db()
    assert reply.content == response.output_text == GPT_OSS_ANSWER
