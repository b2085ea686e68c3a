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

import json

import redis
from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.db import DatabaseError

from accounts.models import SiteSettings, User
from accounts.sockets import NOT_APPROVED, SocketRefused, session_tag, socket_user_check, user_group
from conversations import services
from conversations.follower import (
    layer_call,
    stored_end,
)
from conversations.following import Answer, FollowingMixin
from conversations.models import Conversation, Message, MessageStatus
from conversations.socket_protocol import (
    CLOSE_NOT_APPROVED,
    CLOSE_NOT_FOUND,
    CLOSE_UNAUTHENTICATED,
    Frame,
    SocketEvent,
)
from inference_worker import presence
from inference_worker.events import Event

REFUSAL_CLOSE = {NOT_APPROVED: CLOSE_NOT_APPROVED}  # any other refusal: CLOSE_UNAUTHENTICATED

MAX_FRAME_BYTES = 256 * 1024


class ChatConsumer(FollowingMixin, AsyncJsonWebsocketConsumer):
    conversation_id: int
    answer: Answer | None = None
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
            await layer_call(
                self.channel_layer.group_add, presence.conversation_group(conversation_id), self.channel_name
            )
        except (OSError, redis.RedisError):
            pass  # titles are a nicety; the answer stream has its own subscription
        try:
            await layer_call(self.channel_layer.group_add, user_group(user.pk), self.channel_name)
            self.joined_user_group = user_group(user.pk)
        except (OSError, redis.RedisError):
            pass  # no prompt close on a change of access; every frame still checks the user
        try:
            active = await self._active_message()  # after joining: a change made meanwhile is seen here
        except SocketRefused as exc:
            await self.close(code=REFUSAL_CLOSE.get(exc.code, CLOSE_UNAUTHENTICATED))
            return
        await self.send_json({"type": SocketEvent.READY, "active": active.pk if active else None})
        if active is not None:  # a reconnect while an answer is being written: follow it from its snapshot
            answer = Answer(
                active.request_id, model=active.model_name, message_id=active.pk, worker=active.worker or None
            )
            await self._resync(await self._follow(answer))

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
        if content.get("type") == Frame.REGENERATE:
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
    def _queue_position(self, message_id: int | None) -> int | None:
        return self._queued_ahead(message_id)

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
    def _stop(self, request_id: str) -> services.Stop | None:
        user = socket_user_check(self.scope)
        conversation = Conversation.objects.get(pk=self.conversation_id)
        return services.message_stop(user=user, conversation=conversation, request_id=request_id)

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
        if kind == Frame.PING:
            await self.send_json({"type": SocketEvent.PONG})
        elif kind in (Frame.SEND, Frame.REGENERATE):
            await self._on_send(content)
        elif kind == Frame.STOP:
            await self._on_stop(content)
        elif kind == Frame.SYNC:
            await self._on_sync(content)
        else:
            await self._error(f"Unknown message type {kind!r}.", "unknown_type")

    async def _on_send(self, content: dict) -> None:
        # Subscribe before the job is enqueued: a fast worker's first events must
        # find us listening (the pub/sub layer drops messages nobody listens to).
        if self.answer is not None:
            await self._error("An answer is still being written; stop it or wait.", "busy")
            return
        request_id = presence.new_request_id()
        try:
            answer = await self._follow(Answer(request_id, model=""))
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
        answer.message_id, answer.model = turn.assistant_message.pk, turn.job.generation.model
        await self.send_json(
            {
                "type": SocketEvent.QUEUED,
                "request_id": turn.job.request_id,
                "message_id": turn.assistant_message.pk,
                "user_message_id": turn.user_message.pk,
                "user_parent_id": turn.user_message.parent_id,
                "model": turn.job.generation.model,
                "regenerate": content.get("type") == Frame.REGENERATE,
                "title": turn.title,
            }
        )
        if ahead:  # others wait before this one: say so now, the watchdog keeps it current
            await self.send_json({"type": SocketEvent.QUEUE, "message_id": answer.message_id, "ahead": ahead})
            answer.queue_ahead = ahead

    async def _on_stop(self, content: dict) -> None:
        following = self.answer.request_id if self.answer else None
        request_id = content.get("request_id") or following
        if not isinstance(request_id, str) or not request_id:
            await self._error("Nothing to stop.", "nothing_to_stop")
            return
        stop = await self._stop(request_id)
        if stop is None:
            await self._error("Nothing to stop.", "nothing_to_stop")
        elif stop.before_start and request_id == following:  # no worker will speak for it
            done = {"type": Event.DONE, "status": "stopped", "finish_reason": "abort", "message_id": stop.message.pk}
            await self.send_json(done)
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
        end = stored_end(message, show_reasoning=self.show_reasoning)
        return {"type": end.pop("event"), "message_id": message.pk, **end}

    async def _error(self, message: str, code: str, **extra) -> None:
        await self.send_json({"type": Event.ERROR, "message": message, "code": code, **extra})

    async def conversation_event(self, event: dict) -> None:
        """An event about the conversation itself (its title), for every socket open on it."""
        if event.get("event") == SocketEvent.TITLE:
            await self.send_json({"type": SocketEvent.TITLE, "title": event.get("title", "")})
