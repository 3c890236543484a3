"""The JPEG codec and the parameter machinery every codec shares."""

from __future__ import annotations

import numpy as np
import pytest

from codec import create, decode_bitstream, metrics
from codec.base import ParamSpec
from codec.errors import ParameterError


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
