"""`POST /api/chat/completions`: OpenAI's chat completions, through the same queue, worker and
engine as the chat.

The view follows the reply group of its request on the channel layer, the way the websocket
consumer does, through the one follower (conversations.follower), and answers in OpenAI's
shapes (server-sent events when streaming). A client that disconnects mid-stream stops its
request in the engine. Everything up to the enqueue (the caller, the body, the one
admission every surface shares) is one thread hop: each hop is a thread round trip on the
way to the first token (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.models import SiteSettings
from conversations import admission, services
from conversations.api.answering import STOPPED, Answer, Begun, begin, collect, was_stopped
from conversations.api.auth import ApiCaller, authenticate
from conversations.api.chat_request import ChatCompletionRequest, ValidationError, first_error, unhonoured
from conversations.api.errors import ApiError
from conversations.api.handler import api_view, too_large
from conversations.api.protocol import (
    AssistantMessage,
    ChatCompletion,
    Choice,
    ChoiceLogprobs,
    ChunkEncoder,
    DeltaMessage,
    FunctionCallOut,
    ToolCallOut,
    Usage,
    json_response,
)
from conversations.api.reply_stream import abandon
from conversations.api.tool_calls import CallStream, bad_call
from conversations.jobs import TurnJob
from conversations.models import Conversation, Message
from inference_worker import presence
from inference_worker.jobs import Generation, HistoryMessage, Sampling
from inference_worker.models import ChatModel


@api_view("POST")
async def create_chat_completion(request: HttpRequest) -> HttpResponse:
    request_id = presence.new_request_id()
    begun = await begin(request_id, lambda: _admit(request, request_id))
    admitted = begun.admitted
    body = admitted.body
    completion_id, created = f"chatcmpl-{request_id}", int(time.time())
    if not body.stream:
        answer = await collect(begun, request_id)
        bad = bad_call(answer.tool_calls, body.function_tools())
        if bad is not None:
            raise bad
        return json_response(
            _completion(answer, completion_id, created, body.model, admitted.show_reasoning, bool(body.logprobs))
        )
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    chunks = ChunkEncoder(completion_id, created, body.model)
    response = StreamingHttpResponse(
        _sse(begun, chunks, request_id, include_usage, admitted.show_reasoning, body.function_tools()),
        content_type="text/event-stream",
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


# --- up to the enqueue: one thread hop ---------------------------------------------------


@dataclass(frozen=True, slots=True)
class Admitted:
    caller: ApiCaller
    body: ChatCompletionRequest
    message_id: int | None  # the queued answer of a key that saves history
    show_reasoning: bool

    @property
    def user_id(self) -> int:
        return self.caller.user.pk

    @property
    def model_name(self) -> str:
        return self.body.model

    @property
    def streaming(self) -> bool:
        return self.body.stream


def _admit(request: HttpRequest, request_id: str) -> Admitted:
    """Everything up to the enqueue, in one thread hop (the ORM and Redis): the caller, then
    the body, then the one admission every surface shares."""
    site = SiteSettings.load()
    caller = authenticate(request, site)
    body = _parse(request)
    history = body.history()
    if not history or history[-1].role not in ("user", "tool"):
        raise ApiError(
            400, "The last message must be the user's or a tool's.", param="messages", code="invalid_messages"
        )
    model = ChatModel.objects.filter(name=body.model, enabled=True).first()
    if model is None:
        raise ApiError(404, f"The model '{body.model}' does not exist.", param="model", code="model_not_found")
    check_tools(bool(body.tools) or any(m.role == "tool" or m.tool_calls for m in body.messages), model)
    _check_choices(body, model)

    def store(sampling: Sampling) -> TurnJob:
        job = TurnJob(
            generation=Generation(
                request_id=request_id,
                model=model.name,
                system_prompt=body.system_prompt(),
                messages=history,
                params=sampling,
                tools=body.function_tools(),
                tool_choice=body.choice(),
                response_format=body.response_format.for_job() if body.response_format else None,
                logprobs=body.logprobs_wanted(),
                n=body.n or 1,
            ),
            user_id=caller.user.pk,
            api_key_id=caller.key.pk if caller.key else None,
        )
        if caller.key is not None and caller.key.save_history:
            job.message_id = save_call(caller, model, request_id, sampling, body.system_prompt(), history)
        return job

    try:
        job = admission.admit(
            user=caller.user,
            model=model,
            sampling=body.sampling(),
            request_id=request_id,
            store=store,
            site=site,
            choices=body.n or 1,
        )
    except admission.SendError as exc:
        raise ApiError(exc.status, exc.message, param=exc.param, code=exc.code, retry_after=exc.retry_after) from exc
    return Admitted(caller, body, job.message_id, site.may_see_reasoning(caller.user))


def check_tools(uses_tools: bool, model: ChatModel) -> None:
    """Functions need a prompt format that carries them (harmony: gpt-oss)."""
    if uses_tools and model.prompt_format != "harmony":
        raise ApiError(
            400,
            f"{model.display_name} cannot be given functions (its prompt format, {model.prompt_format}, has no "
            "place for them); use a gpt-oss model.",
            param="tools",
            code="unsupported_parameter",
        )


def _check_choices(body: ChatCompletionRequest, model: ChatModel) -> None:
    """n within the server's limit; on gpt-oss not where the engine steers the answer (each
    choice would need its own second step)."""
    n = body.n or 1
    if n > settings.API_MAX_CHOICES:
        raise ApiError(400, f"n is at most {settings.API_MAX_CHOICES} on this server.", param="n", code="invalid_value")
    forced = body.choice() not in ("auto", "none") or any(t.function.strict for t in body.tools or [])
    steered = forced or (body.response_format is not None and body.response_format.type != "text")
    if n > 1 and model.prompt_format == "harmony" and steered:
        raise ApiError(
            400,
            f"n > 1 cannot be combined with response_format, a forced tool_choice or strict functions on "
            f"{model.display_name}; ask for one choice.",
            param="n",
            code="unsupported_value",
        )


def _parse(request: HttpRequest) -> ChatCompletionRequest:
    """The body, read once the caller is known (a caller without a key learns nothing of it)."""
    raw = read_json(request)
    field = unhonoured(raw)
    if field is not None:
        message = f"'{field}' is not supported by chatweb; leave it out of the request (see the README's field table)."
        raise ApiError(400, message, param=field, code="unsupported_parameter")
    try:
        return ChatCompletionRequest.model_validate(raw)
    except ValidationError as exc:
        message, param = first_error(exc)
        raise ApiError(400, message, param=param, code="invalid_value") from None


def read_json(request: HttpRequest) -> dict:
    try:
        raw = json.loads(request.body)
    except RequestDataTooBig:  # a body larger than its Content-Length said
        raise too_large() from None
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise ApiError(400, "The body is not valid JSON.", code="invalid_json") from None
    if not isinstance(raw, dict):
        raise ApiError(400, "The body must be a JSON object.", code="invalid_json")
    return raw


def save_call(
    caller: ApiCaller,
    model: ChatModel,
    request_id: str,
    sampling: Sampling,
    system_prompt: str,
    history: list[HistoryMessage],
) -> int:
    """A key that saves history: the call becomes a conversation of the key's owner; the worker
    stores the answer into its queued assistant message, as for the chat."""
    conversation = Conversation.objects.create(
        owner=caller.user,
        model=model,
        title=services.title_from_text(history[-1].content) or "API call",
        title_auto=False,
        system_prompt=system_prompt,
        params=sampling.given(),
    )
    parent = None
    for message in history:
        if message.role == "tool":  # a conversation keeps text; a tool's result has no place in it yet
            continue
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=message.role, content=message.content
        )
    return services.answer_placeholder(conversation, parent, model, request_id).pk


# --- answering ----------------------------------------------------------------------------


def _finish_reason(event: dict) -> str:
    reason = event.get("finish_reason") or "stop"
    return reason if reason in ("stop", "length", "tool_calls") else "stop"


def _choice(index: int, answer: dict, show_reasoning: bool, wants_logprobs: bool) -> Choice:
    """One choice from its parts: content, reasoning, tool_calls, logprobs, finish_reason."""
    reasoning = (answer.get("reasoning") if show_reasoning else None) or None
    calls = [
        ToolCallOut(id=c["id"], function=FunctionCallOut(name=c["name"], arguments=c["arguments"]))
        for c in answer.get("tool_calls") or []
    ]
    message = AssistantMessage(
        content=answer.get("content") or (None if calls else ""),
        reasoning_content=reasoning,
        reasoning=reasoning,
        tool_calls=calls or None,
    )
    logprobs = ChoiceLogprobs(content=answer.get("logprobs") or []) if wants_logprobs else None
    return Choice(index=index, message=message, logprobs=logprobs, finish_reason=_finish_reason(answer))


def _completion(
    answer: Answer, completion_id: str, created: int, model: str, show_reasoning: bool, wants_logprobs: bool
) -> ChatCompletion:
    first = {
        "content": answer.content,
        "reasoning": answer.reasoning,
        "tool_calls": answer.tool_calls,
        "logprobs": answer.logprobs,
        "finish_reason": answer.end.get("finish_reason"),
    }
    choices = [first, *(answer.end.get("choices") or [])]  # n > 1: the others came whole with the end
    return ChatCompletion(
        id=completion_id,
        created=created,
        model=model,
        choices=[_choice(i, c, show_reasoning, wants_logprobs) for i, c in enumerate(choices)],
        usage=Usage.of(answer.end.get("usage")),
    )


async def _sse(
    begun: Begun,
    chunks: ChunkEncoder,
    request_id: str,
    include_usage: bool,
    show_reasoning: bool,
    tools: list | None = None,
):
    finished = False
    call = CallStream()
    stream, events = begun.stream, begun.replies
    try:
        yield chunks.delta(DeltaMessage(role="assistant", content=""))
        pending = [begun.first]
        while True:
            event = pending.pop() if pending else await anext(events, None)
            if event is None:
                break
            kind = event.get("event")
            if kind == "delta":
                reasoning = (event.get("reasoning") if show_reasoning else None) or None
                content = event.get("content") or None
                logprobs = event.get("logprobs")
                if reasoning or content or logprobs:
                    content = content or ("" if logprobs else None)  # a special token's logprob: no text
                    delta = DeltaMessage(reasoning_content=reasoning, reasoning=reasoning, content=content)
                    yield chunks.delta(delta, logprobs)
                for piece in call.pieces(event):
                    yield chunks.delta(DeltaMessage(tool_calls=[piece]))
            elif kind == "waiting":
                yield b": waiting\n\n"  # an SSE comment: clients skip it, proxies see the stream alive
            elif kind == "done" and not was_stopped(event):
                for piece in call.rest(event.get("tool_calls") or []):
                    yield chunks.delta(DeltaMessage(tool_calls=[piece]))
                bad = bad_call(event.get("tool_calls") or [], tools)
                if bad is not None:
                    yield bad.event()
                    break
                for index, other in enumerate(event.get("choices") or [], start=1):  # n > 1: whole, at the end
                    for chunk in chunks.whole_choice(index, _choice(index, other, show_reasoning, True)):
                        yield chunk
                yield chunks.finish(_finish_reason(event))
                if include_usage:
                    yield chunks.usage(Usage.of(event.get("usage")))
                break
            elif kind in ("error", "done"):  # an error, or an answer stopped before it was complete
                event = STOPPED if kind == "done" else event
                # Past the status line every error is an api_error; its code tells which.
                yield ApiError(500, event.get("message", ""), type="api_error", code=event.get("code")).event()
                break
        finished = True
        yield b"data: [DONE]\n\n"
    finally:
        if finished:
            await stream.close()
        else:  # the client disconnected (Django cancels the response) or the stream broke
            await abandon(stream, request_id)
