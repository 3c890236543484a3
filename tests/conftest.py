"""Shared fixtures. Test data lives beside the tests or is generated; ../shared is optional."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO.parent / "shared" / "data"
KODAK = SHARED_DATA / "kodak"


@pytest.fixture(scope="session")
def photo() -> np.ndarray:
    """A real photograph bundled with scikit-image (astronaut, 512x512), cropped to 96x128."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[100:196, 150:278])


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def needs_kodak():
    return pytest.mark.skipif(not KODAK.is_dir(), reason=f"needs the Kodak set at {KODAK} (../shared/data)")
