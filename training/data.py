"""Training data: images decoded once into memory, random crops, and the hybrid's JPEG bases.

Decoding PNGs dominates a naive CPU pipeline, so every image of a rank's shard is read once
as uint8 and crops are cut from memory. The sampler owns its random generator; its state goes
into checkpoints so a resumed run draws exactly the crops the interrupted one would have.

The hybrid codec codes the residual over a JPEG base; the base of each crop is produced here
by the codec's own Pillow path (:func:`codec.jpeg.jpeg_encode` / :func:`jpeg_decode`) at a
quality drawn per crop, and its size in bits enters the rate term of the loss.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from codec.errors import ImageError, ParameterError
from codec.evaluate import list_images
from codec.image import open_image
from codec.jpeg import jpeg_decode, jpeg_encode

__all__ = ["Batch", "find_images", "load_images", "check_crop", "CropSampler", "BASE_SCAN", "AUGMENTATIONS"]

# What a crop may be turned into: ``flip`` mirrors it left-right half the time; ``dihedral`` turns
# it into one of the square's eight symmetries (rotations by quarter turns, each mirrored or not),
# eight crops where a set holds few images as large as the crop.
AUGMENTATIONS = ("flip", "dihedral")

log = logging.getLogger(__name__)

# Scan mode of the training bases. Every scan decodes to the same picture; only the base's bytes,
# a constant of the loss, differ. Validation codes its bases the same way, so that its logs stay
# comparable with those written before the scan could be chosen.
BASE_SCAN = "baseline"


class Batch(NamedTuple):
    """One training batch as uint8 arrays (converted to tensors by the trainer).

    Attributes:
        images: ``(N, H, W, 3)`` uint8 crops.
        bases: ``(N, H, W, 3)`` uint8 JPEG decodes of the crops, or None (no base layer).
        base_bits: ``(N,)`` float64 size of each crop's JPEG in bits, or None.
        qualities: ``(N,)`` JPEG qualities used, or None.
    """

    images: np.ndarray
    bases: np.ndarray | None
    base_bits: np.ndarray | None
    qualities: np.ndarray | None


def find_images(folder: str | Path) -> list[Path]:
    """Image files under ``folder`` (recursive, sorted), or a clear error when there are none."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ParameterError(f"data folder {folder} does not exist or is not a folder")
    paths = list_images(folder)
    if not paths:
        raise ParameterError(f"no images (png, jpg, …) found under {folder}")
    return paths


def load_images(paths: Sequence[Path], min_side: int = 1) -> list[np.ndarray]:
    """Decode ``paths`` as RGB uint8, skipping (with a warning) unreadable or too-small ones."""
    out = []
    small = 0
    for p in paths:
        try:
            img = open_image(p)
        except ImageError as err:
            log.warning("skipping %s", err)
            continue
        if min(img.shape[:2]) < min_side:
            small += 1
            continue
        out.append(img)
    if small:
        log.warning("skipped %d image(s) smaller than %d px on a side", small, min_side)
    return out


def check_crop(crop: int, stride: int) -> None:
    """Crops must tile the model's down-sampling exactly: a positive multiple of ``stride``."""
    if crop < stride or crop % stride:
        raise ParameterError(
            f"--crop {crop} must be a positive multiple of the model's stride {stride} "
            f"(e.g. {max(stride, crop - crop % stride) if crop >= stride else stride})")


class CropSampler:
    """Random square crops from an in-memory image list, each mirrored left-right half the time
    or, with ``augment="dihedral"``, turned into one of the square's eight symmetries.

    Images are drawn with probability proportional to their number of possible crop positions,
    so every pixel of the set is about equally likely to be seen. All randomness comes from
    the sampler's own generator (``seed``), whose state :meth:`state_dict` exports.
    """

    def __init__(self, images: Sequence[np.ndarray], crop: int, seed: int,
                 base_quality: tuple[int, int] | None = None, base_subsampling: str = "4:2:0",
                 base_tables: str = "standard", augment: str = "flip"):
        if augment not in AUGMENTATIONS:
            raise ParameterError(f"augmentation {augment!r} is not one of {', '.join(AUGMENTATIONS)}")
        self.augment = augment
        self.images = [img for img in images if min(img.shape[:2]) >= crop]
        if not self.images:
            raise ParameterError(f"no training image is at least {crop}x{crop} pixels")
        self.crop = crop
        self.base_quality = base_quality
        self.base_subsampling = base_subsampling
        self.base_tables = base_tables
        weights = np.array([(i.shape[0] - crop + 1) * (i.shape[1] - crop + 1) for i in self.images],
                           dtype=np.float64)
        self._p = weights / weights.sum()
        self.rng = np.random.default_rng(seed)

    def __len__(self) -> int:
        return len(self.images)

    def sample(self, batch: int) -> Batch:
        c = self.crop
        idx = self.rng.choice(len(self.images), size=batch, p=self._p)
        crops = np.empty((batch, c, c, 3), dtype=np.uint8)
        for k, i in enumerate(idx):
            img = self.images[i]
            y = int(self.rng.integers(0, img.shape[0] - c + 1))
            x = int(self.rng.integers(0, img.shape[1] - c + 1))
            patch = img[y:y + c, x:x + c]
            crops[k] = self._transformed(patch)
        if self.base_quality is None:
            return Batch(crops, None, None, None)
        lo, hi = self.base_quality
        qualities = self.rng.integers(lo, hi + 1, size=batch)
        bases = np.empty_like(crops)
        bits = np.empty(batch, dtype=np.float64)
        for k in range(batch):
            data = jpeg_encode(crops[k], int(qualities[k]), self.base_subsampling, self.base_tables,
                               BASE_SCAN)
            bases[k] = jpeg_decode(data, c, c)
            bits[k] = 8.0 * len(data)
        return Batch(crops, bases, bits, qualities)

    def _transformed(self, patch: np.ndarray) -> np.ndarray:
        if self.augment == "flip":
            return patch[:, ::-1] if self.rng.random() < 0.5 else patch
        symmetry = int(self.rng.integers(0, 8))
        turned = np.rot90(patch, symmetry % 4)
        return turned[:, ::-1] if symmetry >= 4 else turned

    def state_dict(self) -> dict[str, Any]:
        return {"bit_generator": self.rng.bit_generator.state, "num_images": len(self.images)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("num_images") != len(self.images):
            log.warning("data changed since the checkpoint (%s images, now %d): crops will differ",
                        state.get("num_images"), len(self.images))
        self.rng.bit_generator.state = state["bit_generator"]
