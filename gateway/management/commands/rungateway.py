"""Start the whole gateway in one process group: web (granian), worker and beat (Celery).

The web server is granian in WSGI mode: HTTP parsing and connection handling run outside the
interpreter, leaving the GIL to Django; it answered more submits and polls per second than
gunicorn's gthread workers with as many processes (docs/measurements.md, "Web server").
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from gateway.env import env_int, env_str
from gateway.metrics_dir import reset_metrics_dir


def web_command(python: str, *, host: str, port: int, workers: int, threads: int) -> list[str]:
    """The production web server: ``workers`` processes, each running requests on ``threads``.

    Each thread keeps its own database connection, so a web host holds up to workers x threads
    of them. Crashed workers are replaced; a graceful stop waits up to 30 s for requests.
    No line per request unless ``GRANIAN_LOG_ACCESS_ENABLED=true`` is set (README, "Logs").
    """
    return [
        python,
        "-m",
        "granian",
        "--interface",
        "wsgi",
        "gateway.wsgi:application",
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--blocking-threads",
        str(threads),
        "--no-ws",
        "--respawn-failed-workers",
        "--workers-kill-timeout",
        "30",
    ]


class Command(BaseCommand):
    help = "Migrate, then run the web server, a Celery worker and Celery beat until interrupted."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=env_str("HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=env_int("PORT", 8000, minimum=1, maximum=65535)
        )
        parser.add_argument(
            "--web-workers", type=int, default=env_int("WEB_CONCURRENCY", 2, minimum=1)
        )
        parser.add_argument(
            "--web-threads", type=int, default=env_int("WEB_THREADS", 12, minimum=1)
        )

    def handle(self, *args: Any, **options: Any) -> None:
        call_command("migrate", interactive=False, verbosity=0)
        call_command("collectstatic", interactive=False, verbosity=0)
        # The children inherit PROMETHEUS_MULTIPROC_DIR (the settings set it) and write there.
        reset_metrics_dir(settings.GATEWAY_METRICS_DIR)
        python = sys.executable
        commands = {
            "web": web_command(
                python,
                host=options["host"],
                port=options["port"],
                workers=options["web_workers"],
                threads=options["web_threads"],
            ),
            "worker": [python, "-m", "celery", "-A", "gateway", "worker", "--loglevel", "INFO"],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "gateway",
                "beat",
                "--loglevel",
                "INFO",
                "--schedule",
                settings.CELERY_BEAT_SCHEDULE_FILENAME,
            ],
        }
        # Each child in a session of its own: Ctrl-C in a terminal reaches this process alone,
        # which stops each child with one SIGTERM. Granian, signalled a second time while it
        # stops, waits out its workers' kill timeout.
        children = {
            name: subprocess.Popen(cmd, start_new_session=True) for name, cmd in commands.items()
        }
        database = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        broker = settings.CELERY_BROKER_URL.split("://", 1)[0]
        url = f"http://{options['host']}:{options['port']}"
        self.stdout.write(
            f"\nGateway running at {url} (database: {database}, broker: {broker}).\n"
            f"Create a key:   {python} manage.py create_virtual_key --name my-app\n"
            f"Submit a job:   curl -X POST {url}/v1/async/completions "
            "-H 'Authorization: Bearer sk-bf-…' -H 'Content-Type: application/json' "
            '-d \'{"model": "openai/gpt-4o-mini", "prompt": "Say hi"}\'\n'
            f"API document:   {url}/openapi.json   Admin: {url}/admin/ "
            "(python manage.py createsuperuser)\nPress Ctrl-C to stop.\n"
        )
        self._supervise(children)

    def _supervise(self, children: dict[str, subprocess.Popen[bytes]]) -> None:
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        try:
            while not stopping:
                for name, child in children.items():
                    if child.poll() is not None:
                        self.stderr.write(f"{name} exited with {child.returncode}; stopping.")
                        stopping = True
                time.sleep(0.5)
        finally:
            for child in children.values():
                if child.poll() is None:
                    child.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + 60
            for child in children.values():
                try:
                    child.wait(timeout=max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    child.kill()
