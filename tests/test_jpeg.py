"""The JPEG codec and the parameter machinery every codec shares."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from codec import create, decode_bitstream, metrics
from codec.base import ParamSpec
from codec.errors import ParameterError
from codec.errors import BitstreamError
from codec.jpeg import SCANS, JpegCodec, abbreviate, complete, jpeg_decode, jpeg_encode


@pytest.mark.parametrize("shape", [(1, 1), (7, 13), (65, 33), (96, 128)])
def test_round_trip_any_size(photo, shape):
    img = np.ascontiguousarray(photo[: shape[0], : shape[1]])
    res = create("jpeg").encode(img, quality=60)
    assert res.image.shape == img.shape and res.image.dtype == np.uint8
    assert np.array_equal(decode_bitstream(res.bitstream).image, res.image)


def test_rate_and_quality_rise_with_the_knob(photo):
    codec = create("jpeg")
    results = [codec.encode(photo, **p) for p in codec.sweep_points()]
    bpps = [r.bpp for r in results]
    assert bpps == sorted(bpps)
    assert metrics.psnr(photo, results[-1].image) > metrics.psnr(photo, results[0].image) + 8


def test_444_costs_more_and_looks_better(photo):
    codec = create("jpeg")
    a = codec.encode(photo, quality=70, subsampling="4:2:0")
    b = codec.encode(photo, quality=70, subsampling="4:4:4")
    assert b.num_bytes > a.num_bytes
    assert metrics.psnr(photo, b.image) > metrics.psnr(photo, a.image)


def test_section_bpp_adds_up(photo):
    res = create("jpeg").encode(photo, quality=50)
    assert sum(res.section_bpp.values()) == pytest.approx(res.bpp)
    assert set(res.section_bpp) == {"jpeg", "container"}


def test_rejects_non_images():
    codec = create("jpeg")
    with pytest.raises(ParameterError, match="uint8"):
        codec.encode(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ParameterError, match="uint8"):
        codec.encode(np.zeros((0, 4, 3), np.uint8))


def test_param_spec_coercion():
    q = ParamSpec("q", "int", 5, minimum=1, maximum=10)
    assert q.coerce("7") == 7 and q.coerce(3.0) == 3
    for bad in ("x", 3.5, 11, None):
        with pytest.raises(ParameterError):
            q.coerce(bad)
    f = ParamSpec("r", "float", 0.5, minimum=0, maximum=1)
    assert f.coerce("0.25") == 0.25
    with pytest.raises(ParameterError):
        f.coerce("nan")
    b = ParamSpec("on", "bool", True)
    assert b.coerce("off") is False and b.coerce(1) is True
    with pytest.raises(ParameterError):
        b.coerce("maybe")
    c = ParamSpec("s", "choice", "a", choices=("a", "b"))
    with pytest.raises(ParameterError, match="not one of a, b"):
        c.coerce("z")


@pytest.mark.parametrize("quality", [1, 5, 30, 50, 80, 100])
def test_psnr_tables_are_flatter_with_finer_chroma_and_travel_in_the_file(photo, quality):
    from codec.jpeg import quant_tables

    luma, chroma = quant_tables(quality)
    assert len(luma) == len(chroma) == 64 and all(1 <= v <= 255 for v in luma + chroma)
    standard = create("jpeg").encode(photo, quality=quality)
    psnr_res = create("jpeg").encode(photo, quality=quality, tables="psnr")
    with Image.open(io.BytesIO(psnr_res.sections["jpeg"])) as im:
        assert [list(im.quantization[k]) for k in (0, 1)] == [luma, chroma]
    with Image.open(io.BytesIO(standard.sections["jpeg"])) as im:
        std_luma, std_chroma = (list(im.quantization[k]) for k in (0, 1))
    # flatter: the highest frequency is at most as coarse, and chroma no coarser than standard's
    assert luma[63] <= std_luma[63] and max(chroma) <= max(std_chroma)
    back = decode_bitstream(psnr_res.bitstream)
    assert back.params["tables"] == "psnr" and np.array_equal(back.image, psnr_res.image)


def test_psnr_tables_spend_fewer_bits_for_the_same_psnr(photo):
    """What they are for: on a photograph, the psnr family's curve lies left of standard's."""
    codec = create("jpeg")
    curves = {}
    for tables in ("standard", "psnr"):
        res = [codec.encode(photo, quality=q, tables=tables) for q in (20, 35, 50, 65, 80)]
        curves[tables] = ([r.bpp for r in res], [metrics.psnr(photo, r.image) for r in res])
    assert metrics.bd_rate(curves["standard"], curves["psnr"]) < -3.0


def _is_progressive(data: bytes) -> bool:
    with Image.open(io.BytesIO(data)) as im:
        return bool(im.info.get("progressive") or im.info.get("progression"))


@pytest.mark.parametrize("quality", [8, 85])
def test_scan_modes_code_the_same_picture_and_smallest_keeps_the_shorter(photo, quality):
    img = photo[:96, :128]
    coded = {s: jpeg_encode(img, quality, "4:2:0", "psnr", s) for s in SCANS}
    assert not _is_progressive(coded["baseline"]) and _is_progressive(coded["progressive"])
    assert coded["baseline"] != coded["progressive"]
    assert coded["smallest"] == min(coded["baseline"], coded["progressive"], key=len)
    h, w = img.shape[:2]
    pictures = [jpeg_decode(c, w, h) for c in coded.values()]
    assert all(np.array_equal(p, pictures[0]) for p in pictures)
    codec = JpegCodec()
    res = codec.encode(img, quality=quality, scan="smallest")
    assert np.array_equal(codec.decode(res.bitstream).image, res.image)
    assert codec.encode(img, quality=quality).sections["jpeg"] == jpeg_encode(img, quality)  # baseline by default
    with pytest.raises(ValueError, match="scan"):
        jpeg_encode(img, quality, scan="interlaced")


@pytest.mark.parametrize("tables", ["standard", "psnr"])
@pytest.mark.parametrize("scan", ["baseline", "progressive"])
def test_an_abbreviated_stream_completes_to_the_same_picture(photo, tables, scan):
    img = photo[:40, :56]
    whole = jpeg_encode(img, 35, "4:2:0", tables, scan)
    short = abbreviate(whole)
    assert len(whole) - len(short) == 156  # JFIF APP0 (18) and two tables (2 × 69)
    assert np.array_equal(jpeg_decode(complete(short, 35, tables), 56, 40), jpeg_decode(whole, 56, 40))
    assert complete(whole, 35, tables) == whole  # a stream with its tables stays as it is
    # other tables make another picture: the header's quality is what the decoder relies on
    assert not np.array_equal(jpeg_decode(complete(short, 80, tables), 56, 40), jpeg_decode(whole, 56, 40))


def test_completing_garbage_leaves_it_for_the_decoder_to_refuse(photo):
    short = abbreviate(jpeg_encode(photo[:16, :16], 50))
    for bad in (b"", b"\xff\xd8", b"GIF89a" + short, short[:len(short) // 2], short[:5] + b"\x00" + short[6:]):
        completed = complete(bad, 50, "standard")
        with pytest.raises(BitstreamError):
            jpeg_decode(completed, 16, 16)
    with pytest.raises(ValueError, match="not a JPEG"):
        abbreviate(b"\x89PNG")
