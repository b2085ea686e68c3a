"""The chat websocket: /ws/chat/<conversation_id>/ (session auth, approved owners only).

Client -> server: {"type": "send", "content": ..., "params": {...}}, {"type": "stop",
"request_id": ...}, {"type": "ping"}.
Server -> client: "queued", then the worker's events relayed from the reply group:
"status", "start", "delta", "done", "error"; and "pong".
"""

from __future__ import annotations

import asyncio
import json
import time

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from accounts.models import SiteSettings
from conversations import services
from conversations.models import Conversation, Message, MessageStatus
from inference_worker import presence

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_APPROVED = 4003
CLOSE_NOT_FOUND = 4004

MAX_FRAME_BYTES = 256 * 1024
WATCHDOG_SECONDS = 2.0
SILENCE_BEFORE_CHECK = 4.0


class ChatConsumer(AsyncJsonWebsocketConsumer):
    conversation_id: int
    request_id: str | None = None
    message_id: int | None = None
    worker: str | None = None
    partial: str = ""
    last_event: float = 0.0
    watchdog: asyncio.Task | None = None

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
        active = await self._active_message()
        if active is not None:  # a reconnect while an answer is being written: follow it
            await self._follow(active.request_id, active.pk, active.worker or None)
            await self.send_json(
                {
                    "type": "resume",
                    "message_id": active.pk,
                    "request_id": active.request_id,
                    "content": active.content,
                    "reasoning": active.reasoning if self.show_reasoning else "",
                }
            )

    async def _refuse(self, code: int) -> None:
        # A close before accept() rejects the handshake (the browser sees 1006 and
        # no reason); accepting first lets the page read our close code.
        await self.accept()
        await self.close(code=code)

    async def disconnect(self, code: int) -> None:
        await self._unfollow()

    # --- database helpers -------------------------------------------------------

    @database_sync_to_async
    def _owns(self, user_id: int, conversation_id: int) -> bool:
        return Conversation.objects.filter(pk=conversation_id, owner_id=user_id).exists()

    @database_sync_to_async
    def _may_see_reasoning(self, user) -> bool:
        return SiteSettings.load().may_see_reasoning(user)

    @database_sync_to_async
    def _active_message(self) -> Message | None:
        conversation = Conversation.objects.get(pk=self.conversation_id)
        services.messages_reap_orphans(conversation.messages.all())
        return services.active_messages(conversation).order_by("-created").first()

    @database_sync_to_async
    def _send_turn(self, content, params):
        conversation = Conversation.objects.select_related("model").get(pk=self.conversation_id)
        return services.conversation_send(
            user=self.scope["user"], conversation=conversation, content=content, params=params
        )

    @database_sync_to_async
    def _stop(self, request_id: str) -> Message | None:
        conversation = Conversation.objects.get(pk=self.conversation_id)
        return services.message_stop(user=self.scope["user"], conversation=conversation, request_id=request_id)

    @database_sync_to_async
    def _check_lost(self) -> str | None:
        """None while the answer is alive; else the error now stored on the message."""
        message = Message.objects.filter(pk=self.message_id).first()
        if message is None:
            return "This answer was deleted."
        if message.status not in services.ACTIVE:
            return None if message.status in (MessageStatus.DONE, MessageStatus.STOPPED) else message.error
        worker = self.worker or message.worker
        if worker and not presence.worker_alive(worker):
            services.message_fail(message_id=message.pk, error=services.WORKER_LOST, content=self.partial or None)
            return services.WORKER_LOST
        if not worker and not presence.live_workers(message.model_name):
            error = "No worker is serving this model any more. Retry when one is back."
            services.message_fail(message_id=message.pk, error=error)
            return error
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
        except ValueError:
            await self._error("That was not valid JSON.", "bad_json")
            return
        if not isinstance(content, dict):
            await self._error("Send a JSON object with a type.", "bad_frame")
            return
        await self.receive_json(content)

    async def receive_json(self, content, **kwargs) -> None:
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "send":
            await self._on_send(content)
        elif kind == "stop":
            await self._on_stop(content)
        else:
            await self._error(f"Unknown message type {kind!r}.", "unknown_type")

    async def _on_send(self, content: dict) -> None:
        try:
            turn = await self._send_turn(content.get("content"), content.get("params"))
        except services.SendError as exc:
            await self._error(exc.message, exc.code)
            return
        await self._follow(turn.job["request_id"], turn.assistant_message.pk, None)
        await self.send_json(
            {
                "type": "queued",
                "request_id": turn.job["request_id"],
                "message_id": turn.assistant_message.pk,
                "user_message_id": turn.user_message.pk,
            }
        )

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

    async def _error(self, message: str, code: str, **extra) -> None:
        await self.send_json({"type": "error", "message": message, "code": code, **extra})

    # --- following one generation -------------------------------------------------

    async def _follow(self, request_id: str, message_id: int, worker: str | None) -> None:
        await self._unfollow()
        self.request_id, self.message_id, self.worker = request_id, message_id, worker
        self.partial = ""
        self.last_event = time.monotonic()
        await self.channel_layer.group_add(presence.reply_group(request_id), self.channel_name)
        self.watchdog = asyncio.create_task(self._watch())

    async def _unfollow(self) -> None:
        if self.watchdog is not None and self.watchdog is not asyncio.current_task():
            self.watchdog.cancel()
        self.watchdog = None
        if self.request_id:
            await self.channel_layer.group_discard(presence.reply_group(self.request_id), self.channel_name)
        self.request_id = self.message_id = self.worker = None

    async def _watch(self) -> None:
        """No word from the worker for a while: is it still alive? (kill -9, lost host)"""
        while self.request_id:
            await asyncio.sleep(WATCHDOG_SECONDS)
            if time.monotonic() - self.last_event < SILENCE_BEFORE_CHECK:
                continue
            error = await self._check_lost()
            if error:
                await self._error(error, "worker_lost", message_id=self.message_id, content=self.partial)
                self.watchdog = None
                await self._unfollow()
                return

    async def chat_event(self, event: dict) -> None:
        """A worker's event for the generation this socket follows."""
        self.last_event = time.monotonic()
        kind = event.get("event")
        payload = {k: v for k, v in event.items() if k not in ("type", "event")}
        if kind == "start":
            self.worker = event.get("worker")
        if kind == "delta":
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
