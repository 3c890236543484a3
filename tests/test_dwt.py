"""The Haar DWT/IDWT: agreement with PyWavelets, perfect reconstruction, gradients."""

import numpy as np
import pytest
import pywt
import torch

from codec.dwt import BANDS, PYWT_NAMES, dwt, dwt_stacked, idwt, idwt_stacked


def test_bands_match_pywavelets(rng):
    x = rng.standard_normal((2, 3, 6, 10))
    bands = dwt(torch.from_numpy(x))
    for n in range(2):
        for c in range(3):
            cA, (cH, cV, cD) = pywt.dwt2(x[n, c], "haar")
            ref = {"cA": cA, "cH": cH, "cV": cV, "cD": cD}
            for name, band in zip(BANDS, bands):
                np.testing.assert_allclose(band[n, c].numpy(), ref[PYWT_NAMES[name]], atol=1e-12)


@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 5, 8, 6), (1, 3, 32, 64)])
def test_perfect_reconstruction(shape):
    x = torch.randn(shape, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(idwt(*dwt(x)), x, atol=1e-5)
    assert torch.allclose(idwt_stacked(dwt_stacked(x)), x, atol=1e-5)
    # orthonormal: energy is preserved
    assert torch.allclose(sum(b.pow(2).sum() for b in dwt(x)), x.pow(2).sum(), rtol=1e-5)


def test_differentiable():
    x = torch.randn(1, 2, 4, 4, requires_grad=True)
    ll, lh, hl, hh = dwt(x)
    (ll.sum() + 2 * hh.pow(2).sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_odd_size_refused():
    with pytest.raises(ValueError, match="even"):
        dwt(torch.zeros(1, 1, 3, 4))
