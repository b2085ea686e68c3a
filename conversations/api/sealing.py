"""Reasoning sealed for the client to hand back (`include: ["reasoning.encrypted_content"]`).

A stateless client (Codex CLI, an agent with `store: false`) keeps no server-side state,
yet harmony needs the reasoning that led to a function call on the next turn of a tool
loop. The reasoning goes out sealed with a server key (Fernet: AES-CBC with an HMAC, from
`cryptography`), bound to its owner, and is opened when it comes back. A user whom Site
settings exclude from reasoning can carry it without reading it. The key is derived from
SECRET_KEY, so sealed reasoning outlives restarts and stops opening when the key rotates.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

_PURPOSE = b"chatweb.responses.reasoning"


def _fernet() -> Fernet:
    key = hashlib.sha256(_PURPOSE + b"\0" + settings.SECRET_KEY.encode()).digest()
    return Fernet(base64.urlsafe_b64encode(key))


def seal(text: str, owner_id: int) -> str:
    return _fernet().encrypt(json.dumps({"owner": owner_id, "text": text}).encode()).decode()


def unseal(token: str, owner_id: int) -> str | None:
    """The reasoning, or None: not sealed here (another server, a rotated key), altered, or
    sealed for someone else."""
    try:
        sealed = json.loads(_fernet().decrypt(token.encode()))
    except (InvalidToken, ValueError):
        return None
    if not isinstance(sealed, dict) or sealed.get("owner") != owner_id or not isinstance(sealed.get("text"), str):
        return None
    return sealed["text"]
