"""Plain data passed between the studio's worker threads and its widgets (no Qt, no torch).

Every number a card or plot shows is computed here from a :class:`codec.base.CodecResult` and
the original image at the same resolution: bpp from the bytes of the ``.lic`` file, PSNR-RGB
and MS-SSIM (:mod:`codec.metrics`) on the 8-bit decoded image.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field, replace
from typing import Any, Mapping, Sequence

import numpy as np
from PIL import Image

from codec.base import CodecResult, ParamSpec, rate_knob

__all__ = [
    "ImageSource",
    "make_source",
    "image_key",
    "params_key",
    "Metrics",
    "measure",
    "add_ms_ssim",
    "CodecSpec",
    "CodecStatus",
    "EncodeOutcome",
    "SweepPoint",
    "MatchOutcome",
    "quality_at_rate",
]


def image_key(image: np.ndarray) -> str:
    """A content hash: equal pixels give equal keys, so the result cache survives re-opening a file."""
    h = hashlib.blake2b(digest_size=12)
    h.update(repr(image.shape).encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def params_key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


@dataclass(frozen=True)
class ImageSource:
    """The image being studied, plus a downscaled copy coded while a slider is dragged.

    ``preview`` is None when the image is small enough to code at full size live.
    """

    name: str
    full: np.ndarray
    key: str
    preview: np.ndarray | None = None
    preview_key: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def width(self) -> int:
        return int(self.full.shape[1])

    @property
    def height(self) -> int:
        return int(self.full.shape[0])

    @property
    def has_preview(self) -> bool:
        return self.preview is not None

    def pick(self, preview: bool) -> tuple[np.ndarray, str]:
        """The pixels and cache key to code: the preview only when asked for and present."""
        if preview and self.preview is not None:
            return self.preview, self.preview_key  # type: ignore[return-value]
        return self.full, self.key


def make_source(image: np.ndarray, name: str, preview_side: int = 1024,
                notes: Sequence[str] = ()) -> ImageSource:
    """Wrap an RGB uint8 image; build a preview when its longer side exceeds ``preview_side``."""
    image = np.ascontiguousarray(image)
    h, w = image.shape[:2]
    preview = pkey = None
    if preview_side > 0 and max(h, w) > preview_side:
        s = preview_side / max(h, w)
        size = (max(1, round(w * s)), max(1, round(h * s)))
        preview = np.ascontiguousarray(
            np.asarray(Image.fromarray(image).resize(size, Image.Resampling.LANCZOS), dtype=np.uint8))
        pkey = image_key(preview)
    return ImageSource(name, image, image_key(image), preview, pkey, tuple(notes))


@dataclass(frozen=True)
class Metrics:
    """What a codec card shows for one coded image.

    ``ms_ssim_state`` is ``"pending"`` until the (slow) MS-SSIM has been computed, ``"done"``,
    or ``"n/a"`` for images too small for its five scales.
    """

    width: int
    height: int
    num_bytes: int
    bpp: float
    psnr: float
    encode_ms: float
    decode_ms: float
    section_bpp: dict[str, float] = field(default_factory=dict)
    ms_ssim: float = float("nan")
    ms_ssim_db: float = float("nan")
    ms_ssim_state: str = "pending"
    intermediate_psnr: dict[str, float] = field(default_factory=dict)
    same_as_output: frozenset[str] = frozenset()

    def as_dict(self) -> dict[str, Any]:
        return {
            "width": self.width, "height": self.height, "bytes": self.num_bytes, "bpp": self.bpp,
            "psnr_rgb_db": self.psnr, "ms_ssim": self.ms_ssim, "ms_ssim_db": self.ms_ssim_db,
            "encode_ms": self.encode_ms, "decode_ms": self.decode_ms,
            "section_bpp": dict(self.section_bpp),
        }


def measure(original: np.ndarray, result: CodecResult) -> Metrics:
    """Rate and PSNR of a result (fast); MS-SSIM is added later by :func:`add_ms_ssim`."""
    from codec import metrics

    state = "n/a" if min(original.shape[:2]) < metrics.MS_SSIM_MIN_SIDE else "pending"
    # Picture intermediates (a hybrid's JPEG base, base + residual) are measured here, in the
    # worker, so that the GUI thread never scans full-resolution arrays.
    inter, same = {}, set()
    for name, arr in result.intermediates.items():
        if (isinstance(arr, np.ndarray) and arr.dtype == np.uint8 and arr.shape == original.shape
                and arr is not result.image):
            if np.array_equal(arr, result.image):
                same.add(name)
            inter[name] = metrics.psnr(original, arr)
    return Metrics(
        width=result.width, height=result.height, num_bytes=result.num_bytes, bpp=result.bpp,
        psnr=metrics.psnr(original, result.image), encode_ms=result.encode_ms,
        decode_ms=result.decode_ms, section_bpp=dict(result.section_bpp), ms_ssim_state=state,
        intermediate_psnr=inter, same_as_output=frozenset(same))


def add_ms_ssim(m: Metrics, original: np.ndarray, decoded: np.ndarray) -> Metrics:
    if m.ms_ssim_state != "pending":
        return m
    from codec import metrics

    # torch.from_numpy warns on read-only arrays (Pillow's are): hand it writable copies.
    value = metrics.ms_ssim(*(a if a.flags.writeable else np.array(a) for a in (original, decoded)))
    if math.isnan(value):
        return replace(m, ms_ssim_state="n/a")
    return replace(m, ms_ssim=value, ms_ssim_db=metrics.ms_ssim_db(value), ms_ssim_state="done")


@dataclass(frozen=True)
class CodecSpec:
    """A codec's user-facing description, read from its class (before any weights load)."""

    name: str
    title: str
    learned: bool
    params: tuple[ParamSpec, ...]

    @property
    def rate_param(self) -> ParamSpec | None:
        return rate_knob(self.params)

    def defaults(self) -> dict[str, Any]:
        return {p.name: p.default for p in self.params}


@dataclass(frozen=True)
class CodecStatus:
    """A constructed codec: where it runs and which weights it holds."""

    name: str
    device: str
    weights: str
    trained: bool | None
    load_ms: float
    sweep_keys: tuple[str, ...] = ()


@dataclass(frozen=True)
class EncodeOutcome:
    """The answer to one encode request (``error`` set instead of ``result`` when it failed)."""

    request_id: int
    codec: str
    params: dict[str, Any]
    image_key: str
    preview: bool
    result: CodecResult | None = None
    metrics: Metrics | None = None
    error: str | None = None
    cached: bool = False

    @property
    def ok(self) -> bool:
        return self.result is not None and self.metrics is not None


@dataclass(frozen=True)
class SweepPoint:
    """One operating point of a background R-D sweep."""

    generation: int
    codec: str
    index: int
    total: int
    params: dict[str, Any]
    rate_value: Any
    bpp: float
    psnr: float
    ms_ssim: float = float("nan")
    ms_ssim_db: float = float("nan")
    error: str | None = None


@dataclass(frozen=True)
class MatchOutcome:
    """The rate setting a codec found for a target bpp (the closest it can reach)."""

    request_id: int
    codec: str
    target_bpp: float
    param: str
    value: Any
    bpp: float
    error: str | None = None


def quality_at_rate(bpps: Sequence[float], quality: Sequence[float], bpp: float) -> float:
    """Quality of a curve at ``bpp``, interpolated linearly in log-rate; NaN outside the curve.

    Used for "ΔPSNR vs JPEG at the same bpp": the JPEG sweep on the same image is the reference.
    """
    pts = sorted((b, q) for b, q in zip(bpps, quality)
                 if b > 0 and math.isfinite(b) and math.isfinite(q))
    if len(pts) < 2 or not (bpp > 0 and math.isfinite(bpp)):
        return float("nan")
    xs = np.log([p[0] for p in pts])
    ys = np.array([p[1] for p in pts])
    x = math.log(bpp)
    if x < xs[0] - 1e-12 or x > xs[-1] + 1e-12:
        return float("nan")
    return float(np.interp(x, xs, ys))
