"""The catalogue of images the views can show, built from the codecs' results (no Qt).

Every view (grid, wipe, error, bands, export) picks from the same list of :class:`Panel` s, so
a new intermediate a codec returns shows up everywhere at once. Rules: a codec's decoded image
is one panel; each ``(H, W, 3)`` intermediate at the decoded size is another (uint8 = picture,
float = signed data such as a residual, shown mid-grey at zero); other shapes (latent band
maps) belong to the Bands view. Intermediates identical to the decoded image are not repeated.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

from .state import EncodeOutcome, ImageSource

__all__ = ["Panel", "collect_panels", "short_title", "signed_to_rgb", "signed_error", "abs_error", "luma",
           "FRIENDLY_NAMES"]

# Display order of known intermediates (the hybrid's data flow); unknown ones follow.
_ORDER = ["jpeg_base", "residual", "residual_decoded", "base_plus_residual", "refined", "refined_discarded",
          "before_postfilter"]
FRIENDLY_NAMES = {
    "jpeg_base": "JPEG base",
    "residual": "residual (true)",
    "residual_decoded": "residual (decoded)",
    "base_plus_residual": "base + residual",
    "refined": "refined",
    "refined_discarded": "refined (not kept)",
    "before_postfilter": "before post-filter",
    "reconstruction": "reconstruction",
}


def short_title(title: str) -> str:
    """``"HyRES (JPEG + neural residual)"`` → ``"HyRES"``: panel labels must stay short."""
    return title.split(" (")[0].strip() or title


@dataclass(frozen=True)
class Panel:
    """One displayable image.

    Attributes:
        key: stable id (``"original"``, ``"jpeg"``, ``"hybrid:residual"``).
        kind: ``"picture"`` (uint8 RGB) or ``"signed"`` (float RGB, 0 = no change).
        data: the array at the resolution it was coded at (a preview while dragging).
        original: the source image at that same resolution (what metrics compare against).
        extent: the full-resolution ``(width, height)``: every panel is placed on the same
            pixel grid, so zoom and pan stay in sync when a preview is shown.
        codec: the codec it came from (None for the original).
    """

    key: str
    title: str
    kind: str
    data: np.ndarray
    original: np.ndarray
    extent: tuple[int, int]
    codec: str | None = None
    subtitle: str = ""

    @property
    def is_picture(self) -> bool:
        return self.kind == "picture"

    @property
    def scale(self) -> float:
        """Full-resolution pixels per data pixel (1 unless this is a preview)."""
        return self.extent[0] / self.data.shape[1]


def _is_rgb(arr: object, hw: tuple[int, int]) -> bool:
    return isinstance(arr, np.ndarray) and arr.ndim == 3 and arr.shape[2] == 3 and arr.shape[:2] == hw


def collect_panels(source: ImageSource, outcomes: Mapping[str, EncodeOutcome],
                   titles: Mapping[str, str]) -> list[Panel]:
    """Original first, then per codec (in ``outcomes`` order) its decoded image and intermediates."""
    extent = (source.width, source.height)
    panels = [Panel("original", "Original", "picture", source.full, source.full, extent,
                    subtitle=f"{source.width}×{source.height}")]
    for name, out in outcomes.items():
        if not out.ok:
            continue
        res, m = out.result, out.metrics
        assert res is not None and m is not None
        original = source.pick(out.preview)[0]
        title = titles.get(name, name)
        sub = f"{m.bpp:.3f} bpp · {m.psnr:.2f} dB"
        panels.append(Panel(name, title, "picture", res.image, original, extent, name, sub))
        hw = res.image.shape[:2]
        names = sorted(res.intermediates, key=lambda k: (_ORDER.index(k) if k in _ORDER else len(_ORDER)))
        for iname in names:
            arr = res.intermediates[iname]
            if not _is_rgb(arr, hw) or arr is res.image or iname == "reconstruction":
                continue
            label = f"{title} · {FRIENDLY_NAMES.get(iname, iname.replace('_', ' '))}"
            if arr.dtype == np.uint8:
                psnr = m.intermediate_psnr.get(iname)
                sub = ("= output" if iname in m.same_as_output
                       else f"{psnr:.2f} dB" if psnr is not None else "")
                panels.append(Panel(f"{name}:{iname}", label, "picture", arr, original, extent, name, sub))
            elif np.issubdtype(arr.dtype, np.floating):
                panels.append(Panel(f"{name}:{iname}", label, "signed", arr, original, extent, name,
                                    "grey = 0"))
    return panels


def signed_to_rgb(arr: np.ndarray, gain: float) -> np.ndarray:
    """Signed data in [-1, 1] (a residual) as uint8 RGB: mid-grey at 0, ``gain`` × amplified."""
    out = np.clip(np.asarray(arr, dtype=np.float32) * (127.5 * gain) + 127.5, 0, 255)
    return np.ascontiguousarray(np.round(out).astype(np.uint8))


def signed_error(decoded: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Mean over R, G, B of (decoded − original) in 8-bit units, float32: red = too bright."""
    d = decoded.astype(np.float32) - original.astype(np.float32)
    return np.ascontiguousarray(d.mean(axis=2))


def abs_error(decoded: np.ndarray, original: np.ndarray) -> np.ndarray:
    """Per-pixel RMS over R, G, B of the error, float32; its mean square is the PSNR's MSE."""
    d = decoded.astype(np.float32) - original.astype(np.float32)
    return np.ascontiguousarray(np.sqrt((d * d).mean(axis=2)))


def luma(image: np.ndarray) -> np.ndarray:
    """BT.601 luma of RGB, float64 (the Y the JPEG base codes)."""
    x = np.asarray(image, dtype=np.float64)
    return 0.299 * x[..., 0] + 0.587 * x[..., 1] + 0.114 * x[..., 2]
