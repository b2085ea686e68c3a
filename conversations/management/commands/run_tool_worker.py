"""Start a tool worker: a Celery worker on TOOLS_QUEUE that runs the built-in python tool's
calls in bubblewrap, off the inference workers (conversations/builtin/remote.py).

TOOLS_QUEUE=tools python manage.py run_tool_worker [--concurrency 4]
"""

from __future__ import annotations

import socket

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.builtin import sandbox


class Command(BaseCommand):
    help = "Run a tool worker: python calls of the built-in tool, in the sandbox, from TOOLS_QUEUE."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=int, default=4, help="calls at once")
        parser.add_argument("--name", default="tools", help="worker name (default: tools)")
        parser.add_argument("--loglevel", default="INFO")

    def handle(self, *, concurrency: int, name: str, loglevel: str, **options) -> None:
        from chatweb.celery import app

        if not settings.TOOLS_QUEUE:
            raise CommandError("TOOLS_QUEUE is not set: name the queue the inference workers send python calls to")
        why = sandbox.available()
        if why is not None:
            raise CommandError(f"the sandbox cannot run here: {why}")
        self.stdout.write(f"tool worker {name}: queue {settings.TOOLS_QUEUE}, sandbox files in {settings.SANDBOX_DIR}")
        app.worker_main(
            [
                "worker",
                "--pool=threads",  # a call is a subprocess and a wait: threads are enough
                f"--concurrency={concurrency}",
                f"--queues={settings.TOOLS_QUEUE}",
                f"--hostname={name}@{socket.gethostname()}",
                "--without-gossip",
                "--without-mingle",
                f"--loglevel={loglevel}",
            ]
        )
