"""Shared fixtures. torch is imported before anything can pull in Qt (as napari-convpaint does):
the other order has crashed on some machines when both load OpenMP runtimes."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch  # noqa: F401  (import order matters, see module docstring)

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("NAPARI_HITL_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(autouse=True)
def _sample_cache(tmp_path_factory, monkeypatch):
    """Keep the sample project out of the user's cache."""
    monkeypatch.setenv(
        "NAPARI_HITL_SAMPLE_DIR", str(tmp_path_factory.getbasetemp() / "sample-cache")
    )


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data``; tests that use it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
