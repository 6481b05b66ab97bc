"""Shared fixtures: the real AVE files in ../shared/data/ave (tests skip cleanly without them)."""
from pathlib import Path

import pytest

SHARED_AVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "ave"


@pytest.fixture(scope="session")
def real_ave_dir() -> Path:
    """The directory of the real small AVE files; skips the test when it is absent."""
    if not (SHARED_AVE / "Annotations.txt").is_file():
        pytest.skip(f"real AVE files not found at {SHARED_AVE}")
    return SHARED_AVE
