"""Start one inference worker: a Celery worker on the model's queue holding one vLLM engine.

python manage.py run_worker --model smollm2-135m-instruct
python manage.py run_worker --model gpt-oss-20b --gpu 1
"""

from __future__ import annotations

import json
import os
import socket

from django.core.management.base import BaseCommand, CommandError

from chatweb.settings import envbool, envint
from inference_worker.engine import cpu_engine_env


class Command(BaseCommand):
    help = "Run an inference worker for one model (one vLLM engine, many requests batched together)."

    def add_arguments(self, parser):
        parser.add_argument("--model", default=os.environ.get("CHATWEB_MODEL"), help="a model row's name")
        parser.add_argument("--gpu", type=int, default=None, help="GPU index (sets CUDA_VISIBLE_DEVICES)")
        parser.add_argument("--name", default=None, help="worker name (default: <model>-<gpuN|cpu>)")
        parser.add_argument(
            "--concurrency",
            type=int,
            default=None,
            help="requests in flight (default: the model's max concurrent sequences)",
        )
        parser.add_argument(
            "--idle-seconds",
            type=float,
            default=None,
            help="free the model after this long idle (ENGINE_IDLE_SECONDS, 300)",
        )
        parser.add_argument("--loglevel", default="INFO")

    def handle(
        self,
        *args,
        model: str | None,
        gpu: int | None,
        name: str | None,
        concurrency: int | None,
        idle_seconds: float | None,
        loglevel: str,
        **options,
    ):
        # Before anything imports vLLM or torch.
        if gpu is not None:
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu)
        os.environ.setdefault("VLLM_WORKER_MULTIPROC_METHOD", "spawn")  # Celery runs threads: never fork them
        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        if gpu is None:
            cpu_engine_env()

        from chatweb.celery import app
        from inference_worker import consumer_watch
        from inference_worker.engine import EngineHost, EngineSpec
        from inference_worker.jobs import set_current_host
        from inference_worker.models import ChatModel

        if not model:
            raise CommandError("--model is required (or set CHATWEB_MODEL)")
        row = ChatModel.objects.filter(name=model).first()
        if row is None:
            known = ", ".join(ChatModel.objects.values_list("name", flat=True)) or "none"
            raise CommandError(f"no model named {model!r} (known: {known}); add it in the admin panel")
        device = f"gpu{gpu}" if gpu is not None else "cpu"
        worker_name = f"{row.name}-{name or device}@{socket.gethostname()}"
        idle = idle_seconds if idle_seconds is not None else envint("ENGINE_IDLE_SECONDS", 300, minimum=1)
        host = EngineHost(
            EngineSpec.from_model(row),
            worker_name=worker_name,
            queue=row.queue,
            idle_seconds=idle,
            stream_interval=envint("STREAM_INTERVAL_MS", 30, minimum=0) / 1000,
            publish_budget=envint("STREAM_PUBLISH_BUDGET", 500, minimum=0),
            scripted_logits=envbool("CHATWEB_SCRIPTED_LOGITS", False),
            # tests only: the token ids every request gets when it names no script
            default_script=[int(t) for t in os.environ.get("CHATWEB_SCRIPT", "").split(",") if t.strip()] or None,
            # tests only: {the last message's text: token ids}, for requests that cannot name a script
            scripts=json.loads(os.environ.get("CHATWEB_SCRIPTS") or "{}"),
        )
        set_current_host(host)  # for the chat turn's task (conversations.tasks), which Celery finds itself
        host.start()
        slots = concurrency or row.max_num_seqs
        consumer_watch.watch(host, row.queue, slots, stall_seconds=envint("WORKER_STALL_SECONDS", 30, minimum=0))
        self.stdout.write(f"worker {worker_name}: loading {row.path} (queue {row.queue})")
        try:
            app.worker_main(
                [
                    "worker",
                    "--pool=threads",
                    f"--concurrency={slots}",
                    f"--queues={row.queue}",
                    f"--hostname={worker_name}",
                    "--without-gossip",
                    "--without-mingle",
                    f"--loglevel={loglevel}",
                ]
            )
        finally:
            host.stop()
