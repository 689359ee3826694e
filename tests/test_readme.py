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
