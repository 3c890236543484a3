"""MultiScaleRefine: a light post-filter on base + decoded residual.

Three branches see the image at full, 1/2 and 1/4 resolution (strided convolutions; the
coarse ones reach across 8x8 JPEG blocks cheaply), are merged, re-weighted by channel attention
(squeeze-excitation, Hu et al. 2018, "Squeeze-and-Excitation Networks") and spatial attention
(the pooled-map gate of Woo et al. 2018, "CBAM"), and a last convolution predicts a correction
added to the input. That convolution starts at zero, so an untrained refiner is the identity
and switching refinement on never hurts before it is trained.

.. code-block:: none

    x ─► conv ─┬─► conv ─────────────────────────────► + ─► SE ─► SA ─► conv(0-init) ─► + x
               └─► conv↓2 ─► conv ─┬───────► + ─► ↑2 ──┘
                                   └─► conv↓2 ─► conv ─► ↑2 ┘

Branches merge by addition, coarse to fine, so only one tensor is up-sampled at full
resolution: the full-resolution work is three thin convolutions and the two gates.

With ``conditioned`` the filter also sees what the decoder knows beside the picture: the JPEG
base (a second head convolution, summed with the first; where the residual changed the base
and where JPEG's blocks lie), and the rate knob, which scales and shifts the head's features
per channel (FiLM: Perez et al. 2018, "FiLM: Visual Reasoning with a General Conditioning
Layer"). An unconditioned filter cannot tell a coarse picture that wants smoothing from a fine
one that it would blur: it learns the average of both. Both additions start at zero, so a
conditioned filter loaded with an unconditioned one's tensors computes exactly what it did.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from .strips import row_strips, use_strips

__all__ = ["MultiScaleRefine", "SqueezeExcite", "SpatialAttention"]


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, reduction: int = 4):
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, channels, 1))

    def scale(self, mean: Tensor) -> Tensor:
        """The channels' factors, from their means ``(N, C, 1, 1)``."""
        return torch.sigmoid(self.fc(mean))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.scale(x.mean(dim=(2, 3), keepdim=True))


class SpatialAttention(nn.Module):
    def __init__(self, kernel: int = 7):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, kernel, padding=kernel // 2)

    def forward(self, x: Tensor) -> Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), _channel_max(x)], dim=1)
        return x * torch.sigmoid(self.conv(pooled))


def _channel_max(x: Tensor) -> Tensor:
    """``x.amax(dim=1, keepdim=True)`` by halving the channels with element-wise maxima: on a
    channels-last CPU tensor, amax's reduction over 16 adjacent values took 13 ms at 768x512
    where the four halvings take 7."""
    while x.shape[1] > 1:
        half = x.shape[1] // 2
        top = torch.maximum(x[:, :half], x[:, half:2 * half])
        x = top if x.shape[1] % 2 == 0 else torch.cat([top, x[:, 2 * half:]], dim=1)
    return x


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1), nn.LeakyReLU(0.1, inplace=True))


class MultiScaleRefine(nn.Module):
    """``(N, 3, H, W)`` image in [0, 1] → refined image (input + learned correction)."""

    def __init__(self, channels: int = 24, conditioned: bool = False):
        super().__init__()
        c = channels
        self.conditioned = conditioned
        self.head = _conv(3, c)
        if conditioned:
            # Summed with head's convolution before its activation: one 6-channel convolution
            # in two parts, so that an unconditioned filter's head loads unchanged.
            self.head_base = nn.Conv2d(3, c, 3, padding=1, bias=False)
            self.rate_film = nn.Sequential(nn.Linear(1, c), nn.LeakyReLU(0.1), nn.Linear(c, 2 * c))
            for layer in (self.head_base, self.rate_film[-1]):
                nn.init.zeros_(layer.weight)
                if layer.bias is not None:
                    nn.init.zeros_(layer.bias)
        self.branch_full = _conv(c, c)
        self.branch_half = nn.Sequential(_conv(c, c, 2), _conv(c, c))
        self.branch_quarter = nn.Sequential(_conv(c, c, 2), _conv(c, c))
        self.channel_attention = SqueezeExcite(c)
        self.spatial_attention = SpatialAttention()
        self.tail = nn.Conv2d(c, 3, 3, padding=1)
        nn.init.zeros_(self.tail.weight)
        nn.init.zeros_(self.tail.bias)
        # Thin full-resolution convolutions run about 1.7x faster in channels-last on CPU
        # (24 channels, 768x512, one thread: 500 -> 290 ms); loading weights keeps this layout.
        self.to(memory_format=torch.channels_last)

    def forward(self, x: Tensor, base: Tensor | None = None, rate: Tensor | None = None) -> Tensor:
        """``x`` the picture; ``base`` (the JPEG base, same shape) and ``rate`` (``(N,)``, the
        knob) are required by a ``conditioned`` filter and ignored by another."""
        x = x.contiguous(memory_format=torch.channels_last)
        film = None
        if self.conditioned:
            if base is None or rate is None:
                raise ValueError("a conditioned refinement filter needs base= and rate=")
            base = base.contiguous(memory_format=torch.channels_last)
            film = self.rate_film(rate.reshape(-1, 1).to(x.dtype)).chunk(2, dim=1)
        if use_strips(x, self.STRIP_ROWS, self.HALO):
            return self._in_strips(x, base, film)
        return self._whole(x, base, film)

    def _features(self, x: Tensor, base: Tensor | None, film) -> Tensor:
        """The head's full-resolution features (of a strip or the whole picture)."""
        if not self.conditioned:
            return self.head(x)
        conv, act = self.head
        # One 6-channel convolution rather than two 3-channel ones and the sum of their
        # full-resolution outputs, which cost more than the convolutions on a CPU.
        both = torch.cat([x, base - 0.5], dim=1).contiguous(memory_format=torch.channels_last)  # see HybridModel._analysis
        f = act(F.conv2d(both, torch.cat([conv.weight, self.head_base.weight], dim=1), conv.bias, padding=1))
        scale, shift = film
        return torch.addcmul(shift[..., None, None], f, 1 + scale[..., None, None])

    def _whole(self, x: Tensor, base: Tensor | None, film) -> Tensor:
        f = self._features(x, base, film)
        half = self.branch_half(f)
        quarter = self.branch_quarter(half)
        half = half + _upsample(quarter, half.shape[-2:])
        g = self.branch_full(f) + _upsample(half, f.shape[-2:])
        g = self.spatial_attention(self.channel_attention(g))
        return (x + self.tail(g)).contiguous()

    # Where :func:`.strips.use_strips` says so, the full-resolution layers run in horizontal
    # strips: their feature maps are thin and the passes over whole-picture maps wait on memory.
    STRIP_ROWS = 64
    HALO = 4  # the spatial attention's 7x7 convolution reaches 3 rows, the tail 1 more

    def _in_strips(self, x: Tensor, base: Tensor | None, film) -> Tensor:
        """:meth:`_whole` strip by strip: (1) the head, the full-resolution branch and the
        half-resolution branch's strided layer; (2) the coarse branches on the whole picture
        (a quarter of the pixels and less); (3) the up-sampled coarse branches added, and the
        channel means of the squeeze-excitation summed; (4) the two gates and the tail."""
        n, _, h, w = x.shape
        c = self.branch_full[0].out_channels
        strided, rest = self.branch_half[0], self.branch_half[1:]
        # Made channels-last (rather than made NCHW and converted, a full copy of nothing).
        g = torch.empty(n, c, h, w, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        first = torch.empty(n, c, h // 2, w // 2, dtype=x.dtype, device=x.device, memory_format=torch.channels_last)
        for top, bottom, lo, hi in row_strips(h, self.STRIP_ROWS, 2):  # the head's and a branch's 3x3
            f = self._features(x[:, :, lo:hi], None if base is None else base[:, :, lo:hi], film)
            g[:, :, top:bottom] = self.branch_full(f)[:, :, top - lo:bottom - lo]
            first[:, :, top // 2:bottom // 2] = strided(f)[:, :, (top - lo) // 2:(bottom - lo) // 2]
        half = rest(first)
        half = half + _upsample(self.branch_quarter(half), half.shape[-2:])
        total = x.new_zeros(n, c, 1, 1)
        for top, bottom, _, _ in row_strips(h, self.STRIP_ROWS, 0):
            k0, k1 = max(0, top // 2 - 1), min(h // 2, bottom // 2 + 1)  # bilinear reads 1 row more
            up = _upsample(half[:, :, k0:k1], (2 * (k1 - k0), w))
            rows = g[:, :, top:bottom]
            rows += up[:, :, top - 2 * k0:bottom - 2 * k0]
            total += rows.sum(dim=(2, 3), keepdim=True)
        channel_scale = self.channel_attention.scale(total / (h * w))
        out = torch.empty_like(x, memory_format=torch.contiguous_format)
        for top, bottom, lo, hi in row_strips(h, self.STRIP_ROWS, self.HALO):
            gated = self.spatial_attention(g[:, :, lo:hi] * channel_scale)
            out[:, :, top:bottom] = (x[:, :, lo:hi] + self.tail(gated))[:, :, top - lo:bottom - lo]
        return out


def _upsample(t: Tensor, size) -> Tensor:
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False)
