"""Baseline JPEG through Pillow (libjpeg-turbo): the reference codec and the hybrid's base layer."""

from __future__ import annotations

import io
import time
from typing import Any

import numpy as np
from PIL import Image

from .base import Codec, CodecResult, ParamSpec
from .container import Container
from .errors import BitstreamError

__all__ = ["JpegCodec", "jpeg_encode", "jpeg_decode", "SUBSAMPLING"]

# Pillow's ``subsampling`` argument for each user-facing name.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}


def jpeg_encode(image: np.ndarray, quality: int, subsampling: str = "4:2:0") -> bytes:
    """Encode RGB uint8 as baseline JPEG with optimised Huffman tables."""
    buf = io.BytesIO()
    Image.fromarray(image, "RGB").save(
        buf, format="JPEG", quality=int(quality), subsampling=SUBSAMPLING[subsampling], optimize=True)
    return buf.getvalue()


def jpeg_decode(data: bytes, width: int, height: int) -> np.ndarray:
    """Decode JPEG bytes to RGB uint8, checking the size against what the container declares."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.format != "JPEG":
                raise BitstreamError(f"jpeg section holds {im.format} data, not JPEG")
            if im.size != (width, height):
                raise BitstreamError(
                    f"jpeg section is {im.size[0]}x{im.size[1]}, container says {width}x{height}")
            arr = np.asarray(im.convert("RGB"), dtype=np.uint8)
    except BitstreamError:
        raise
    except Exception as err:  # Pillow raises many types for corrupt data
        raise BitstreamError(f"jpeg section cannot be decoded: {err}") from None
    return np.ascontiguousarray(arr)


class JpegCodec(Codec):
    """Baseline JPEG, quality 1-100, 4:2:0 or 4:4:4 chroma."""

    name = "jpeg"
    codec_id = 1
    title = "JPEG"
    params = (
        ParamSpec("quality", "int", 75, "JPEG quality (libjpeg scale)", 1, 100,
                  sweep=(5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)),
        ParamSpec("subsampling", "choice", "4:2:0", "chroma subsampling",
                  choices=tuple(SUBSAMPLING)),
    )

    def required_sections(self, params):
        return ("jpeg",)

    def _encode(self, image: np.ndarray, params: dict[str, Any]) -> CodecResult:
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        payload = jpeg_encode(image, params["quality"], params["subsampling"])
        bitstream = self._container(w, h, params, {"jpeg": payload})
        t1 = time.perf_counter()
        decoded = jpeg_decode(payload, w, h)
        t2 = time.perf_counter()
        return CodecResult(self.name, params, bitstream, {"jpeg": payload}, decoded, w, h,
                           intermediates={"reconstruction": decoded},
                           encode_ms=(t1 - t0) * 1e3, decode_ms=(t2 - t1) * 1e3)

    def _decode(self, c: Container, params: dict[str, Any]) -> CodecResult:
        t0 = time.perf_counter()
        decoded = jpeg_decode(c.sections["jpeg"], c.width, c.height)
        ms = (time.perf_counter() - t0) * 1e3
        return CodecResult(self.name, params, b"", dict(c.sections), decoded, c.width, c.height,
                           intermediates={"reconstruction": decoded}, decode_ms=ms)
