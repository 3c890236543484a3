"""Pack a training set small enough to travel: downscale large images, store them as JPEG.

A lent GPU machine receives the working tree and nothing else, under a size limit that the
150 training PNGs (120 MB) exceed. Downscaling the large photographs to Kodak's scale (longest
side 768) and storing every image as 4:4:4 JPEG at quality 95 brings them to about a sixth
of that; the storage error (about 45 dB) sits far above the rates the codecs are trained for.
The pack records its source and settings in ``PACK.json`` so that a run trained on it says
what it saw.
"""

from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from codec.errors import ParameterError

from .data import find_images

__all__ = ["PACK_INFO", "pack_images", "read_pack_info"]

PACK_INFO = "PACK.json"


def pack_images(src: str | Path, dst: str | Path, max_side: int = 768, quality: int = 95) -> dict:
    """Write every image under ``src`` to ``dst`` (same relative paths, ``.jpg``); return the summary.

    Images whose longest side exceeds ``max_side`` are shrunk (Lanczos) to fit it, aspect kept.
    """
    if max_side < 64:
        raise ParameterError(f"--max-side {max_side} is too small (64 or more)")
    if not 1 <= quality <= 100:
        raise ParameterError(f"--quality {quality} must be in 1..100")
    src, dst = Path(src), Path(dst)
    if dst.resolve() == src.resolve() or src.resolve() in dst.resolve().parents:
        raise ParameterError(f"the pack folder {dst} must lie outside {src}")
    paths = find_images(src)
    shrunk = 0
    pixels = 0
    size = 0
    for path in paths:
        with Image.open(path) as im:
            img = im.convert("RGB")
        scale = max_side / max(img.size)
        if scale < 1:
            img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))),
                             Image.Resampling.LANCZOS)
            shrunk += 1
        out = dst / path.relative_to(src).with_suffix(".jpg")
        out.parent.mkdir(parents=True, exist_ok=True)
        img.save(out, "JPEG", quality=quality, subsampling=0)
        pixels += img.width * img.height
        size += out.stat().st_size
    summary = {"source": str(src), "images": len(paths), "downscaled": shrunk, "max_side": max_side,
               "jpeg_quality": quality, "subsampling": "4:4:4", "megapixels": round(pixels / 1e6, 2),
               "bytes": size}
    (dst / PACK_INFO).write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def read_pack_info(folder: str | Path) -> dict | None:
    """The summary a pack left in ``folder``, or None for an ordinary image folder."""
    path = Path(folder) / PACK_INFO
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ParameterError(f"{path} is not a readable pack summary: {err}") from None
