"""The chat websocket: /ws/chat/<conversation_id>/ (session auth, approved owners only).

On connect: {"type": "ready", "active": <id of the answer being written, or null>}.
Client -> server: {"type": "send", "content": ..., "params": {...}, "parent_id": <the
message to answer under>, "edit_of": <a user message this one replaces, as a new
branch>}, {"type": "regenerate", "message_id": ...}, {"type": "stop", "request_id":
...}, {"type": "sync", "message_id": ...} (the stored outcome of an answer followed
before a reconnect), {"type": "ping"}.
Server -> client: "queued" (with the new message ids), "queue" (how many wait ahead),
then the worker's events relayed from the reply group: "status", "start", "delta",
"done", "error"; "title" when the conversation gets its title; and "pong".
"""

from __future__ import annotations

import asyncio
import json
import time

import redis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import DatabaseError

from accounts.models import SiteSettings, User
from accounts.sockets import NOT_APPROVED, SocketRefused, session_tag, socket_user_check, user_group
from conversations import services
from conversations.models import Conversation, Message, MessageStatus
from inference_worker import presence

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_APPROVED = 4003
CLOSE_NOT_FOUND = 4004
REFUSAL_CLOSE = {NOT_APPROVED: CLOSE_NOT_APPROVED}  # any other refusal: CLOSE_UNAUTHENTICATED

MAX_FRAME_BYTES = 256 * 1024
WATCHDOG_SECONDS = 2.0
RESYNC_SECONDS = 1.5
LAYER_RETRIES = 8
SILENCE_BEFORE_CHECK = 4.0


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation_id: int
    request_id: str | None = None
    message_id: int | None = None
    worker: str | None = None
    partial: str = ""
    started: bool = False
    queue_ahead: int | None = None
    last_event: float = 0.0
    next_seq: int = 0
    watchdog: asyncio.Task | None = None
    resync_buffer: list[dict] | None = None  # deltas held until the worker's snapshot
    resync_stored: dict | None = None
    resync_timer: asyncio.TimerHandle | None = None
    ending: dict | None = None  # the watchdog's end of this answer, waiting for its barrier
    joined_user_group: str | None = None  # closes this socket when the user loses access

    # Worker events for this socket (every delta of an answer is one) and the page's frames.
    DIRECT = frozenset({"chat.event", "conversation.event", "websocket.receive"})

    async def dispatch(self, message: dict) -> None:
        """Relay worker events and handle the page's frames without Channels' per-message
        database hop.

        Channels runs close_old_connections in a worker thread before every handler
        (aclose_old_connections): a thread round trip per streamed delta, about half
        of daphne's busy time with 32 answers streaming (py-spy, bench/serving.py), and
        one more on the way to every answer's first token. These handlers reach the
        database only through database_sync_to_async, which closes stale connections
        on its own, so they skip it; connect and disconnect keep it.
        """
        if message.get("type") in self.DIRECT:
            await getattr(self, get_handler_name(message))(message)
        else:
            await super().dispatch(message)

    async def connect(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            await self._refuse(CLOSE_UNAUTHENTICATED)
            return
        if not user.is_approved:
            await self._refuse(CLOSE_NOT_APPROVED)
            return
        conversation_id = self.scope["url_route"]["kwargs"]["conversation_id"]
        if not await self._owns(user.pk, conversation_id):
            await self._refuse(CLOSE_NOT_FOUND)
            return
        self.conversation_id = conversation_id
        self.show_reasoning = await self._may_see_reasoning(user)
        await self.accept()
        try:
            await presence.keep_layer_listening(self.channel_layer)  # for the sockets after this one
        except (OSError, redis.RedisError):
            pass
        try:
            await self._layer(
                self.channel_layer.group_add, presence.conversation_group(conversation_id), self.channel_name
            )
        except (OSError, redis.RedisError):
            pass  # titles are a nicety; the answer stream has its own subscription
        try:
            await self._layer(self.channel_layer.group_add, user_group(user.pk), self.channel_name)
            self.joined_user_group = user_group(user.pk)
        except (OSError, redis.RedisError):
            pass  # no prompt close on a change of access; every frame still checks the user
        try:
            active = await self._active_message()  # after joining: a change made meanwhile is seen here
        except SocketRefused as exc:
            await self.close(code=REFUSAL_CLOSE.get(exc.code, CLOSE_UNAUTHENTICATED))
            return
        await self.send_json({"type": "ready", "active": active.pk if active else None})
        if active is not None:  # a reconnect while an answer is being written: follow it
            await self._follow(active.request_id, active.pk, active.worker or None)
            await self._resync({"content": active.content, "reasoning": active.reasoning}, [])

    async def _refuse(self, code: int) -> None:
        # A close before accept() rejects the handshake (the browser sees 1006 and
        # no reason); accepting first lets the page read our close code.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        await self._unfollow()
        if getattr(self, "conversation_id", None) is not None:
            try:
                await self.channel_layer.group_discard(
                    presence.conversation_group(self.conversation_id), self.channel_name
                )
            except (OSError, redis.RedisError):
                pass
        if self.joined_user_group is not None:
            try:
                await self.channel_layer.group_discard(self.joined_user_group, self.channel_name)
            except (OSError, redis.RedisError):
                pass

    async def user_revoked(self, event: dict) -> None:
        """The user was signed out, deactivated, demoted or deleted (accounts.sockets)."""
        if "session" in event and event["session"] != session_tag(self.scope["session"].session_key):
            return  # a logout of another session of this user's
        await self.close(code=REFUSAL_CLOSE.get(event.get("code"), CLOSE_UNAUTHENTICATED))

    # --- database helpers -------------------------------------------------------

    @database_sync_to_async
    def _owns(self, user_id: int, conversation_id: int) -> bool:
        return Conversation.objects.filter(pk=conversation_id, owner_id=user_id).exists()

    @database_sync_to_async
    def _may_see_reasoning(self, user) -> bool:
        return SiteSettings.load().may_see_reasoning(user)

    @database_sync_to_async
    def _active_message(self) -> Message | None:
        socket_user_check(self.scope)
        conversation = Conversation.objects.get(pk=self.conversation_id)
        services.messages_reap_orphans(conversation.messages.all())
        return services.active_messages(conversation).order_by("-created").first()

    @database_sync_to_async
    def _start_turn(self, content: dict, request_id: str) -> tuple[services.Turn, int | None]:
        """The turn, stored and enqueued, and how many answers wait ahead of it, in one hop
        (the count comes after the enqueue, so the worker does not wait for it). The user is
        read again first: the session may have ended, or the user lost access, since connect."""
        turn = self._store_turn(content, request_id, socket_user_check(self.scope))
        try:
            return turn, self._queued_ahead(turn.assistant_message.pk)
        except DatabaseError:  # the turn is stored and queued; its place can wait for the watchdog
            return turn, None

    def _store_turn(self, content: dict, request_id: str, user: User) -> services.Turn:
        conversation = Conversation.objects.select_related("model").filter(pk=self.conversation_id).first()
        if conversation is None:
            raise services.SendError("This conversation was deleted.", "not_found")
        if content.get("type") == "regenerate":
            return services.conversation_regenerate(
                user=user,
                conversation=conversation,
                message_id=content.get("message_id"),
                params=content.get("params"),
                request_id=request_id,
            )
        return services.conversation_send(
            user=user,
            conversation=conversation,
            content=content.get("content"),
            params=content.get("params"),
            parent_id=content.get("parent_id"),
            edit_of=content.get("edit_of"),
            request_id=request_id,
        )

    @database_sync_to_async
    def _queue_position(self) -> int | None:
        return self._queued_ahead(self.message_id)

    @staticmethod
    def _queued_ahead(message_id: int | None) -> int | None:
        """How many answers for the same model wait ahead of this one (None once it has started)."""
        message = Message.objects.filter(pk=message_id).only("status", "model_name").first()
        if message is None or message.status != MessageStatus.QUEUED:
            return None
        return Message.objects.filter(
            status=MessageStatus.QUEUED, model_name=message.model_name, pk__lt=message.pk
        ).count()

    @database_sync_to_async
    def _stop(self, request_id: str) -> Message | None:
        user = socket_user_check(self.scope)
        conversation = Conversation.objects.get(pk=self.conversation_id)
        return services.message_stop(user=user, conversation=conversation, request_id=request_id)

    @database_sync_to_async
    def _check_lost(self) -> dict | None:
        """None while the answer is alive; else the event that ends it for this socket.

        Catches a worker that died (kill -9, lost host) and an outcome this socket
        missed (its subscription dropped with a Redis restart): the stored message
        is the truth either way.
        """
        message = Message.objects.filter(pk=self.message_id).first()
        if message is None:
            return {"type": "error", "code": "deleted", "message": "This answer was deleted."}
        if message.status not in services.ACTIVE:
            return self._stored_outcome(message)
        worker = self.worker or message.worker
        if worker and not presence.worker_alive(worker):
            services.message_fail(message_id=message.pk, error=services.WORKER_LOST, content=self.partial or None)
            return {"type": "error", "code": "worker_lost", "message": services.WORKER_LOST, "content": self.partial}
        if not worker and not presence.live_workers(message.model_name):
            services.message_fail(message_id=message.pk, error=services.NO_WORKER_LEFT)
            return {"type": "error", "code": "no_worker", "message": services.NO_WORKER_LEFT}
        return None

    # --- client messages --------------------------------------------------------

    async def receive(self, text_data=None, bytes_data=None, **kwargs) -> None:
        raw = text_data if text_data is not None else bytes_data
        if raw is not None and len(raw) > MAX_FRAME_BYTES:
            await self._error(
                f"That message is too large ({len(raw):,} bytes; the limit is {MAX_FRAME_BYTES:,}).", "too_large"
            )
            return
        if text_data is None:
            await self._error("Send JSON text frames.", "bad_frame")
            return
        try:
            content = json.loads(text_data)
        except (ValueError, RecursionError):  # RecursionError: nested too deep
            await self._error("That was not valid JSON.", "bad_json")
            return
        if not isinstance(content, dict):
            await self._error("Send a JSON object with a type.", "bad_frame")
            return
        try:
            await self.receive_json(content)
        except SocketRefused as exc:  # from the frame's database hop, before it stored anything
            await self._unfollow()
            await self._error(exc.message, exc.code)
            await self.close(code=REFUSAL_CLOSE.get(exc.code, CLOSE_UNAUTHENTICATED))

    async def receive_json(self, content, **kwargs) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in ("send", "regenerate"):
            await self._on_send(content)
        elif kind == "stop":
            await self._on_stop(content)
        elif kind == "sync":
            await self._on_sync(content)
        else:
            await self._error(f"Unknown message type {kind!r}.", "unknown_type")

    async def _on_send(self, content: dict) -> None:
        # Subscribe before the job is enqueued: a fast worker's first events must
        # find us listening (the pub/sub layer drops messages nobody listens to).
        if self.request_id is not None:
            await self._error("An answer is still being written; stop it or wait.", "busy")
            return
        request_id = presence.new_request_id()
        try:
            await self._follow(request_id, None, None)
        except (OSError, redis.RedisError):
            await self._unfollow()
            await self._error("The message queue is unreachable right now; try again in a moment.", "queue_down")
            return
        try:
            turn, ahead = await self._start_turn(content, request_id)
        except services.SendError as exc:
            await self._unfollow()
            await self._error(exc.message, exc.code)
            return
        self.message_id = turn.assistant_message.pk
        await self.send_json(
            {
                "type": "queued",
                "request_id": turn.job.request_id,
                "message_id": turn.assistant_message.pk,
                "user_message_id": turn.user_message.pk,
                "user_parent_id": turn.user_message.parent_id,
                "model": turn.job.generation.model,
                "regenerate": content.get("type") == "regenerate",
                "title": turn.title,
            }
        )
        if ahead:  # others wait before this one: say so now, the watchdog keeps it current
            await self.send_json({"type": "queue", "message_id": self.message_id, "ahead": ahead})
            self.queue_ahead = ahead

    async def _on_stop(self, content: dict) -> None:
        request_id = content.get("request_id") or self.request_id
        if not isinstance(request_id, str) or not request_id:
            await self._error("Nothing to stop.", "nothing_to_stop")
            return
        message = await self._stop(request_id)
        if message is None:
            await self._error("Nothing to stop.", "nothing_to_stop")
        elif message.status == MessageStatus.STOPPED and request_id == self.request_id:
            # Stopped while still queued: no worker will speak for it.
            await self.send_json(
                {"type": "done", "status": "stopped", "finish_reason": "abort", "message_id": message.pk}
            )
            await self._unfollow()

    async def _on_sync(self, content: dict) -> None:
        """The stored outcome of an answer the page followed before it lost its socket."""
        outcome = await self._outcome(content.get("message_id"))
        if outcome is not None:
            await self.send_json(outcome)

    @database_sync_to_async
    def _outcome(self, message_id) -> dict | None:
        socket_user_check(self.scope)
        if isinstance(message_id, bool) or not isinstance(message_id, int):
            return None
        message = Message.objects.filter(pk=message_id, conversation_id=self.conversation_id).first()
        if message is None or message.status in services.ACTIVE:
            return None  # unknown here, or still running (the resume covers it)
        return self._stored_outcome(message)

    def _stored_outcome(self, message: Message) -> dict:
        """The event that ends an answer, from what is stored (done, stopped or failed)."""
        if message.status == MessageStatus.FAILED:
            return {
                "type": "error",
                "code": "failed",
                "message": message.error,
                "content": message.content,
                "message_id": message.pk,
            }
        return {
            "type": "done",
            "status": message.status,
            "finish_reason": message.finish_reason,
            "content": message.content,
            "reasoning": message.reasoning if self.show_reasoning else "",
            "recovered": True,
            "message_id": message.pk,
            "time_to_first_token_ms": message.time_to_first_token_ms,
            "tokens_per_second": message.tokens_per_second,
            "usage": {  # as the worker's own end has it (the stored message keeps no reasoning count)
                "prompt_tokens": message.prompt_tokens,
                "completion_tokens": message.completion_tokens,
                "total_tokens": message.prompt_tokens + message.completion_tokens,
            },
        }

    async def _error(self, message: str, code: str, **extra) -> None:
        await self.send_json({"type": "error", "message": message, "code": code, **extra})

    # --- following one generation -------------------------------------------------

    async def _layer(self, method, *args) -> None:
        """A channel-layer call that rides out a Redis restart (the first call after
        one fails while the layer reconnects)."""
        for attempt in range(LAYER_RETRIES):
            try:
                await method(*args)
                return
            except (OSError, redis.RedisError):
                if attempt == LAYER_RETRIES - 1:
                    raise
                await asyncio.sleep(0.2 * (attempt + 1))

    async def _follow(self, request_id: str, message_id: int | None, worker: str | None) -> None:
        await self._unfollow()
        self.request_id, self.message_id, self.worker = request_id, message_id, worker
        self.partial = ""
        self.started = worker is not None
        self.queue_ahead = None
        self.next_seq = 0  # the seq of the next delta: one further on means some were lost
        self.last_event = time.monotonic()
        await self._layer(self.channel_layer.group_add, presence.reply_group(request_id), self.channel_name)
        self.watchdog = asyncio.create_task(self._watch())

    async def _unfollow(self) -> None:
        if self.watchdog is not None and self.watchdog is not asyncio.current_task():
            self.watchdog.cancel()
        self.watchdog = None
        self.ending = None
        self.resync_buffer = None  # a resync still waiting for its snapshot ends with the answer
        if self.resync_timer is not None:
            self.resync_timer.cancel()
            self.resync_timer = None
        request_id, self.request_id, self.message_id, self.worker = self.request_id, None, None, None
        if request_id:
            try:
                await self._layer(self.channel_layer.group_discard, presence.reply_group(request_id), self.channel_name)
            except (OSError, redis.RedisError):
                pass  # the subscription went with the connection anyway

    async def _watch(self) -> None:
        """No word from the worker for a while: is it still alive? (kill -9, lost host)

        While the answer waits in the queue, also tell the page its place.
        """
        while self.request_id:
            slept = time.monotonic()
            await asyncio.sleep(WATCHDOG_SECONDS)
            stalled = time.monotonic() - slept > WATCHDOG_SECONDS + 1  # this process froze meanwhile
            if self.ending is not None:
                if not stalled:  # the barrier should have come back long ago: the subscription is gone
                    await self._end(self.ending)
                    return
                continue  # let what reached us while frozen through first
            if self.message_id is not None and not self.started:
                position = await self._queue_position()
                if position is not None and position != self.queue_ahead:
                    await self.send_json({"type": "queue", "message_id": self.message_id, "ahead": position})
                    self.queue_ahead = position
            if time.monotonic() - self.last_event < SILENCE_BEFORE_CHECK:
                continue
            if self.message_id is None:
                continue
            ending = await self._check_lost()
            if ending:
                await self._end_behind_stream({**ending, "message_id": self.message_id})

    async def _end_behind_stream(self, ending: dict) -> None:
        """End the answer with what the watchdog found, once everything the worker sent
        before it has been relayed.

        The watchdog reads the stored message while deltas may still be on their way to
        this socket: a daphne that froze for a few seconds (GC, a descheduled VM, swap)
        wakes to an answer finished in the database and its deltas unread. A barrier sent
        to the answer's reply group comes back behind them (Redis delivers one channel's
        messages in order), and the end goes out when it does. If it never comes back,
        the subscription is gone and the watchdog's next round ends the answer anyway.
        """
        self.ending = ending
        try:
            await self.channel_layer.group_send(
                presence.reply_group(self.request_id),
                {"type": "chat.event", "event": "barrier", "request_id": self.request_id, "to": self.channel_name},
            )
        except (OSError, redis.RedisError):
            await self._end(ending)  # nothing more comes through a Redis that is away

    async def _end(self, ending: dict) -> None:
        await self.send_json(ending)
        await self._unfollow()

    async def _resync(self, stored: dict | None, buffered: list[dict]) -> None:
        """Ask the worker for everything it has streamed so far (the stored text lags by up
        to PARTIAL_SAVE_SECONDS); the deltas arriving meanwhile wait here.

        On a reconnect, and when deltas went missing (Redis restarted while the worker
        published them). `stored`: the text to fall back on if no worker answers within
        RESYNC_SECONDS (None: read it then).
        """
        self.resync_buffer, self.resync_stored = buffered, stored
        try:
            await database_sync_to_async(presence.request_snapshot)(self.request_id)
        except (OSError, redis.RedisError):
            pass  # the stored text after RESYNC_SECONDS, then
        self.resync_timer = asyncio.get_running_loop().call_later(
            RESYNC_SECONDS, lambda: asyncio.ensure_future(self._end_resync(None))
        )

    async def _end_resync(self, snapshot: dict | None, *, stored: dict | None = None) -> None:
        if self.resync_buffer is None:
            return
        if snapshot is None and stored is None and self.resync_stored is None:
            stored = await self._stored_text()  # deltas keep waiting in the buffer meanwhile
            if self.resync_buffer is None:
                return  # ended while the text was read
        buffered, self.resync_buffer = self.resync_buffer, None
        if self.resync_timer is not None:
            self.resync_timer.cancel()
            self.resync_timer = None
        if snapshot is not None:
            base, from_seq = snapshot, snapshot["seq"]
        else:
            # No worker holds it (still queued, or already finished and stored).
            base = stored or self.resync_stored
            from_seq = 0 if not base["content"] and not base["reasoning"] else None
        await self.send_json(
            {
                "type": "resume",
                "message_id": self.message_id,
                "request_id": self.request_id,
                "content": base["content"],
                "reasoning": base["reasoning"] if self.show_reasoning else "",
            }
        )
        self.partial = base["content"]
        if from_seq is not None:
            self.next_seq = from_seq
        elif buffered:  # no worker answered: whatever still comes continues from here
            self.next_seq = max(self.next_seq, *(presence.delta_seq(d) + 1 for d in buffered))
        for delta in buffered:
            if from_seq is not None and presence.delta_seq(delta) >= from_seq:
                await self._relay(delta)

    @database_sync_to_async
    def _stored_text(self) -> dict:
        message = Message.objects.filter(pk=self.message_id).only("content", "reasoning").first()
        if message is None:
            return self.resync_stored or {"content": self.partial, "reasoning": ""}
        return {"content": message.content, "reasoning": message.reasoning}

    async def chat_event(self, event: dict) -> None:
        """A worker's event for the generation this socket follows."""
        if self.request_id is None or event.get("request_id", self.request_id) != self.request_id:
            return  # the answer this socket followed before: its last events were already on their way
        kind = event.get("event")
        if kind == "barrier":
            if event.get("to") == self.channel_name and self.ending is not None:
                await self._end(self.ending)  # every event sent before the watchdog's end is out
            return  # another socket's
        self.last_event = time.monotonic()
        if kind == "snapshot":
            if self.resync_buffer is not None:
                await self._end_resync(event)
            return  # another socket's resync
        if kind == "delta" and self.resync_buffer is None and presence.delta_seq(event) > self.next_seq:
            await self._resync(None, [event])  # deltas went missing on the way: start again from the worker's text
            return
        if self.resync_buffer is not None:
            if kind == "delta":
                self.resync_buffer.append(event)
                return
            if kind in ("done", "error"):  # finished before any snapshot: the stored text is final
                await self._end_resync(None, stored=await self._stored_text())
        elif kind in ("done", "error") and presence.deltas_sent(event) > self.next_seq:
            # The last deltas were lost on the way; the worker stored the answer before
            # it sent its end, so the stored text is whole.
            self.resync_buffer, self.resync_stored = [], None
            await self._end_resync(None, stored=await self._stored_text())
        await self._relay(event)

    async def _relay(self, event: dict) -> None:
        kind = event.get("event")
        payload = {k: v for k, v in event.items() if k not in ("type", "event", "request_id")}
        if kind in ("start", "status") and event.get("worker"):
            self.worker = event["worker"]  # the watchdog checks this worker from now on
        if kind == "start":
            self.started = True
        if kind == "delta":
            self.next_seq = max(self.next_seq, presence.delta_seq(event) + 1)
            self.partial += event.get("content", "")
            if not self.show_reasoning:
                payload.pop("reasoning", None)
                if "content" not in payload:
                    return
        if kind == "done" and not self.show_reasoning:
            payload.get("usage", {}).pop("reasoning_tokens", None)
        await self.send_json({"type": kind, "message_id": self.message_id, **payload})
        if kind in ("done", "error"):
            await self._unfollow()

    async def conversation_event(self, event: dict) -> None:
        """An event about the conversation itself (its title), for every socket open on it."""
        if event.get("event") == "title":
            await self.send_json({"type": "title", "title": event.get("title", "")})
