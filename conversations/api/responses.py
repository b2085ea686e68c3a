"""`POST /api/responses`, `GET` and `DELETE /api/responses/{id}`: OpenAI's Responses API over
the same admission, job, engine and follower as chat completions (answering.py).

A response is kept for its owner when `store` is true (OpenAI's default), after it ends:
`previous_response_id` continues from it, and only its owner can read or delete it
(another user's id is a 404, as a missing one). Reasoning leaves in clear only to those
Site settings let see it; sealed (sealing.py) to whoever asks for it, so that a stateless
client can hand it back on the next turn of a tool loop.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse

from accounts.models import SiteSettings
from conversations import admission
from conversations.api.answering import Answer, begin, collect
from conversations.api.auth import ApiCaller, authenticate
from conversations.api.builtin_items import BUILTIN_OF, unhonoured
from conversations.api.chat_completions import check_tools, read_json, save_call
from conversations.api.chat_request import ValidationError, first_error
from conversations.api.errors import ApiError
from conversations.api.handler import api_view
from conversations.api.protocol import json_response
from conversations.api.responses_protocol import (
    Deleted,
    ErrorOut,
    IncompleteDetails,
    ResponseObject,
    ResponseUsage,
    public_item,
)
from conversations.api.responses_request import (
    FunctionCallItem,
    FunctionCallOutputItem,
    MessageItem,
    ReasoningItem,
    ResponsesRequest,
    history,
)
from conversations.api.responses_stream import events, output_items
from conversations.api.sealing import unseal
from conversations.api.tool_calls import bad_call
from conversations.jobs import TurnJob
from conversations.models import StoredResponse
from conversations.selectors import tools_available
from inference_worker import presence
from inference_worker.jobs import Generation, Sampling
from inference_worker.models import ChatModel

# OpenAI's Responses fields chatweb does not honour, with the values that ask for nothing.
UNHONOURED: dict[str, tuple[Any, ...]] = {
    "background": (None, False),
    "conversation": (None,),
    "prompt": (None,),
    "max_tool_calls": (None,),
    "service_tier": (None, "auto", "default"),
    "context_management": (None,),
    "prompt_cache_retention": (None,),
    "prompt_cache_options": (None,),
    "stream_options": (None,),
}
SUPPORTED_ITEMS = (
    "message",
    "function_call",
    "function_call_output",
    "reasoning",
    "web_search_call",
    "code_interpreter_call",
)
TOOL_TYPES = ("function", *BUILTIN_OF)


@api_view("POST")
async def create_response(request: HttpRequest) -> HttpResponse:
    request_id = presence.new_request_id()
    begun = await begin(request_id, lambda: _admit(request, request_id))
    admitted = begun.admitted
    if admitted.body.stream:
        response = StreamingHttpResponse(events(begun, request_id, _keep), content_type="text/event-stream")
        response["Cache-Control"] = "no-cache"
        response["X-Accel-Buffering"] = "no"
        return response
    try:
        answer = await collect(begun, request_id)
    except ApiError as error:
        await sync_to_async(_keep)(admitted, [], {}, "failed", error.message, error.code)
        raise
    bad = bad_call(answer.tool_calls, admitted.body.function_tools())
    if bad is not None:
        await sync_to_async(_keep)(admitted, [], answer.end.get("usage") or {}, "failed", bad.message, bad.code)
        raise bad
    items = _items(answer, admitted)
    status = "incomplete" if answer.end.get("finish_reason") == "length" else "completed"
    await sync_to_async(_keep)(admitted, items, answer.end.get("usage") or {}, status)
    return json_response(admitted.view(items, status, answer.end.get("usage")))


@api_view("GET")
async def retrieve_response(request: HttpRequest, response_id: str) -> HttpResponse:
    return json_response(await sync_to_async(_retrieve)(request, response_id))


@api_view("DELETE")
async def delete_response(request: HttpRequest, response_id: str) -> HttpResponse:
    return json_response(await sync_to_async(_delete)(request, response_id))


async def response_detail(request: HttpRequest, response_id: str) -> HttpResponse:
    """GET or DELETE /api/responses/{id}, one path."""
    view = delete_response if request.method == "DELETE" else retrieve_response
    return await view(request, response_id)


response_detail.csrf_exempt = True


# --- up to the enqueue: one thread hop ---------------------------------------------------


@dataclass(slots=True)
class Admitted:
    caller: ApiCaller
    body: ResponsesRequest
    request_id: str
    items: list[dict]  # the whole input, previous responses' included, reasoning in clear
    show_reasoning: bool
    message_id: int | None = None
    created_at: int = field(default_factory=lambda: int(time.time()))

    @property
    def user_id(self) -> int:
        return self.caller.user.pk

    @property
    def model_name(self) -> str:
        return self.body.model

    @property
    def streaming(self) -> bool:
        return self.body.stream

    @property
    def response_id(self) -> str:
        return f"resp_{self.request_id}"

    def view(self, items: list[dict], status: str, usage: dict | None, error: ErrorOut | None = None):
        """The response as this caller sees it."""
        body = self.body
        seal_for = self.user_id if body.wants_sealed_reasoning() else None
        include = body.included()
        public = [public_item(i, show_reasoning=self.show_reasoning, seal_for=seal_for, include=include) for i in items]
        text = "".join(i["text"] for i in items if i["type"] == "message")
        return ResponseObject(
            id=self.response_id,
            created_at=self.created_at,
            status=status,
            model=body.model,
            output=public,
            output_text=text if status != "in_progress" else None,
            usage=ResponseUsage.of(usage) if usage is not None else None,
            error=error,
            incomplete_details=IncompleteDetails() if status == "incomplete" else None,
            **_echo(body),
        )


def _echo(body: ResponsesRequest) -> dict[str, Any]:
    """The request's settings a response carries back (and a stored one keeps)."""
    return {
        "instructions": body.instructions,
        "metadata": body.metadata or {},
        "tools": [t.model_dump(exclude_none=True) for t in body.tools or []],
        "tool_choice": body.tool_choice.model_dump() if hasattr(body.tool_choice, "model_dump") else body.choice(),
        "parallel_tool_calls": bool(body.parallel_tool_calls) if body.parallel_tool_calls is not None else True,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "previous_response_id": body.previous_response_id,
        "reasoning": body.reasoning.model_dump() if body.reasoning else {"effort": None, "summary": None},
        "text": {"format": body.text.format.model_dump(by_alias=True, exclude_none=True)}
        if body.text and body.text.format
        else {"format": {"type": "text"}},
        "store": body.store,
        "user": body.user,
    }


def _admit(request: HttpRequest, request_id: str) -> Admitted:
    site = SiteSettings.load()
    caller = authenticate(request, site)
    body = _parse(request)
    items = _resolve(body, caller)
    system_prompt, turns = history(items)
    if body.instructions:
        system_prompt = "\n\n".join(p for p in (body.instructions, system_prompt) if p.strip())
    if not turns or turns[-1].role not in ("user", "tool"):
        raise ApiError(
            400,
            "The input must end with a user message or a function_call_output.",
            param="input",
            code="invalid_input",
        )
    model = ChatModel.objects.filter(name=body.model, enabled=True).first()
    if model is None:
        raise ApiError(404, f"The model '{body.model}' does not exist.", param="model", code="model_not_found")
    check_tools(bool(body.tools) or any(i["type"] != "message" for i in items), model)
    builtin = body.builtin_tools()
    available = tools_available(model, site)
    for name in builtin:
        if name not in available:
            kind = next(t.type for t in body.tools or [] if BUILTIN_OF.get(t.type) == name)
            i = next(n for n, t in enumerate(body.tools or []) if t.type == kind)
            message = f"The {kind} tool is not enabled for '{model.name}' on this server (an admin turns it on)."
            raise ApiError(403, message, param=f"tools.{i}.type", code="tool_not_enabled")
    admitted = Admitted(caller, body, request_id, items, site.may_see_reasoning(caller.user))

    def store(sampling: Sampling) -> TurnJob:
        job = TurnJob(
            generation=Generation(
                request_id=request_id,
                model=model.name,
                system_prompt=system_prompt,
                messages=turns,
                params=sampling,
                tools=body.function_tools(),
                builtin_tools=builtin,
                tool_choice=body.choice(),
                response_format=body.response_format(),
                logprobs=body.logprobs_wanted(),
            ),
            user_id=caller.user.pk,
            api_key_id=caller.key.pk if caller.key else None,
        )
        if caller.key is not None and caller.key.save_history:
            job.message_id = save_call(caller, model, request_id, sampling, system_prompt, turns)
        return job

    try:
        job = admission.admit(
            user=caller.user, model=model, sampling=body.sampling(), request_id=request_id, store=store, site=site
        )
    except admission.SendError as exc:
        param = {"max_tokens": "max_output_tokens"}.get(exc.param, exc.param)
        raise ApiError(exc.status, exc.message, param=param, code=exc.code, retry_after=exc.retry_after) from exc
    admitted.message_id = job.message_id
    return admitted


def _parse(request: HttpRequest) -> ResponsesRequest:
    raw = read_json(request)
    field = next((f for f, nothing in UNHONOURED.items() if raw.get(f) not in nothing), None)
    if field is not None:
        message = f"'{field}' is not supported by chatweb; leave it out of the request (see the README's field table)."
        raise ApiError(400, message, param=field, code="unsupported_parameter")
    for i, item in enumerate(raw.get("input") if isinstance(raw.get("input"), list) else []):
        kind = item.get("type", "message") if isinstance(item, dict) else None
        if kind not in SUPPORTED_ITEMS:
            message = f"Input items of type {kind!r} are not supported; use {', '.join(SUPPORTED_ITEMS)}."
            raise ApiError(400, message, param=f"input.{i}.type", code="unsupported_value")
    for i, tool in enumerate(raw.get("tools") if isinstance(raw.get("tools"), list) else []):
        if isinstance(tool, dict) and tool.get("type") not in TOOL_TYPES:
            message = f"Tools of type {tool.get('type')!r} are not supported here; use {', '.join(TOOL_TYPES)}."
            raise ApiError(400, message, param=f"tools.{i}.type", code="unsupported_value")
        if isinstance(tool, dict):
            unhonoured(i, tool)
    try:
        return ResponsesRequest.model_validate(raw)
    except ValidationError as exc:
        message, param = first_error(exc)
        if param and param.startswith("input.") and param.split(".")[1].isdigit():
            param = ".".join(param.split(".")[:2])  # the item, not the union member pydantic tried
        raise ApiError(400, message, param=param, code="invalid_value") from None


def _resolve(body: ResponsesRequest, caller: ApiCaller) -> list[dict]:
    """The whole input as plain items: the previous response's (its input and output), then
    this request's, reasoning opened (from its text, its seal, or the caller's stored
    response it came from)."""
    items: list[dict] = []
    if body.previous_response_id:
        previous = _owned(body.previous_response_id, caller, param="previous_response_id")
        items = [*previous.input_items, *previous.output]
    calls = {i["call_id"] for i in items if i["type"] == "function_call"}
    for n, item in enumerate(body.items()):
        if isinstance(item, MessageItem):
            items.append({"type": "message", "role": item.role, "text": item.text()})
        elif isinstance(item, FunctionCallItem):
            calls.add(item.call_id)
            items.append({"type": "function_call", "id": item.id or "", "call_id": item.call_id,
                          "name": item.name, "arguments": item.arguments})  # fmt: skip
        elif isinstance(item, FunctionCallOutputItem):
            if item.call_id not in calls:
                raise ApiError(
                    400,
                    f"No function_call with call_id {item.call_id!r} comes before this output.",
                    param=f"input.{n}.call_id",
                    code="invalid_value",
                )
            items.append({"type": "function_call_output", "call_id": item.call_id, "output": item.text()})
        elif isinstance(item, ReasoningItem):
            items.append({"type": "reasoning", "id": item.id or "", "text": _opened(item, caller, n)})
        # a web_search_call or code_interpreter_call handed back ran inside its own answer: nothing to add
    return items


def _opened(item: ReasoningItem, caller: ApiCaller, n: int) -> str:
    if item.encrypted_content:
        text = unseal(item.encrypted_content, caller.user.pk)
        if text is None:
            raise ApiError(
                400,
                "This encrypted_content cannot be opened here (sealed by another server or key, or for another user).",
                param=f"input.{n}.encrypted_content",
                code="invalid_encrypted_content",
            )
        return text
    if item.content:
        return item.text()
    # An id this server gave: the reasoning of the caller's own stored response.
    if item.id and item.id.startswith("rs_"):
        row = StoredResponse.objects.filter(pk=f"resp_{item.id.removeprefix('rs_')}", owner=caller.user).first()
        if row is not None:
            return next((i["text"] for i in row.output if i["type"] == "reasoning" and i["id"] == item.id), "")
    return ""


def _owned(response_id: str, caller: ApiCaller, *, param: str | None = None) -> StoredResponse:
    row = StoredResponse.objects.filter(pk=response_id, owner=caller.user).first()
    if row is None:  # another user's is as missing as one that never was
        raise ApiError(404, f"No response found with id '{response_id}'.", param=param, code="response_not_found")
    return row


# --- the answer ----------------------------------------------------------------------------


def _items(answer: Answer, admitted: Admitted) -> list[dict]:
    """A finished answer as kept output items, in the order a stream gives them: its
    reasoning, each built-in tool call, more reasoning, its text, its function calls."""
    return output_items(admitted, answer.deltas, answer.end)


def _keep(
    admitted: Admitted, items: list[dict], usage: dict, status: str, error: str = "", code: str | None = None
) -> None:
    if not admitted.body.store:
        return
    StoredResponse.objects.create(
        id=admitted.response_id,
        owner=admitted.caller.user,
        api_key=admitted.caller.key,
        model=admitted.body.model,
        status=status,
        request=_echo(admitted.body),
        input_items=admitted.items,
        output=items,
        usage=usage,
        error={"code": code or "engine_error", "message": error} if status == "failed" else None,
    )


def _retrieve(request: HttpRequest, response_id: str) -> ResponseObject:
    site = SiteSettings.load()
    caller = authenticate(request, site)
    row = _owned(response_id, caller)
    show = site.may_see_reasoning(caller.user)
    include = request.GET.getlist("include") or request.GET.getlist("include[]")
    seal_for = caller.user.pk if "reasoning.encrypted_content" in include else None
    return ResponseObject(
        id=row.id,
        created_at=int(row.created_at.timestamp()),
        status=row.status,
        model=row.model,
        output=[public_item(i, show_reasoning=show, seal_for=seal_for, include=frozenset(include)) for i in row.output],
        output_text="".join(i["text"] for i in row.output if i["type"] == "message"),
        usage=ResponseUsage.of(row.usage),
        error=ErrorOut(**row.error) if row.error else None,
        incomplete_details=IncompleteDetails() if row.status == "incomplete" else None,
        **row.request,
    )


def _delete(request: HttpRequest, response_id: str) -> Deleted:
    caller = authenticate(request, SiteSettings.load())
    _owned(response_id, caller).delete()
    return Deleted(id=response_id)
