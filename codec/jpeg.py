"""JPEG through Pillow (libjpeg-turbo): the reference codec and the hybrid's base layer."""

from __future__ import annotations

import functools
import io
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image

from .base import Codec, CodecResult, ParamSpec
from .container import Container
from .errors import BitstreamError

__all__ = ["JpegCodec", "jpeg_encode", "jpeg_decode", "abbreviate", "complete", "quant_tables",
           "SUBSAMPLING", "TABLES", "SCANS"]

# Pillow's ``subsampling`` argument for each user-facing name.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}

# Quantisation-table families, both scaled by quality as libjpeg scales its own:
# * ``standard``: the example tables of the JPEG standard (ITU-T T.81 Annex K), libjpeg's default,
#   weighted for the eye: coarse high frequencies, chroma coarser than luma;
# * ``psnr``: the same tables flattened (entry ∝ Annex-K entry ** 0.15) with chroma at 0.55 times
#   luma's scale, for PSNR-RGB, which weighs every frequency and chroma as much as the eye does not.
#   Exponent and chroma factor were chosen on 12 training images (never Kodak) by BD-rate against
#   ``standard`` over qualities 8-80: `scripts/tune_jpeg_tables.py`, 17.6 % fewer bits there.
# Any JPEG decoder reads either: the tables travel in the file.
TABLES = ("standard", "psnr")

# Scan modes: the same quantised coefficients, so the same decoded picture, in one sequential scan
# (baseline) or libjpeg's default progressive script, whose spectral-selection and
# successive-approximation scans give the entropy coder longer runs. On Kodak with the psnr
# tables, progressive is 1.4 % to 3.3 % smaller from quality 45 up and 2 % to 9 % larger below
# quality 20 (the script's many scans cost more than they save in small files); ``smallest``
# codes both and keeps the shorter. Any JPEG decoder reads either.
SCANS = ("baseline", "progressive", "smallest")
_ANNEX_K_LUMA = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55,
    14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62,
    18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99], dtype=np.float64)
_ANNEX_K_CHROMA = np.array([
    17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99,
    24, 26, 56, 99, 99, 99, 99, 99, 47, 66, 99, 99, 99, 99, 99, 99] + [99] * 32, dtype=np.float64)
PSNR_TABLE_EXPONENT = 0.15
PSNR_TABLE_CHROMA = 0.55


def quant_tables(quality: int, flatten: float = PSNR_TABLE_EXPONENT,
                 chroma: float = PSNR_TABLE_CHROMA) -> list[list[int]]:
    """The ``psnr`` family's [luma, chroma] tables at ``quality`` (natural order, as Pillow takes
    them): Annex K's raised to ``flatten`` about their DC entries, chroma times ``chroma``, scaled
    by libjpeg's quality rule (5000/q below 50, 200 − 2q above) and clipped to baseline's 1-255."""
    q = min(max(int(quality), 1), 100)
    scale = 5000 / q if q < 50 else 200 - 2 * q

    def scaled(table: np.ndarray) -> list[int]:
        return np.clip(np.floor((table * scale + 50) / 100), 1, 255).astype(int).tolist()

    luma = 16 * (_ANNEX_K_LUMA / 16) ** flatten
    chroma_t = chroma * 17 * (_ANNEX_K_CHROMA / 17) ** flatten
    return [scaled(luma), scaled(chroma_t)]


def jpeg_encode(image: np.ndarray, quality: int, subsampling: str = "4:2:0",
                tables: str | Sequence[Sequence[int]] = "standard", scan: str = "baseline") -> bytes:
    """Encode RGB uint8 as JPEG with optimised Huffman tables: the ``tables`` family at
    ``quality``, or explicit [luma, chroma] tables (natural order; ``quality`` is then unused),
    in the ``scan`` mode of :data:`SCANS`."""
    if isinstance(tables, str):
        if tables not in TABLES:
            raise ValueError(f"unknown quantisation tables {tables!r}; valid: {', '.join(TABLES)}")
        kwargs = {"quality": int(quality)} if tables == "standard" else {"qtables": quant_tables(quality)}
    else:
        kwargs = {"qtables": [list(t) for t in tables]}
    if scan not in SCANS:
        raise ValueError(f"unknown scan mode {scan!r}; valid: {', '.join(SCANS)}")
    picture = Image.fromarray(image, "RGB")

    def coded(progressive: bool) -> bytes:
        buf = io.BytesIO()
        picture.save(buf, format="JPEG", subsampling=SUBSAMPLING[subsampling], optimize=True,
                     progressive=progressive, **kwargs)
        return buf.getvalue()

    if scan == "smallest":
        return min(coded(False), coded(True), key=len)
    return coded(scan == "progressive")


# JFIF markers: start of image, start of scan, define quantisation tables; APP0-APP15 and COM
# carry nothing a decoder needs (three components are YCbCr without a JFIF marker too).
_SOI, _SOS, _DQT = 0xD8, 0xDA, 0xDB
_DROPPABLE = frozenset(range(0xE0, 0xF0)) | {0xFE}


def _segments(data: bytes) -> list[tuple[int, int, int]] | None:
    """(marker, start, end) of each marker segment between SOI and the first SOS (the SOS
    segment's header included), or None where ``data`` is not such a stream."""
    if data[:2] != bytes([0xFF, _SOI]):
        return None
    out, i = [], 2
    while i + 4 <= len(data) and data[i] == 0xFF:
        marker, length = data[i + 1], int.from_bytes(data[i + 2:i + 4], "big")
        if length < 2 or i + 2 + length > len(data):
            return None
        out.append((marker, i, i + 2 + length))
        if marker == _SOS:
            return out
        i += 2 + length
    return None


def abbreviate(data: bytes) -> bytes:
    """``data`` without its application and comment segments and its quantisation tables: the
    hybrid's base layer, whose tables follow from its header's quality and table family
    (:func:`complete`), as an abbreviated JPEG stream (ITU-T T.81 B.4) carries them elsewhere."""
    segs = _segments(data)
    if segs is None:
        raise ValueError("not a JPEG stream")
    kept = [data[a:b] for m, a, b in segs if m != _DQT and m not in _DROPPABLE]
    return data[:2] + b"".join(kept) + data[segs[-1][2]:]


@functools.lru_cache(maxsize=256)
def _table_segments(quality: int, tables: str) -> bytes:
    """The DQT segments :func:`jpeg_encode` writes at ``quality`` with ``tables``."""
    full = jpeg_encode(np.zeros((8, 8, 3), np.uint8), quality, tables=tables)
    return b"".join(full[a:b] for m, a, b in _segments(full) if m == _DQT)


def complete(data: bytes, quality: int, tables: str) -> bytes:
    """A decodable JPEG stream from the hybrid's base-layer section: the quantisation tables of
    ``quality`` and ``tables`` inserted where :func:`abbreviate` removed them; a stream that has
    its tables (files written before the base was abbreviated) unchanged."""
    segs = _segments(data)
    if segs is None or any(m == _DQT for m, _, _ in segs):
        return data  # jpeg_decode names what is wrong with a stream that is not one
    return data[:2] + _table_segments(int(quality), tables) + data[2:]


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
    """JPEG, quality 1-100, 4:2:0 or 4:4:4 chroma; baseline by default (the reference)."""

    name = "jpeg"
    codec_id = 1
    title = "JPEG"
    params = (
        ParamSpec("quality", "int", 75, "JPEG quality (libjpeg scale)", 1, 100,
                  sweep=(5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95), rate_knob=True),
        ParamSpec("subsampling", "choice", "4:2:0", "chroma subsampling",
                  choices=tuple(SUBSAMPLING)),
        ParamSpec("tables", "choice", "standard",
                  "quantisation tables: standard (Annex K, libjpeg's default) or psnr (flatter, "
                  "finer chroma: fewer bits for the same PSNR)", choices=TABLES),
        ParamSpec("scan", "choice", "baseline",
                  "baseline (one sequential scan), progressive, or smallest (codes both, keeps the "
                  "shorter); the picture is the same", choices=SCANS),
    )

    def required_sections(self, params):
        return ("jpeg",)

    def _encode(self, image: np.ndarray, params: dict[str, Any]) -> CodecResult:
        h, w = image.shape[:2]
        t0 = time.perf_counter()
        payload = jpeg_encode(image, params["quality"], params["subsampling"], params["tables"],
                              params["scan"])
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
