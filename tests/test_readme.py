"""The README's API example, run as printed against the demo's data (simulate_incident with the
demo's users and seed), with curl, against a live server."""

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parent.parent
pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def readme_example() -> list[str]:
    """The shell block after "With `make demo` running", one command a line."""
    text = (ROOT / "README.md").read_text()
    block = re.search(r"With `make demo` running.*?```sh\n(.*?)```", text, re.S).group(1)
    return block.replace("\\\n", " ").strip().splitlines()


@pytest.fixture
def demo(tmp_path):
    """What `make demo` loads (Makefile: DEMO_USERS 200, DEMO_SEED 7), in a folder of its own."""
    data = tmp_path / "demo-data"
    call_command("simulate_incident", str(data), "--users", "200", "--seed", "7", stdout=io.StringIO())
    call_command("import_bundle", str(data), stdout=io.StringIO())
    call_command("load_incident", str(data / "incident.json"), stdout=io.StringIO())
    (tmp_path / ".venv").symlink_to(Path(sys.executable).resolve().parent.parent)
    return tmp_path


def test_the_readme_api_example_files_a_claim_on_the_demo_data(demo, live_server):
    token_line, *commands = readme_example()
    assert token_line.startswith("TOKEN=$(") and "create_api_client" in token_line
    out = io.StringIO()
    call_command("create_api_client", "front end", "--scope", "claims", stdout=out)  # the line the test runs itself
    token = re.search(r"Token \(shown once\): (\S+)", out.getvalue()).group(1)
    script = "\n".join(commands).replace("http://127.0.0.1:8000", live_server.url)

    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=demo,
        capture_output=True,
        text=True,
        env={**os.environ, "TOKEN": token},
        timeout=120,
    )

    assert result.returncode == 0, result.stderr
    filed, listed = [json.loads(line) for line in result.stdout.replace("}{", "}\n{").splitlines() if line]
    slug = json.loads((demo / "demo-data" / "incident.json").read_text())["slug"]
    assert filed["incident"] == slug and filed["kind"] == "liquidation"
    assert filed["status"] in ("matched", "approved")  # matching runs in the process without a broker
    assert [c["id"] for c in listed["results"]] == [filed["id"]]


def readme_payout_walkthrough() -> str:
    """The shell block under "From approval to payout", as printed."""
    text = (ROOT / "README.md").read_text()
    return re.search(r"## From approval to payout.*?```sh\n(.*?)```", text, re.S).group(1)


def make_demo_steps() -> list[str]:
    """The commands `make demo` runs before it serves (the Makefile's recipe, with its variables
    filled in as make would, and the runserver line left out)."""
    recipe = re.search(r"^demo: install\n((?:\t.*\n)+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    commands, current = [], ""
    for line in recipe.splitlines():
        line = line.removeprefix("\t").strip()
        current += line.removesuffix("\\") + " "
        if not line.endswith("\\"):
            commands.append(current.strip())
            current = ""
    values = {"DEMO_ENV": "", "BIN": ".venv/bin", "DEMO_DIR": "demo-data", "DEMO_USERS": "200", "DEMO_SEED": "7"}
    steps = []
    for command in commands:
        if command.startswith("@") or "runserver" in command:
            continue
        for name, value in values.items():
            command = command.replace(f"$({name})", value)
        steps.append(command.replace("$$", "$"))
    return steps


def test_the_readme_walks_from_approval_to_payout_as_printed(tmp_path):
    """A newcomer's clone: `make demo`'s steps, then the README's block line by line in bash; the
    only command that fails is the first reconcile, which the README says exits 1."""
    for entry in ("manage.py", "config", "claims", "exchange", "simulator", "templates", "static", "locale"):
        (tmp_path / entry).symlink_to(ROOT / entry)
    (tmp_path / ".venv").symlink_to(sys.prefix)  # the environment running the tests
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("CELERY_BROKER_URL", "SECRET_KEY") and not key.startswith("CLAIMDESK_")
    }
    env.update(DEBUG="1", STAFF_2FA="0", DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    failures = tmp_path / "failures"
    script = "\n".join(
        [
            "set -uo pipefail",
            f"trap 'echo \"$BASH_COMMAND\" >> {failures}' ERR",
            *[f"{step} || exit 99" for step in make_demo_steps()],
            readme_payout_walkthrough(),
        ]
    )

    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)

    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    failed = failures.read_text().splitlines() if failures.exists() else []
    assert failed == [".venv/bin/python manage.py reconcile $SLUG"], result.stderr[-3000:]
    slug = json.loads((tmp_path / "demo-data" / "incident.json").read_text())["slug"]
    payouts = tmp_path / "demo-data" / "payouts"
    assert (payouts / f"{slug}.1.csv").exists() and (payouts / f"{slug}.2.csv").exists()
    # The failed line's items were paid again in the second batch, one line for that (user, asset).
    first = (payouts / f"{slug}.1.csv").read_text().splitlines()
    second = (payouts / f"{slug}.2.csv").read_text().splitlines()
    assert first[0] == second[0] and len(second) == 2
    assert first[1].split(",")[1:] == second[1].split(",")[1:]  # userId, asset, amount
    assert re.search(r"^\d+ records, chain intact$", result.stdout, re.M)
