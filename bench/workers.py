"""The Celery worker the benchmarks start: one of the project's, in a process group of its own."""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def worker_start(name: str, env: dict, *, concurrency: int = 2, stderr=None) -> subprocess.Popen:
    """`celery -A config worker` named `name@host`, quiet but for warnings (stderr: where they go)."""
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "config",
            "worker",
            "--concurrency",
            str(concurrency),
            "--loglevel",
            "WARNING",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
            "-n",
            f"{name}@%h",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=stderr,
    )


def worker_stop(worker: subprocess.Popen, *, timeout: float = 30) -> None:
    """Stop the worker and its pool processes (its whole process group)."""
    os.killpg(worker.pid, signal.SIGTERM)
    worker.wait(timeout=timeout)
