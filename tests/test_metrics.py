"""Metrics against values computed by hand, and Bjøntegaard deltas on constructed curves."""

from __future__ import annotations

import math

import numpy as np
import pytest

from codec import metrics


def test_psnr_known_value():
    a = np.zeros((4, 4, 3), np.uint8)
    b = a.copy()
    b[0, 0, 0] = 16  # MSE = 256 / 48
    assert metrics.psnr(a, b) == pytest.approx(10 * math.log10(255 ** 2 * 48 / 256))
    assert metrics.psnr(a, a) == float("inf")


def test_psnr_rejects_mismatched_inputs():
    a = np.zeros((4, 4, 3), np.uint8)
    with pytest.raises(ValueError, match="shape"):
        metrics.psnr(a, a[:3])
    with pytest.raises(ValueError, match="uint8"):
        metrics.psnr(a, a.astype(np.float32))


def test_ms_ssim_identity_noise_and_small_images(rng):
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[:192, :192])
    assert metrics.ms_ssim(img, img) == pytest.approx(1.0)
    noisy = np.clip(img.astype(int) + rng.normal(0, 20, img.shape), 0, 255).astype(np.uint8)
    v = metrics.ms_ssim(img, noisy)
    assert 0.5 < v < 0.99
    assert metrics.ms_ssim_db(v) == pytest.approx(-10 * math.log10(1 - v))
    assert math.isnan(metrics.ms_ssim(img[:100, :100], img[:100, :100]))
    # computed in float32, as close to float64's value as the metric's tables print
    import torch
    from pytorch_msssim import ms_ssim

    def t(x):
        return torch.from_numpy(x.astype(np.float64)).permute(2, 0, 1)[None]

    assert abs(v - float(ms_ssim(t(img), t(noisy), data_range=255.0))) < 1e-6


def test_bpp():
    assert metrics.bpp(1000, 100, 80) == 1.0


CURVE = ([0.25, 0.5, 1.0, 2.0], [28.0, 31.0, 34.5, 38.0])


def test_bd_rate_against_itself_is_zero():
    assert metrics.bd_rate(CURVE, CURVE) == pytest.approx(0.0, abs=1e-9)


def test_bd_rate_half_rate_is_minus_fifty():
    half = ([r / 2 for r in CURVE[0]], CURVE[1])
    assert metrics.bd_rate(CURVE, half) == pytest.approx(-50.0)
    assert metrics.bd_rate(half, CURVE) == pytest.approx(100.0)


def test_bd_rate_uses_only_overlap_and_is_order_free():
    shifted = (CURVE[0][::-1], [q + 1.0 for q in CURVE[1]][::-1])
    v = metrics.bd_rate(CURVE, shifted)
    assert v < 0
    far = ([0.1, 0.2], [50.0, 51.0])
    assert math.isnan(metrics.bd_rate(CURVE, far))


@pytest.mark.parametrize("short", [([0.5], [31.0]), ([0.5, 0.5], [31.0, 31.0]), ([0.5, math.nan], [31.0, 32.0])])
def test_a_curve_of_one_usable_point_has_no_bd_value(short):
    for f in (metrics.bd_rate, metrics.bd_psnr):
        assert math.isnan(f(CURVE, short)) and math.isnan(f(short, CURVE))


def test_bd_psnr_constant_offset():
    up = (CURVE[0], [q + 0.7 for q in CURVE[1]])
    assert metrics.bd_psnr(CURVE, up) == pytest.approx(0.7)
