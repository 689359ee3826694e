import shutil
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures"
JULY3 = FIXTURES / "july3"


@pytest.fixture
def july3_bundle() -> Path:
    return JULY3 / "bundle"


@pytest.fixture
def small_bundle(tmp_path) -> Path:
    """The July 3 sample without its (large) mark prices: quick to import, easy to spoil."""
    folder = tmp_path / "bundle"
    folder.mkdir()
    for source in (JULY3 / "bundle").glob("*.jsonl"):
        shutil.copy(source, folder / source.name)
    return folder
