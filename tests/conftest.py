"""Shared fixtures: one real local Ray per test session, real images, the shared data sets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
TWITTER_I = SHARED / "data" / "twitter_i"
BADINPUTS = SHARED / "badinputs" / "make_corpus.py"


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray with 2 CPUs, shared by the whole test session."""
    import ray

    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def twitter_dir() -> Path:
    """The Twitter I folder from ``../shared``; tests that need it skip without it."""
    if not (TWITTER_I / "labels.csv").is_file():
        pytest.skip(f"Twitter I data not found at {TWITTER_I} (research-only, lives in ../shared)")
    return TWITTER_I


@pytest.fixture(scope="session")
def badinputs_script() -> Path:
    """The hostile-corpus generator from ``../shared``; tests that need it skip without it."""
    if not BADINPUTS.is_file():
        pytest.skip(f"hostile corpus generator not found at {BADINPUTS}")
    return BADINPUTS


@pytest.fixture
def photo_dir(tmp_path: Path) -> Path:
    """A folder of 12 varied real photos (scikit-image samples), 100-600 px wide."""
    from artsy.testing import write_photos

    folder = tmp_path / "photos"
    write_photos(folder, 12, seed=7, max_side=600)
    return folder
