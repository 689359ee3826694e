import subprocess
import sys
from pathlib import Path

import pytest

from .importing import ROOT, child_env


@pytest.fixture(scope="session")
def migrated_sqlite(tmp_path_factory) -> Path:
    """A migrated SQLite database file the import processes share (the test database is not theirs)."""
    path = tmp_path_factory.mktemp("db") / "db.sqlite3"
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=child_env(path), check=True)
    return path
