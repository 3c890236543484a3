"""The bench's peak-memory measurement: it must see memory that coding takes, even memory an
earlier codec freed into the C heap, and not count what was resident before."""

import sys

import numpy as np
import pytest

from codec.bench import FIXED_MMAP_THRESHOLD, _PeakMemory, _reset_high_water_mark

linux_only = pytest.mark.skipif(sys.platform != "linux" or not _reset_high_water_mark(),
                                reason="needs Linux's /proc/self/clear_refs and VmHWM")


def _touch(n_bytes: int) -> np.ndarray:
    return np.ones(n_bytes // 8)


def test_a_peak_inside_is_measured_and_what_was_resident_before_is_not():
    kept = _touch(64 * 2**20)  # resident before the measurement, and still after it
    with _PeakMemory("cpu") as mem:
        held = _touch(96 * 2**20)
        del held
    assert 80 <= mem.peak <= 140
    del kept


@linux_only
def test_memory_freed_into_the_heap_before_the_measurement_is_seen_when_reused():
    # Blocks under glibc's mmap threshold, freed below a live one (the pin), stay in the heap;
    # reusing them inside the measurement would not raise resident memory (0.3 MB measured
    # without the trim) unless the heap's free memory is handed back first.
    blocks = [bytearray(64 * 1024) for _ in range(1600)]
    pin = bytearray(64 * 1024)
    del blocks
    with _PeakMemory("cpu") as mem:
        blocks = [bytearray(64 * 1024) for _ in range(1600)]
        del blocks
    del pin
    assert mem.peak >= 80


_FREED_MB = """import ctypes

from codec.bench import _resident_bytes

_resident_bytes()  # psutil loaded before the allocations below, not amid them
first = bytearray(2**20)
del first  # by default this raises glibc's mmap threshold past 1 MiB
# Keep the heap's top from being trimmed, so that what is handed back is the mmap threshold's
# doing alone (without this, whether the freed blocks lie at the top depends on which holes
# earlier allocations left). Setting it also freezes the threshold where the line above left it.
ctypes.CDLL("libc.so.6").mallopt(-1, 2**30)  # M_TRIM_THRESHOLD
blocks = [bytearray(2**20) for _ in range(100)]
before = _resident_bytes()
del blocks
print((before - _resident_bytes()) / 2**20)
"""


@linux_only
@pytest.mark.parametrize("fixed", [False, True])
def test_the_memory_pass_environment_hands_freed_blocks_back_at_once(fixed):
    import os
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "MALLOC_MMAP_THRESHOLD_"}
    if fixed:
        env.update(FIXED_MMAP_THRESHOLD)
    out = subprocess.run([sys.executable, "-c", _FREED_MB], capture_output=True, text=True,
                         check=True, env=env)
    assert (float(out.stdout) >= 90) is fixed, out.stdout
