"""Reading user images into RGB uint8 arrays.

Everything a codec sees went through :func:`open_image`, so the codecs can assume an
``(H, W, 3)`` C-contiguous ``uint8`` array with ``H, W >= 1``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import ImageError

__all__ = ["open_image", "as_rgb_uint8", "ImageWarning", "DEFAULT_MAX_PIXELS"]

DEFAULT_MAX_PIXELS = 50_000_000

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview]


class ImageWarning(UserWarning):
    """Something was changed on the way in (alpha dropped, bit depth reduced); the image is usable."""


def _describe(source: ImageSource) -> str:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return "<bytes>"
    return str(source)


def open_image(source: ImageSource, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read an image file (path or encoded bytes) as an ``(H, W, 3)`` uint8 RGB array.

    EXIF orientation is applied; palette, grayscale, CMYK and 16-bit images are converted;
    an alpha channel is dropped with an :class:`ImageWarning`.

    Raises:
        ImageError: the file is missing, not an image, truncated, empty, or has more than
            ``max_pixels`` pixels.
    """
    name = _describe(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        if len(source) == 0:
            raise ImageError(name, "empty input (0 bytes)")
        fp = io.BytesIO(bytes(source))
    else:
        path = Path(source)
        if not path.exists():
            raise ImageError(name, "no such file")
        if path.is_dir():
            raise ImageError(name, "is a directory, not an image file")
        if path.stat().st_size == 0:
            raise ImageError(name, "empty file (0 bytes)")
        fp = path
    try:
        with Image.open(fp) as im:
            width, height = im.size
            if width <= 0 or height <= 0:
                raise ImageError(name, f"zero-size image ({width}x{height})")
            if width * height > max_pixels:
                raise ImageError(
                    name,
                    f"{width}x{height} = {width * height / 1e6:.1f} MP is above the limit of "
                    f"{max_pixels / 1e6:.1f} MP",
                )
            im.load()
            im = ImageOps.exif_transpose(im)
            return as_rgb_uint8(im, name)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(name, "not a recognised image format") from None
    except Image.DecompressionBombError as err:
        raise ImageError(name, f"image too large: {err}") from None
    except (OSError, SyntaxError, ValueError, EOFError) as err:
        # Pillow reports truncated or corrupt data as OSError / SyntaxError / ValueError.
        raise ImageError(name, f"cannot decode image data ({err})") from None


def as_rgb_uint8(im: Image.Image, name: str = "<image>") -> np.ndarray:
    """Convert any Pillow image to a C-contiguous ``(H, W, 3)`` uint8 RGB array."""
    mode = im.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in im.info) or (
        mode in ("RGB", "L") and "transparency" in im.info
    ):
        warnings.warn(f"{name}: alpha channel dropped (composited on nothing, colour kept)",
                      ImageWarning, stacklevel=3)
        im = im.convert("RGBA").convert("RGB")
    elif mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        top = float(arr.max(initial=0.0))
        if mode == "F":
            scale = 255.0 if top <= 1.0 else 1.0
        else:
            scale = 255.0 / 65535.0 if (mode.startswith("I;16") or top > 255) else 1.0
        if scale != 1.0:
            warnings.warn(f"{name}: {mode} image reduced to 8 bits", ImageWarning, stacklevel=3)
        arr = arr * scale
        gray = np.clip(np.round(arr), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))
    elif mode != "RGB":
        im = im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(name, f"unexpected pixel layout {arr.shape} after conversion from {mode}")
    return np.ascontiguousarray(arr)
