"""Validation with real entropy coding: bpp from the bytes of the ``.lic`` file, PSNR on uint8.

The training loss only estimates the rate (Σ −log2 p with uniform noise in place of rounding);
what the app ships is what the codec writes. So validation codes a few held-out images with
the registry codec built from the current weights, at a few of the codec's own operating
points, and checks that decoding the bytes reproduces the encoder's reconstruction.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import numpy as np

from codec import metrics
from codec.base import Codec
from codec.learned import POSTFILTER_PARAM

from .data import find_images, load_images

__all__ = ["ValImage", "load_val_images", "validation_points", "validate", "summarise", "sweep_folder"]

log = logging.getLogger(__name__)


class ValImage(NamedTuple):
    name: str
    pixels: np.ndarray


def load_val_images(folder: str | Path, count: int, crop: int = 0) -> list[ValImage]:
    """The first ``count`` images of ``folder`` (sorted), centre-cropped to ``crop`` px if > 0."""
    paths = find_images(folder)[:count] if count > 0 else []
    out = []
    for path, img in zip(paths, load_images(paths)):
        if crop > 0:
            h, w = img.shape[:2]
            ch, cw = min(crop, h), min(crop, w)
            y, x = (h - ch) // 2, (w - cw) // 2
            img = img[y:y + ch, x:x + cw]
        out.append(ValImage(path.name, np.array(img)))  # writable, contiguous
    return out


def validation_points(codec: Codec, count: int, rate: float | None = None,
                      knob_range: tuple[float, float] | None = None,
                      fixed: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """``count`` of the codec's sweep points, evenly spread from its lowest to highest rate,
    without the post-filter.

    With ``knob_range`` only sweep points whose rate knob lies in it count: a run validates
    where it trains, and a run that trains the default range keeps the points its earlier
    logs have, whatever the sweep adds outside it. With ``rate`` (fixed-λ training) the points
    keep their other parameters (e.g. the hybrid's JPEG quality) but code at that knob value.
    ``fixed``: settings the run trained with (e.g. the hybrid's JPEG tables), held at every point.
    """
    sweep = codec.sweep_points(fixed)
    if knob_range is not None:
        lo, hi = knob_range
        sweep = [p for p in sweep if lo <= p[codec.rate_param.name] <= hi]
    if count <= 0 or not sweep:
        return []
    idx = sorted({round(i * (len(sweep) - 1) / max(count - 1, 1)) for i in range(count)})
    # Validation follows what training changes, the model: the post-filter, fitted per image
    # outside it, stays off (as in every log before it existed).
    name = POSTFILTER_PARAM.name
    points = [{**sweep[i], **({name: "off"} if name in sweep[i] else {})} for i in idx]
    if rate is not None:
        knob = codec.rate_param.name
        for p in points:
            p[knob] = rate
        unique = {json.dumps(p, sort_keys=True): p for p in points}
        points = list(unique.values())
    return points


def validate(codec: Codec, images: Sequence[ValImage], points: Sequence[dict[str, Any]],
             check_decode: bool = True) -> list[dict[str, Any]]:
    """Code every image at every point; one row per (point, image) plus a ``"mean"`` row per point."""
    rows: list[dict[str, Any]] = []
    knob = codec.rate_param.name
    for params in points:
        per = []
        for im in images:
            res = codec.encode(im.pixels, **params)
            if check_decode:
                back = codec.decode(res.bitstream)
                if not np.array_equal(back.image, res.image):
                    raise RuntimeError(f"{codec.name} {params}: decode differs from the encoder's "
                                       f"reconstruction on {im.name}")
            row = {"image": im.name, "rate": float(params.get(knob, math.nan)),
                   "params": json.dumps(params, sort_keys=True), "bpp": res.bpp,
                   "psnr": metrics.psnr(im.pixels, res.image), "encode_ms": res.encode_ms}
            per.append(row)
        rows.extend(per)
        if per:
            rows.append({"image": "mean", "rate": per[0]["rate"], "params": per[0]["params"],
                         "bpp": float(np.mean([r["bpp"] for r in per])),
                         "psnr": float(np.mean([r["psnr"] for r in per])),
                         "encode_ms": float(np.mean([r["encode_ms"] for r in per]))})
    return rows


def summarise(rows: Sequence[dict[str, Any]], images: Sequence[ValImage]) -> dict[str, Any]:
    """The per-point means of :func:`validate`, as stored in checkpoints and the manifest."""
    return {
        "images": [im.name for im in images],
        "points": [{"params": json.loads(r["params"]), "bpp": round(r["bpp"], 5),
                    "psnr": round(r["psnr"], 4)} for r in rows if r["image"] == "mean"],
    }


def sweep_folder(codec: Codec, folder: str | Path, limit: int = 0):
    """``lic-codec eval``'s sweep (every sweep point, decode checked) over ``folder``.

    Returns ``(summary, curve)``: the summary as stored in the manifest's ``results``, the
    :class:`codec.evaluate.Curve` for a CompressAI-format JSON.
    """
    import sys

    from codec.evaluate import stderr_progress, sweep

    images = _first_images(folder, limit)
    progress = stderr_progress if sys.stderr.isatty() else None
    curve = sweep(codec, images, with_ms_ssim=False, progress=progress)
    summary = {"dataset": Path(folder).name, "images": len(images),
               "points": [{"params": p, "bpp": round(b, 5), "psnr": round(q, 4)}
                          for p, b, q in zip(curve.params, curve.bpp, curve.psnr)]}
    return summary, curve


def ceiling_folder(codec: Codec, folder: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """:func:`codec.evaluate.transform_ceiling` over the (first ``limit``) images of ``folder``."""
    from codec.evaluate import transform_ceiling

    return transform_ceiling(codec, _first_images(folder, limit))


def channel_usage_folder(codec: Codec, folder: str | Path, limit: int = 0) -> list[dict[str, Any]]:
    """:func:`codec.evaluate.channel_usage` over the (first ``limit``) images of ``folder``."""
    from codec.evaluate import channel_usage

    return channel_usage(codec, _first_images(folder, limit))


def _first_images(folder: str | Path, limit: int) -> list[Path]:
    """The images of ``folder`` in order, the first ``limit`` of them when ``limit`` > 0."""
    images = find_images(folder)
    return images[:limit] if limit > 0 else images
