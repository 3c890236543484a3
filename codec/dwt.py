"""The one 2-D Haar DWT / IDWT of lic-studio, as fixed depthwise convolutions.

Used by the wavelet codec's WeConv transforms and latent split (Fu et al., "WeConvene: Learned
Image Compression with Wavelet-Domain Convolution and Entropy Model", ECCV 2024) and by the
app's band views, so every picture of "the LH band" means the same thing.

The filter taps come from PyWavelets (``pywt.Wavelet("haar")``); the 2x2 kernels are outer
products of the reversed decomposition filters, so for even-sized input the bands equal
``pywt.dwt2(x, "haar")`` exactly (up to float rounding). Haar is orthonormal, hence the inverse
is the transposed convolution with the same kernels: perfect reconstruction, differentiable,
no boundary handling (sizes must be even; callers pad)::

    x (N,C,H,W) ──conv 2x2 stride 2, groups=C──▶ LL, LH, HL, HH (N,C,H/2,W/2)
                ◀──conv_transpose (same taps)──

Band names and their PyWavelets counterparts (``cA, (cH, cV, cD) = pywt.dwt2(x, "haar")``):

====  =====  ==========================================================
name  pywt   filters (vertical ⊗ horizontal) — what it shows
====  =====  ==========================================================
LL    cA     low ⊗ low — the approximation (a half-size image)
LH    cH     high ⊗ low — horizontal details (edges running left-right)
HL    cV     low ⊗ high — vertical details (edges running top-bottom)
HH    cD     high ⊗ high — diagonal details
====  =====  ==========================================================
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F

__all__ = ["BANDS", "PYWT_NAMES", "HIGH_BANDS", "haar_kernels", "dwt", "idwt", "dwt_stacked",
           "idwt_stacked"]

BANDS = ("LL", "LH", "HL", "HH")
HIGH_BANDS = ("LH", "HL", "HH")
PYWT_NAMES = {"LL": "cA", "LH": "cH", "HL": "cV", "HH": "cD"}


@functools.lru_cache(maxsize=None)
def _kernels_cpu() -> torch.Tensor:
    import pywt

    w = pywt.Wavelet("haar")
    lo = torch.tensor(w.dec_lo[::-1], dtype=torch.float64)
    hi = torch.tensor(w.dec_hi[::-1], dtype=torch.float64)
    # (vertical, horizontal) filter pairs in BANDS order
    pairs = ((lo, lo), (hi, lo), (lo, hi), (hi, hi))
    return torch.stack([torch.outer(v, h) for v, h in pairs])  # (4, 2, 2)


def haar_kernels(dtype=torch.float32, device=None) -> torch.Tensor:
    """The four 2x2 analysis kernels in ``BANDS`` order, shape ``(4, 2, 2)``."""
    return _kernels_cpu().to(dtype=dtype, device=device)


def _weight(channels: int, x: torch.Tensor) -> torch.Tensor:
    k = haar_kernels(x.dtype, x.device)
    return k.unsqueeze(1).repeat(channels, 1, 1, 1)  # (4C, 1, 2, 2): channel c → 4 bands


def dwt_stacked(x: torch.Tensor) -> torch.Tensor:
    """``(N, C, H, W)`` → ``(N, 4C, H/2, W/2)``, channel ``4c + b`` is band ``BANDS[b]`` of ``c``."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"Haar DWT needs even height and width, got {h}x{w}")
    return F.conv2d(x, _weight(c, x), stride=2, groups=c)


def idwt_stacked(bands: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dwt_stacked`."""
    n, c4, h, w = bands.shape
    if c4 % 4:
        raise ValueError(f"stacked bands need a multiple of 4 channels, got {c4}")
    return F.conv_transpose2d(bands, _weight(c4 // 4, bands), stride=2, groups=c4 // 4)


def dwt(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` → ``(LL, LH, HL, HH)``, each ``(N, C, H/2, W/2)``."""
    s = dwt_stacked(x)
    n, c4, h, w = s.shape
    s = s.view(n, c4 // 4, 4, h, w)
    return s[:, :, 0], s[:, :, 1], s[:, :, 2], s[:, :, 3]


def idwt(ll: torch.Tensor, lh: torch.Tensor, hl: torch.Tensor, hh: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`dwt`: four ``(N, C, h, w)`` bands → ``(N, C, 2h, 2w)``."""
    s = torch.stack((ll, lh, hl, hh), dim=2)
    n, c, _, h, w = s.shape
    return idwt_stacked(s.reshape(n, 4 * c, h, w))
