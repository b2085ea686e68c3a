"""Fixtures the API tests share."""

from __future__ import annotations

import pytest

from accounts.services import api_key_create
from inference_worker.models import ChatModel


@pytest.fixture
def orphan(db) -> ChatModel:
    """A model no worker serves: a request that passes every check is refused with 503."""
    return ChatModel.objects.create(name="orphan", display_name="Orphan", path="/none", queue="orphan")


@pytest.fixture
def key(users) -> str:
    """An API key of alice's (the raw secret)."""
    return api_key_create(user=users.alice, name="tests")[1]
