"""Horizontal strips of a picture, for layers run strip by strip (with a halo of rows beyond
their convolutions' reach, which is then dropped) so that thin full-resolution feature maps stay
in the CPU's cache."""

from __future__ import annotations

from typing import Iterator

__all__ = ["row_strips"]


def row_strips(height: int, rows: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """``(top, bottom, lo, hi)`` of each strip of ``rows`` rows: the rows it keeps and, ``halo``
    more on either side within the picture, the rows it is computed on."""
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        yield top, bottom, max(0, top - halo), min(height, bottom + halo)
