"""OpenAI-compatible JSON API (/api/ and /api/v1/). One error shape for every error.

`POST /api/chat/completions` goes through the same queue, worker and engine as the
chat: the view follows the reply group of its request on the channel layer, the
way the websocket consumer does, and answers in OpenAI's shapes (server-sent events
when streaming). A client that disconnects mid-stream stops its request in the
engine.

Under daphne, /api/ is served by `ApiHandler` (chatweb/asgi.py): Django's ASGI handler
without the browser's middleware chain, so the views authenticate by themselves
(a key, or for reads the session cookie) and each request's synchronous work (the ORM,
Redis, Celery) is batched into as few thread hops as possible: each hop is a thread
round trip on the way to the first token (docs/PERFORMANCE.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from functools import wraps
from importlib import import_module
from typing import Any

import redis
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import get_user
from django.core.exceptions import RequestDataTooBig
from django.core.handlers.asgi import ASGIHandler
from django.core.handlers.exception import convert_exception_to_response
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.middleware.security import SecurityMiddleware
from django.urls import path
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt

from accounts.models import SiteSettings, touch_last_active
from accounts.services import api_key_find
from conversations import admission, services
from conversations.api import protocol
from conversations.follower import (
    LOST,
    RESYNC_SECONDS,
    SILENCE_BEFORE_CHECK,
    Follower,
    check_after_silence,
    stored_text,
    whole_text,
)
from conversations.jobs import TurnJob
from conversations.models import Conversation, Message
from inference_worker import presence
from inference_worker.events import ENDS, Event
from inference_worker.jobs import Generation, Sampling
from inference_worker.models import ChatModel

ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_denied",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    503: "service_unavailable",
}
MAX_BODY_BYTES = settings.DATA_UPLOAD_MAX_MEMORY_SIZE  # Django's own cap on request.body (2.5 MB)
# After each silence (SILENCE_BEFORE_CHECK) a stream that is still served says so to its
# client with an SSE comment; one still queued after the first such silence starts its
# response, so that no proxy between (nginx waits 60 s by default) or client gives up on
# a request that waits its turn behind others.
WAITING = {"event": "waiting"}  # _events: a silence, and the request is still served


def api_error(
    status: int,
    message: str,
    *,
    type: str | None = None,
    param: str | None = None,
    code: str | None = None,
    retry_after: int | None = None,
) -> JsonResponse:
    body = {
        "error": {
            "message": message,
            "type": type or ERROR_TYPES.get(status, "api_error"),
            "param": param,
            "code": code,
        }
    }
    response = JsonResponse(body, status=status)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _too_large() -> JsonResponse:
    return api_error(413, f"The request body is over {MAX_BODY_BYTES:,} bytes.", code="body_too_large")


class ApiCaller:
    def __init__(self, user, key=None) -> None:
        self.user, self.key = user, key


def _session_user(request: HttpRequest):
    """The browser's signed-in user, read from its session cookie the way Django's session and
    authentication middleware would (ApiHandler runs neither)."""
    engine = import_module(settings.SESSION_ENGINE)
    request.session = engine.SessionStore(request.COOKIES.get(settings.SESSION_COOKIE_NAME))
    return get_user(request)


def _authenticate(request: HttpRequest, site: SiteSettings | None = None) -> ApiCaller | JsonResponse:
    """A bearer API key, or (for reads only) a signed-in session. `site`: the settings row when
    the caller has read it already (a key needs it; a session does not)."""
    header = request.headers.get("Authorization", "")
    if header:
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer" or not key.strip():
            return api_error(401, "Send the key as 'Authorization: Bearer sk-cw-...'.", code="invalid_api_key")
        row = api_key_find(key.strip())
        if row is None:
            return api_error(401, "Incorrect API key provided.", code="invalid_api_key")
        if row.revoked is not None:
            return api_error(401, "This API key was revoked.", code="invalid_api_key")
        if not row.is_live:
            return api_error(401, "This API key has expired.", code="expired_api_key")
        if not (site or SiteSettings.load()).api_keys_enabled:
            return api_error(403, "API keys are turned off on this site; ask an admin.", code="api_keys_disabled")
        caller = ApiCaller(row.user, row)
    else:
        # A signed-in browser may read (GET /api/models); anything that spends the GPU needs
        # a key: the views are csrf_exempt, so a session must not be enough for a POST.
        user = _session_user(request) if request.method == "GET" else None
        if user is None or not user.is_authenticated:
            return api_error(
                401,
                "You didn't provide an API key. Send it as 'Authorization: Bearer sk-cw-...'.",
                code="missing_api_key",
            )
        caller = ApiCaller(user)
    user = caller.user
    if not user.is_active:
        return api_error(403, "This account is deactivated.", code="account_disabled")
    if not user.is_approved:
        return api_error(403, "Your account is awaiting approval by an administrator.", code="account_pending")
    touch_last_active(user)
    return caller


def api_view(method: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Method and size checks shared by every API view (all async; each authenticates inside its
    own first thread hop, with `_authenticate`)."""

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        @csrf_exempt
        @wraps(view)
        async def wrapper(request: HttpRequest, *args, **kwargs):
            if request.method != method:
                return api_error(405, f"Use {method}.", code="method_not_allowed")
            length = request.headers.get("Content-Length", "0")
            if not re.fullmatch(r"[0-9]{1,15}", length):
                return api_error(400, "The Content-Length header is not a number.", code="invalid_request")
            if int(length) > MAX_BODY_BYTES:
                return _too_large()
            return await view(request, *args, **kwargs)

        return wrapper

    return decorate


@api_view("GET")
async def models(request: HttpRequest) -> JsonResponse:
    return await sync_to_async(_models)(request)


def _models(request: HttpRequest) -> JsonResponse:
    caller = _authenticate(request)
    if isinstance(caller, HttpResponse):
        return caller
    data = [
        {
            "id": m.name,
            "object": "model",
            "created": int(m.created.timestamp()),
            "owned_by": "chatweb",
            "max_model_len": m.context_length,
        }
        for m in ChatModel.objects.filter(enabled=True).order_by("name")
    ]
    return JsonResponse({"object": "list", "data": data})


# --- chat completions --------------------------------------------------------------


class ReplyStream:
    """The events of one request, from its reply group on the channel layer."""

    def __init__(self, request_id: str) -> None:
        self.group = presence.reply_group(request_id)
        self.layer = get_channel_layer()
        self.channel: str | None = None
        self.pending: asyncio.Task | None = None
        self.opening: asyncio.Future | None = None

    def open(self) -> None:
        """Subscribe, in the background: `await ready()` before the request is enqueued."""
        self.opening = asyncio.ensure_future(self._subscribe())

    async def _subscribe(self) -> None:
        with contextlib.suppress(OSError, redis.RedisError):  # only a speed-up: new_channel says if Redis is away
            await presence.keep_layer_listening(self.layer)
        self.channel = await self.layer.new_channel()
        await self.layer.group_add(self.group, self.channel)

    async def ready(self) -> None:
        await asyncio.shield(self.opening)

    async def next(self, timeout: float) -> dict | None:
        """The next event, or None after `timeout` seconds of silence (the wait goes on next call)."""
        if self.pending is None:
            self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
        done, _ = await asyncio.wait({self.pending}, timeout=timeout)
        if not done:
            return None
        event, self.pending = self.pending.result(), None
        return event

    async def close(self) -> None:
        if self.opening is not None:  # a subscription still on its way must not outlive us
            with contextlib.suppress(Exception):
                await asyncio.shield(self.opening)
        if self.channel is None:
            return
        try:
            await self.layer.group_discard(self.group, self.channel)
        except Exception:  # noqa: BLE001 - the subscription goes with the connection anyway
            pass
        # A cancelled receive() is how the pub/sub layer drops a channel's subscription;
        # one that returns at once (a buffered event) must be followed by another.
        for _ in range(1000):
            if self.pending is None:
                self.pending = asyncio.ensure_future(self.layer.receive(self.channel))
                await asyncio.sleep(0)
            if not self.pending.done():
                break
            self.pending = None
        if self.pending is not None:
            self.pending.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self.pending
            self.pending = None


def _admit(
    request: HttpRequest, body: protocol.ChatCompletionRequest | JsonResponse, request_id: str
) -> dict | JsonResponse:
    """Everything up to the enqueue, in one thread hop (the ORM and Redis): the caller, then
    the body's own error if it had one, then the one admission every surface shares."""
    site = SiteSettings.load()
    caller = _authenticate(request, site)
    if isinstance(caller, HttpResponse):
        return caller
    request.api_caller = caller
    if isinstance(body, HttpResponse):
        return body
    history = body.history()
    if not history or history[-1].role != "user":
        return api_error(400, "The last message must be from the user.", param="messages", code="invalid_messages")
    model = ChatModel.objects.filter(name=body.model, enabled=True).first()
    if model is None:
        return api_error(404, f"The model '{body.model}' does not exist.", param="model", code="model_not_found")

    def store(sampling: Sampling) -> TurnJob:
        job = TurnJob(
            generation=Generation(
                request_id=request_id,
                model=model.name,
                system_prompt=body.system_prompt(),
                messages=history,
                params=sampling,
            ),
            user_id=caller.user.pk,
            api_key_id=caller.key.pk if caller.key else None,
        )
        if caller.key is not None and caller.key.save_history:
            job.message_id = _save_call(caller, body, model, request_id, sampling)
        return job

    try:
        job = admission.admit(
            user=caller.user, model=model, sampling=body.sampling(), request_id=request_id, store=store, site=site
        )
    except admission.SendError as exc:
        return api_error(exc.status, exc.message, param=exc.param, code=exc.code, retry_after=exc.retry_after)
    return {"message_id": job.message_id, "show_reasoning": site.may_see_reasoning(caller.user)}


def _save_call(
    caller: ApiCaller, body: protocol.ChatCompletionRequest, model: ChatModel, request_id: str, sampling: Sampling
) -> int:
    """A key that saves history: the call becomes a conversation of the key's owner; the worker
    stores the answer into its queued assistant message, as for the chat."""
    history = body.history()
    conversation = Conversation.objects.create(
        owner=caller.user,
        model=model,
        title=services.title_from_text(history[-1].content) or "API call",
        title_auto=False,
        system_prompt=body.system_prompt(),
        params=sampling.given(),
    )
    parent = None
    for message in history:
        parent = Message.objects.create(
            conversation=conversation, parent=parent, role=message.role, content=message.content
        )
    return services.answer_placeholder(conversation, parent, model, request_id).pk


def _chunk(base: dict, delta: dict, finish_reason: str | None = None) -> bytes:
    payload = {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}]}
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n".encode()


def _usage(event: dict) -> dict:
    usage = event.get("usage") or {}
    prompt, completion = usage.get("prompt_tokens", 0), usage.get("completion_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "completion_tokens_details": {"reasoning_tokens": usage.get("reasoning_tokens", 0)},
    }


def _finish_reason(event: dict) -> str:
    reason = event.get("finish_reason") or "stop"
    return reason if reason in ("stop", "length") else "stop"


def _was_stopped(event: dict) -> bool:
    return event.get("event") == "done" and event.get("status") == "stopped"


STOPPED = {
    "event": "error",
    "code": "request_aborted",
    "message": "The request was stopped before the answer was complete (stopped in the chat, or its worker shut down).",
}


def _engine_error(event: dict) -> JsonResponse:
    if event.get("code") == "context_length_exceeded":
        return api_error(400, event.get("message", ""), param="messages", code="context_length_exceeded")
    if event.get("code") in ("worker_lost", "no_worker", "queue_down", "request_aborted", "stream_lost"):
        return api_error(503, event.get("message", ""), code=event["code"], retry_after=10)
    return api_error(500, event.get("message", "The model failed."), code=event.get("code") or "engine_error")


async def _events(stream: ReplyStream, user_id: int, follower: Follower) -> AsyncIterator[dict]:
    """The request's events until done / error, through the one follower (conversations.follower):
    in order and whole, a silent dead worker turned into an error event; where nothing can
    mend a stream that lost events, it ends with a stream_lost error rather than a gap."""
    while True:
        event = await stream.next(RESYNC_SECONDS if follower.resyncing else SILENCE_BEFORE_CHECK)
        if event is None:
            if follower.overdue():  # no snapshot came: a saved call's stored text, else wait for the end
                stored = await sync_to_async(stored_text)(follower)
                if stored is not None:
                    mended = follower.mend(stored)
                    for out in mended or [LOST]:
                        yield out
                    if mended is None:
                        return
                    continue
            if not follower.silent():
                continue
            try:
                ending = await sync_to_async(check_after_silence)(follower, user_id=user_id)
            except (OSError, redis.RedisError):
                yield {"event": Event.ERROR, "code": "queue_down", "message": "The queue became unreachable."}
                return
            if ending is None:
                yield WAITING
                continue
            if ending["event"] == "ended":  # it ended, and its end was lost on the way
                for out in follower.finish(ending["whole"], ending["end"]) or [LOST]:
                    yield out
                return
            yield ending
            return
        passed = follower.take(event)
        if passed is None:  # the end came, but deltas before it were lost
            whole, end = await sync_to_async(whole_text)(follower)
            for out in (follower.finish(whole, end) if end is not None else None) or [LOST]:
                yield out
            return
        if follower.held == [event]:  # a gap, just now: ask the worker for its text so far
            with contextlib.suppress(OSError, redis.RedisError):  # else: mended at the end, from its outcome
                await sync_to_async(presence.request_snapshot)(follower.request_id)
        for out in passed:
            yield out
            if out.get("event") in ENDS:
                return


def _parse(request: HttpRequest) -> protocol.ChatCompletionRequest | JsonResponse:
    """The body, or the 400 / 413 to answer once the caller is known (no I/O: on the event loop)."""
    try:
        raw = json.loads(request.body)
    except RequestDataTooBig:  # a body larger than its Content-Length said
        return _too_large()
    except (ValueError, UnicodeDecodeError, RecursionError):
        return api_error(400, "The body is not valid JSON.", code="invalid_json")
    if not isinstance(raw, dict):
        return api_error(400, "The body must be a JSON object.", code="invalid_json")
    try:
        return protocol.ChatCompletionRequest.model_validate(raw)
    except protocol.ValidationError as exc:
        message, param = protocol.first_error(exc)
        return api_error(400, message, param=param, code="invalid_value")


@api_view("POST")
async def chat_completions(request: HttpRequest) -> HttpResponse:
    body = _parse(request)
    request_id = presence.new_request_id()
    stream = ReplyStream(request_id)
    stream.open()
    try:
        await stream.ready()  # subscribed before the admission enqueues: the first events must find us
        prepared = await sync_to_async(_admit)(request, body, request_id)
    except BaseException as exc:
        await stream.close()
        if isinstance(exc, OSError | redis.RedisError):
            return api_error(503, "The queue is unreachable; try again shortly.", code="queue_down", retry_after=5)
        raise
    if isinstance(prepared, HttpResponse):
        await stream.close()
        return prepared
    follower = Follower(request_id, model=body.model, message_id=prepared["message_id"])
    events = _events(stream, request.api_caller.user.pk, follower)
    base = {"id": f"chatcmpl-{request_id}", "object": "chat.completion.chunk", "created": int(time.time())}
    base["model"] = body.model
    show_reasoning = prepared["show_reasoning"]

    # Until the engine starts, errors can still be proper HTTP errors; a stream still
    # queued after SILENCE_BEFORE_CHECK starts anyway, and reports a later error in-stream.
    first = None
    opening = ("start", "delta", "done", "error") + (("waiting",) if body.stream else ())
    try:
        async for event in events:
            if event.get("event") in opening:
                first = event
                break
    except BaseException:
        await _abandon(stream, request_id)
        raise
    if first is None or first.get("event") == "error":
        await stream.close()
        return _engine_error(first or {"code": "engine_error"})
    if not body.stream:
        return await _collect(stream, events, first, base, request_id, show_reasoning)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    response = StreamingHttpResponse(
        _sse(stream, events, first, base, request_id, include_usage, show_reasoning), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    return response


async def _abandon(stream: ReplyStream, request_id: str) -> None:
    """The client went away: stop the request in the engine."""
    try:
        with contextlib.suppress(OSError, redis.RedisError):
            await sync_to_async(presence.request_stop)(request_id)
    finally:
        await stream.close()


async def _collect(stream, events, first: dict, base: dict, request_id: str, show_reasoning: bool) -> JsonResponse:
    content, reasoning, final = [], [], first
    try:
        pending = [first]
        while True:
            event = pending.pop() if pending else await anext(events, None)
            if event is None:
                break
            if event.get("event") == "delta":
                content.append(event.get("content", ""))
                reasoning.append(event.get("reasoning", ""))
            if event.get("event") in ("done", "error"):
                final = STOPPED if _was_stopped(event) else event
                break
    except BaseException:
        await _abandon(stream, request_id)
        raise
    await stream.close()
    if final.get("event") == "error":
        return _engine_error(final)
    message: dict[str, Any] = {"role": "assistant", "content": "".join(content)}
    if show_reasoning and any(reasoning):
        message["reasoning_content"] = message["reasoning"] = "".join(reasoning)
    return JsonResponse(
        {
            **base,
            "object": "chat.completion",
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": _finish_reason(final)}],
            "usage": _usage(final),
        }
    )


async def _sse(stream, events, first: dict, base: dict, request_id: str, include_usage: bool, show_reasoning: bool):
    finished = False
    try:
        yield _chunk(base, {"role": "assistant", "content": ""})
        pending = [first]
        while True:
            event = pending.pop() if pending else await anext(events, None)
            if event is None:
                break
            kind = event.get("event")
            if kind == "delta":
                delta = {}
                if show_reasoning and event.get("reasoning"):
                    delta["reasoning_content"] = delta["reasoning"] = event["reasoning"]
                if event.get("content"):
                    delta["content"] = event["content"]
                if delta:
                    yield _chunk(base, delta)
            elif kind == "waiting":
                yield b": waiting\n\n"  # an SSE comment: clients skip it, proxies see the stream alive
            elif kind == "done" and not _was_stopped(event):
                yield _chunk(base, {}, _finish_reason(event))
                if include_usage:
                    usage_chunk = {**base, "choices": [], "usage": _usage(event)}
                    yield f"data: {json.dumps(usage_chunk)}\n\n".encode()
                break
            elif kind in ("error", "done"):  # an error, or an answer stopped before it was complete
                event = STOPPED if kind == "done" else event
                error = {
                    "error": {
                        "message": event.get("message", ""),
                        "type": "api_error",
                        "param": None,
                        "code": event.get("code"),
                    }
                }
                yield f"data: {json.dumps(error)}\n\n".encode()
                break
        finished = True
        yield b"data: [DONE]\n\n"
    finally:
        if finished:
            await stream.close()
        else:  # the client disconnected (Django cancels the response) or the stream broke
            await _abandon(stream, request_id)


# --- serving /api/ --------------------------------------------------------------------


class ApiSecurityMiddleware(SecurityMiddleware):
    """Django's SecurityMiddleware with its hooks run on the event loop: they read settings and set
    headers, no I/O, so the two thread hops MiddlewareMixin takes for them under ASGI buy nothing.
    It also checks the Host header against ALLOWED_HOSTS, as CommonMiddleware does for the pages."""

    async def __acall__(self, request: HttpRequest) -> HttpResponse:
        request.get_host()  # DisallowedHost: a 400, in the API's shape (bad_request below)
        response = self.process_request(request) or await self.get_response(request)
        return self.process_response(request, response)


class ApiHandler(ASGIHandler):
    """Django's ASGI handler for /api/, without settings.MIDDLEWARE (chatweb/asgi.py routes to it).

    Under an async view each of the browser's middleware costs thread round trips: 11 ms
    before an API view was reached, measured (docs/PERFORMANCE.md). The API needs none of them:
    it is csrf-exempt, authenticates each request itself (`_authenticate`: the key, or the
    session cookie for reads), checks approval there, and renders no pages or messages.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        # What BaseHandler.load_middleware sets, built from this one middleware instead of the
        # setting: no view, template-response or exception middleware.
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        view = convert_exception_to_response(self._get_response_async)
        self._middleware_chain = convert_exception_to_response(ApiSecurityMiddleware(view))


# Django's error responses (handler400 / 404 / 500 in chatweb/urls.py): the API's shape under /api/.


def _is_api(request: HttpRequest) -> bool:
    return request.path_info.startswith("/api/")


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_error(400, "The request could not be read (check its Host header).", code="bad_request")
    return defaults.bad_request(request, exception)


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_error(404, f"There is no {request.path} in this API.", code="unknown_url")
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return api_error(500, "The server failed on this request; the error is logged.", code="server_error")
    return defaults.server_error(request)


urlpatterns = [
    path("models", models, name="api_models"),
    path("chat/completions", chat_completions, name="api_chat_completions"),
]
