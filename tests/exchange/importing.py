"""Running the import_bundle command in tests, and reading what it left in the ledger."""

import io
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from exchange.importers import SPECS

ROOT = Path(__file__).resolve().parent.parent.parent


def import_bundle(path, *args):
    out, err = io.StringIO(), io.StringIO()
    call_command("import_bundle", str(path), *args, stdout=out, stderr=err)
    return out.getvalue()


def failing_import(path):
    err = io.StringIO()
    with pytest.raises(CommandError) as raised:
        call_command("import_bundle", str(path), stdout=io.StringIO(), stderr=err)
    return err.getvalue() + str(raised.value)


def row_counts():
    return {spec.name: spec.model.objects.count() for spec in SPECS}


def ledger_state():
    """Every stored ledger row, so a test can show that a failed import changed nothing."""
    return {spec.name: sorted(map(repr, spec.model.objects.values_list())) for spec in SPECS}


def append_line(bundle, filename, obj):
    with open(bundle / filename, "a") as f:
        f.write((obj if isinstance(obj, str) else json.dumps(obj)) + "\n")


def first_line(bundle, filename):
    with open(bundle / filename) as f:
        return json.loads(f.readline())


# --- the command in a process of its own, on a SQLite database file of its own ---


def child_env(db: Path, **overrides: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("IMPORT_")}  # the defaults are under test
    return env | {"DATABASE_URL": f"sqlite:///{db}", "SECRET_KEY": "test", **overrides}


# A child's peak memory counts what it shared with its parent when forked (here, all of pytest's):
# so a small process of its own forks the import and reports the import's peak alone.
PEAK_PROBE = """
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])
_, status, usage = os.wait4(pid, 0)
print(f"peak-kb={usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def import_in_a_process(bundle: Path, db: Path, **env: str) -> tuple[int, int, str]:
    """Exit status, peak resident memory in MB and output of `manage.py import_bundle`."""
    done = subprocess.run(
        [sys.executable, "-c", PEAK_PROBE, "manage.py", "import_bundle", str(bundle), "--by", "bomb-test"],
        cwd=ROOT,
        env=child_env(db, **env),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output, _, peak_kb = done.stdout.rpartition("peak-kb=")
    return done.returncode, int(peak_kb) // 1024, output


def last_run(db: Path) -> tuple[str, str, int]:
    with sqlite3.connect(db) as conn:
        status, errors = conn.execute("SELECT status, errors FROM exchange_importrun ORDER BY id DESC").fetchone()
        stored = sum(
            conn.execute(f"SELECT count(*) FROM exchange_{table}").fetchone()[0]
            for table in ("account", "asset", "market", "fill")
        )
    return status, errors, stored
