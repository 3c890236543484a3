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
import torch.nn.functional as F
from torch import nn

from ..dwt import dwt_stacked, idwt_stacked
from ..gdn import GDN

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
        bands = t.view(n, c, 4, h, w)
        if torch.is_grad_enabled():
            low = bands[:, :, 0] + self.low(bands[:, :, 0])
            high = bands[:, :, 1:].reshape(n, 3 * c, h, w)
            high = high + self.high(high)
            t = torch.cat((low.unsqueeze(2), high.view(n, c, 3, h, w)), dim=2).reshape(n, c4, h, w)
            return x + self.post(self.act(idwt_stacked(t)))
        # Without gradients (coding) the sums go into the DWT's tensor and the activation and
        # the skip into their inputs: four fresh full-size tensors fewer, each of which costs its
        # page faults on a CPU (see codec/gdn.py); and each branch's input, a copy of its bands,
        # is freed inside the branch, so that the high bands' copy and both of its layers'
        # outputs are never held at once (the peak memory of a decode). The DWT's tensor comes
        # out of oneDNN in channels-last where the concatenation above is NCHW, so the inverse
        # DWT, the GELU and the last convolution then run on the other layout: the same function,
        # its float rounding in other places (encoder and decoder both run this path).
        bands[:, :, 1:] += self.high(bands[:, :, 1:].reshape(n, 3 * c, h, w)).view(n, c, 3, h, w)
        bands[:, :, 0] += self.low(bands[:, :, 0])
        return self.post(torch.ops.aten.gelu_(idwt_stacked(t), approximate=self.act.approximate)).add_(x)


def _conv(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 5, stride=2, padding=2)


def _phase_taps() -> torch.Tensor:
    """``(2, 2, 3, 3)``: for each output phase (a, b) of a 5x5, stride-2 transposed convolution
    (padding 2, output padding 1) and each tap (j, l) of a 3x3 window on the input centred on
    the output's input position, the flat index of the 5x5 kernel tap it meets, or 25 for none.

    Output row 2u + a meets input row u - 1 + j through kernel row (2u + a) + 2 - 2(u - 1 + j)
    = a + 4 - 2j: rows 4, 2, 0 for a = 0 and 5 (none), 3, 1 for a = 1; columns likewise.
    """
    rows = {0: (4, 2, 0), 1: (None, 3, 1)}
    taps = torch.full((2, 2, 3, 3), 25, dtype=torch.long)
    for a in (0, 1):
        for b in (0, 1):
            for j, ky in enumerate(rows[a]):
                for l, kx in enumerate(rows[b]):
                    if ky is not None and kx is not None:
                        taps[a, b, j, l] = 5 * ky + kx
    return taps


class SubpixelDeconv(nn.ConvTranspose2d):
    """A 5x5, stride-2 transposed convolution (padding 2, output padding 1: twice the size)
    computed as a 3x3 convolution to four phases per channel and a pixel shuffle.

    The same function of the same parameters (state-dict keys included) as
    ``nn.ConvTranspose2d``, up to float rounding, but on a CPU thread PyTorch runs transposed
    convolutions through its generic column path and regular ones through oneDNN: 1.5 to 2
    times faster here despite the phase kernels' zero taps (768x512, one thread: the synthesis
    400 -> 325 ms).
    """

    def __init__(self, cin: int, cout: int):
        super().__init__(cin, cout, 5, stride=2, padding=2, output_padding=1)
        self.register_buffer("phase_taps", _phase_taps(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        cin, cout = self.in_channels, self.out_channels
        taps = torch.cat([self.weight.reshape(cin, cout, 25), self.weight.new_zeros(cin, cout, 1)], dim=2)
        # (cin, cout, 2, 2, 3, 3) -> (cout·4 phases, cin, 3, 3): phase (a, b) of channel c is
        # channel 4c + 2a + b, the order pixel_shuffle reads.
        weight = taps[:, :, self.phase_taps].permute(1, 2, 3, 0, 4, 5).reshape(4 * cout, cin, 3, 3)
        bias = None if self.bias is None else self.bias.repeat_interleave(4)
        return F.pixel_shuffle(F.conv2d(x, weight, bias, padding=1), 2)


def _deconv(cin: int, cout: int) -> nn.ConvTranspose2d:
    return SubpixelDeconv(cin, cout)


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
