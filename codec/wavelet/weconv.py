"""WeConv blocks and the analysis / synthesis transforms built from them.

WeConv (Fu et al., WeConvene, ECCV 2024) processes features in the wavelet domain: the low band
carries smooth structure and the three high bands sparse detail, so giving them separate
convolutions lets the transform spend capacity where the signal is and decorrelate better than
a plain convolution at the same cost::

    x ─ 1x1 ─ DWT ─┬─ LL ─────────(+ 3x3 conv)──────────┐
                   └─ LH,HL,HH ─(+ depthwise 3x3, 1x1)──┴─ IDWT ─ GELU ─ 1x1 ─(+)─▶
                                                                            x ┘

``simple=True`` uses one layer per branch, ``False`` (the "full" variant) two with a GELU
between. g_a / g_s follow Ballé et al. 2018 (four stride-2 5x5 convolutions with GDN),
with a WeConv block after each of the three inner stages.
"""

from __future__ import annotations

import torch
from torch import nn

from compressai.layers import GDN

from ..dwt import dwt_stacked, idwt_stacked

__all__ = ["WeConv", "AnalysisTransform", "SynthesisTransform"]


def _low_branch(ch: int, simple: bool) -> nn.Module:
    if simple:
        return nn.Conv2d(ch, ch, 3, padding=1)
    return nn.Sequential(nn.Conv2d(ch, ch, 3, padding=1), nn.GELU(), nn.Conv2d(ch, ch, 3, padding=1))


def _high_layer(ch3: int) -> nn.Module:
    # depthwise 3x3 per band channel, then a 1x1 mixing the three bands: the high bands are
    # sparse, so spatial filtering needs few weights, while their cross-band correlation
    # (the same edge seen in LH/HL/HH) is worth a full pointwise layer
    return nn.Sequential(nn.Conv2d(ch3, ch3, 3, padding=1, groups=ch3), nn.Conv2d(ch3, ch3, 1))


def _high_branch(ch3: int, simple: bool) -> nn.Module:
    if simple:
        return _high_layer(ch3)
    return nn.Sequential(_high_layer(ch3), nn.GELU(), _high_layer(ch3))


class WeConv(nn.Module):
    """Residual wavelet-domain convolution block (input height/width must be even)."""

    def __init__(self, ch: int, simple: bool = True):
        super().__init__()
        self.pre = nn.Conv2d(ch, ch, 1)
        self.low = _low_branch(ch, simple)
        self.high = _high_branch(3 * ch, simple)
        self.act = nn.GELU()
        self.post = nn.Conv2d(ch, ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t = dwt_stacked(self.pre(x))  # (N, 4C, h, w), channel 4c+b = band b of channel c
        n, c4, h, w = t.shape
        c = c4 // 4
        t = t.view(n, c, 4, h, w)
        low = t[:, :, 0]
        high = t[:, :, 1:].reshape(n, 3 * c, h, w)
        low = low + self.low(low)
        high = high + self.high(high)
        t = torch.cat((low.unsqueeze(2), high.view(n, c, 3, h, w)), dim=2).reshape(n, c4, h, w)
        return x + self.post(self.act(idwt_stacked(t)))


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1)


class AnalysisTransform(nn.Sequential):
    """g_a: image (3 channels) → latent y (M channels), stride 16."""

    def __init__(self, N: int, M: int, simple: bool):
        super().__init__(
            _conv(3, N), GDN(N), WeConv(N, simple),
            _conv(N, N), GDN(N), WeConv(N, simple),
            _conv(N, N), GDN(N), WeConv(N, simple),
            _conv(N, M))


class SynthesisTransform(nn.Sequential):
    """g_s: latent ŷ (M channels) → image (3 channels), stride 16."""

    def __init__(self, N: int, M: int, simple: bool):
        super().__init__(
            _deconv(M, N), GDN(N, inverse=True), WeConv(N, simple),
            _deconv(N, N), GDN(N, inverse=True), WeConv(N, simple),
            _deconv(N, N), GDN(N, inverse=True), WeConv(N, simple),
            _deconv(N, 3))
