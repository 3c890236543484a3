"""2-D DWT band decomposition and its mosaic, for the Bands view (no Qt).

Band naming (the literature is split, so it is spelled out): the first letter is the filter
along x (horizontal), the second along y. ``HL`` = PyWavelets ``cV`` (high-pass in x: vertical
edges), ``LH`` = ``cH`` (high-pass in y: horizontal edges), ``HH`` = ``cD``. Level 1 is the
finest. The mosaic is laid out as in JPEG 2000 (Taubman & Marcellin 2002): LL top-left, HL
top-right, LH bottom-left, HH bottom-right, recursively.

``mode="periodization"`` keeps band sizes at ceil(N / 2) per level, and for orthogonal
wavelets (haar, db*, sym*) preserves energy, so the per-band energy shares sum to the image's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Band", "WAVELETS", "BAND_NAMING", "dwt_bands", "band_energies", "Mosaic", "mosaic"]

WAVELETS = ("haar", "db2", "db4", "sym4", "bior2.2", "bior4.4")
BAND_NAMING = ("LL: low-pass in x and y · HL: high-pass in x (vertical edges, pywt cV) · "
               "LH: high-pass in y (horizontal edges, pywt cH) · HH: diagonal (pywt cD) · "
               "level 1 = finest")
_PYWT_NAME = {"LH": "cH", "HL": "cV", "HH": "cD", "LL": "cA"}


@dataclass(frozen=True)
class Band:
    name: str           # "LL", "HL", "LH", "HH"
    level: int          # 1 = finest
    coeffs: np.ndarray  # float64

    @property
    def label(self) -> str:
        return f"{self.name}{self.level}"

    @property
    def pywt_name(self) -> str:
        return _PYWT_NAME[self.name]

    @property
    def energy(self) -> float:
        """Sum of squared coefficients."""
        return float(np.sum(self.coeffs * self.coeffs))


def dwt_bands(channel: np.ndarray, wavelet: str = "haar", levels: int = 2,
              mode: str = "periodization") -> list[Band]:
    """All bands of a ``levels``-level 2-D DWT, coarsest first: LL_n, then (HL, LH, HH) per level."""
    import pywt

    x = np.asarray(channel, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"dwt_bands takes one 2-D channel, got shape {x.shape}")
    max_level = pywt.dwtn_max_level(x.shape, wavelet)
    levels = max(1, min(int(levels), max(1, max_level)))
    coeffs = pywt.wavedec2(x, wavelet, mode=mode, level=levels)
    out = [Band("LL", levels, coeffs[0])]
    for i, (ch, cv, cd) in enumerate(coeffs[1:]):
        level = levels - i
        out += [Band("HL", level, cv), Band("LH", level, ch), Band("HH", level, cd)]
    return out


def band_energies(bands: list[Band]) -> list[tuple[str, float, float]]:
    """``(label, mean square, share of the total sum of squares)`` per band."""
    total = sum(b.energy for b in bands) or 1.0
    return [(b.label, b.energy / max(b.coeffs.size, 1), b.energy / total) for b in bands]


@dataclass(frozen=True)
class Mosaic:
    """The mosaic image in [0, 1] (NaN = background) and where each band sits ``(x, y, w, h)``."""

    image: np.ndarray
    tiles: tuple[tuple[Band, int, int, int, int], ...]


def _scale(values: np.ndarray) -> float:
    a = np.abs(values)
    s = float(np.percentile(a, 99.5)) if a.size else 0.0
    return s if s > 0 else (float(a.max()) if a.size and a.max() > 0 else 1.0)


def mosaic(bands: list[Band], normalise: str = "band") -> Mosaic:
    """Lay bands out JPEG 2000-style and map them to [0, 1] for display.

    Detail bands are signed: 0.5 is zero, ±0.5 the 99.5th percentile of |c| (per band, or over
    all detail bands when ``normalise="shared"``, which shows how energy falls with level).
    LL is mapped min..max on its own in both modes: it is not comparable to detail bands.
    """
    if normalise not in ("band", "shared"):
        raise ValueError(f"normalise={normalise!r}; valid: 'band', 'shared'")
    ll = bands[0]
    details = bands[1:]
    levels = ll.level
    shared = _scale(np.concatenate([b.coeffs.ravel() for b in details])) if details else 1.0
    by_level = {(b.name, b.level): b for b in details}
    # Block sizes from the coarsest level outwards.
    placed: list[tuple[Band, int, int]] = [(ll, 0, 0)]
    bh, bw = ll.coeffs.shape
    for level in range(levels, 0, -1):
        hl, lh, hh = by_level[("HL", level)], by_level[("LH", level)], by_level[("HH", level)]
        h, w = hl.coeffs.shape
        x0, y0 = max(bw, w), max(bh, h)
        placed += [(hl, x0, 0), (lh, 0, y0), (hh, x0, y0)]
        bh, bw = y0 + h, x0 + w
    img = np.full((bh, bw), np.nan, dtype=np.float32)
    tiles = []
    for band, x, y in placed:
        c = band.coeffs
        if band.name == "LL":
            lo, hi = float(c.min()), float(c.max())
            v = (c - lo) / (hi - lo) if hi > lo else np.full_like(c, 0.5)
        else:
            s = shared if normalise == "shared" else _scale(c)
            v = np.clip(0.5 + 0.5 * c / s, 0.0, 1.0)
        h, w = c.shape
        img[y:y + h, x:x + w] = v
        tiles.append((band, x, y, w, h))
    return Mosaic(img, tuple(tiles))
