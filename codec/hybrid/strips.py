"""Horizontal strips of a picture, for layers run strip by strip (with a halo of rows beyond
their convolutions' reach, which is then dropped) so that thin full-resolution feature maps stay
in the CPU's cache."""

from __future__ import annotations

from typing import Iterator

import torch

__all__ = ["row_strips", "use_strips"]


def use_strips(picture: torch.Tensor, rows: int, halo: int) -> bool:
    """Whether a layer fed ``picture`` (N, C, H, W) runs in strips of ``rows`` rows and ``halo``:
    on a CPU (on a GPU the whole picture's maps are not what waits, and each strip costs its own
    kernel launches), without gradients (autograd would keep every strip's maps), at even sizes
    (the layers pair full-resolution rows with half-resolution ones), and where the picture is
    taller than one strip and its halos."""
    height, width = picture.shape[-2:]
    return (picture.device.type == "cpu" and not torch.is_grad_enabled() and height % 2 == 0
            and width % 2 == 0 and height > rows + 2 * halo)


def row_strips(height: int, rows: int, halo: int) -> Iterator[tuple[int, int, int, int]]:
    """``(top, bottom, lo, hi)`` of each strip of ``rows`` rows: the rows it keeps and, ``halo``
    more on either side within the picture, the rows it is computed on."""
    for top in range(0, height, rows):
        bottom = min(height, top + rows)
        yield top, bottom, max(0, top - halo), min(height, bottom + halo)
