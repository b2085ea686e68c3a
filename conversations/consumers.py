"""The chat websocket: /ws/chat/<conversation_id>/ (session auth, approved owners only)."""

from __future__ import annotations

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from conversations.models import Conversation

# Close codes (4000-4999 are the application's own).
CLOSE_UNAUTHENTICATED = 4001
CLOSE_NOT_APPROVED = 4003
CLOSE_NOT_FOUND = 4004


class ChatConsumer(AsyncJsonWebsocketConsumer):
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
        await self.accept()

    async def _refuse(self, code: int) -> None:
        # A close before accept() rejects the handshake (the browser sees 1006 and
        # no reason); accepting first lets the page read our close code.
        await self.accept()
        await self.close(code=code)

    @database_sync_to_async
    def _owns(self, user_id: int, conversation_id: int) -> bool:
        return Conversation.objects.filter(pk=conversation_id, owner_id=user_id).exists()

    async def receive_json(self, content, **kwargs) -> None:
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
            return
        await self.send_json({"type": "error", "message": f"Unknown message type {kind!r}."})
