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


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for modules of tiny models: they gain nothing from intra-op threads and,
    on a busy 2-core machine, thread contention makes their steps ten times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def needs_kodak():
    return pytest.mark.skipif(not KODAK.is_dir(), reason=f"needs the Kodak set at {KODAK} (../shared/data)")
