"""/health: readiness for anyone, the workers' details for an admin or the configured token."""

from __future__ import annotations

import pytest
from asgiref.sync import async_to_sync
from django.test import Client, override_settings

from inference_worker import presence

pytestmark = pytest.mark.django_db

WORKER = {
    "name": "gpu-host-7:worker-0",
    "model": "some-model",
    "state": "ready",
    "running": 0,
    "waiting": 0,
    "memory_used": 3_000_000_000,
    "memory_total": 80_000_000_000,
    "device": "NVIDIA H100 80GB HBM3",
}


@pytest.fixture
def live_worker(redis_server):
    """A worker's heartbeat, as a worker writes it (no engine needed to be seen)."""

    async def beat() -> None:
        r = presence.async_client()
        try:
            await presence.beat(r, WORKER["name"], presence.heartbeat_payload(**WORKER), ttl=60)
        finally:
            await r.aclose()

    async def gone() -> None:
        r = presence.async_client()
        try:
            await presence.unregister(r, WORKER["name"])
        finally:
            await r.aclose()

    async_to_sync(beat)()
    yield WORKER
    async_to_sync(gone)()


def test_anyone_learns_readiness_and_nothing_else(live_worker):
    response = Client().get("/health")
    assert response.status_code == 200 and response.json() == {"status": "ready"}
    for secret in (WORKER["name"], "gpu-host-7", "H100", "memory"):
        assert secret not in response.content.decode()


def test_no_worker_is_503_for_anyone():
    response = Client().get("/health")
    assert response.status_code == 503 and response.json() == {"status": "no_workers"}


def test_an_admin_sees_the_workers(users, live_worker):
    client = Client()
    client.force_login(users.admin)
    body = client.get("/health").json()
    assert body["status"] == "ready" and body["database"] == "ok" and body["redis"] == "ok"
    (worker,) = body["workers"]["some-model"]
    assert worker["name"] == WORKER["name"] and worker["device"] == WORKER["device"]

    client.force_login(users.alice)  # an approved user is not an admin
    assert client.get("/health").json() == {"status": "ready"}


@override_settings(HEALTH_TOKEN="health-token-for-monitoring-0123456789")
def test_the_configured_token_sees_the_workers(live_worker):
    client = Client()
    body = client.get("/health", HTTP_AUTHORIZATION="Bearer health-token-for-monitoring-0123456789").json()
    assert body["workers"]["some-model"][0]["name"] == WORKER["name"]
    for wrong in ("Bearer health-token-for-monitoring-012345678", "Bearer ", "Basic x", "Bearer é"):
        response = client.get("/health", HTTP_AUTHORIZATION=wrong)
        assert response.status_code == 200 and response.json() == {"status": "ready"}, wrong
