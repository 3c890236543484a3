"""Adaptive per-band quantisation with a continuous rate knob.

Each band b (LL, LH, HL, HH) has a learned step Δ_b = exp(δ_b) (initial 1.0, 1.2, 1.2, 1.5:
high bands carry less perceptually and statistically important energy, so coarser steps cost
little distortion), times a per-channel global step scale that the rate knob r moves
log-linearly between two learned vectors (at r = 0 and r = 1; the knob's range,
``Model.rate_range``, continues the line below 0) — the "gain unit" idea of Cui et al.
(CVPR 2021), which lets one model cover the app's continuous rate slider::

    Δ_b,c(r) = exp(δ_b) · exp((1 - r)·g0_c + r·g1_c)

Symbols are ``s = round((y - μ) / Δ)``, coded under a Gaussian of scale ``σ / Δ``, and
reconstructed as ``ŷ = μ + Δ·s``. :func:`quantize` / :func:`dequantize` are the one quantiser
used by training, compression and decompression. In training the reconstruction uses
straight-through rounding (so ŷ equals what the decoder gets and Δ receives gradients from
the distortion: ∂ŷ/∂Δ = round(u) - u), and the likelihood uses additive uniform noise on u
(Ballé et al. 2017), which also depends on Δ (rate gradient). In eval mode the likelihood is
that of the rounded symbol, i.e. the rate actually coded.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from compressai.ops.bound_ops import LowerBoundFunction

from ..dwt import BANDS

__all__ = ["AdaptiveQuantizer", "quantize", "dequantize", "symbol_likelihood", "SCALE_BOUND"]

SCALE_BOUND = 0.11  # smallest symbol-domain scale; equals compressai's scale table minimum


def _lower_bound(x: torch.Tensor, bound: float) -> torch.Tensor:
    # compressai's bound with its gradient (identity where it pushes x up); the bound tensor is
    # made on x's device, where a module-level LowerBound would keep its buffer on the CPU.
    return LowerBoundFunction.apply(x, x.new_tensor([bound]))


def quantize(y: torch.Tensor, mu: torch.Tensor, delta: torch.Tensor, ste: bool = False) -> torch.Tensor:
    """Symbols ``round((y - μ)/Δ)``; ``ste=True`` keeps a straight-through gradient."""
    u = (y - mu) / delta
    r = torch.round(u)
    return u + (r - u).detach() if ste else r


def dequantize(symbols: torch.Tensor, mu: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """Reconstruction ``μ + Δ·s``."""
    return mu + delta * symbols


def symbol_scale(sigma: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The Gaussian scale in symbol units, ``σ / Δ``, bounded below like compressai's table."""
    return _lower_bound(sigma / delta, SCALE_BOUND)


def symbol_likelihood(y: torch.Tensor, mu: torch.Tensor, sigma: torch.Tensor, delta: torch.Tensor,
                      noise: bool) -> torch.Tensor:
    """Likelihood of each symbol (unit bins in symbol space, Gaussian of scale σ/Δ)."""
    u = (y - mu) / delta
    u = u + torch.empty_like(u).uniform_(-0.5, 0.5) if noise else quantize(y, mu, delta, ste=True)
    s = symbol_scale(sigma, delta)
    u = u.abs()
    c = -(2 ** -0.5)
    upper = 0.5 * torch.erfc(c * (0.5 - u) / s)
    lower = 0.5 * torch.erfc(c * (-0.5 - u) / s)
    return _lower_bound(upper - lower, 1e-9)


class AdaptiveQuantizer(nn.Module):
    """Per-band learned steps times a rate-driven per-channel step scale."""

    def __init__(self, M: int, adaptive: bool, delta_init, step_scale_init):
        super().__init__()
        log_delta = torch.tensor([math.log(d) for d in delta_init], dtype=torch.float32)
        if adaptive:
            self.log_delta = nn.Parameter(log_delta)
        else:
            self.register_buffer("log_delta", torch.zeros(4))
        s0, s1 = step_scale_init
        self.log_scale = nn.Parameter(torch.tensor([[math.log(s0)] * M, [math.log(s1)] * M]))

    def steps(self, rate: torch.Tensor) -> dict[str, torch.Tensor]:
        """Δ per band, each ``(N, M, 1, 1)``, for knob values ``rate`` of shape ``(N,)``."""
        r = rate.to(self.log_scale.dtype).reshape(-1, 1)
        log_g = (1 - r) * self.log_scale[0] + r * self.log_scale[1]  # (N, M)
        n, m = log_g.shape
        return {b: torch.exp(log_g + self.log_delta[i]).view(n, m, 1, 1) for i, b in enumerate(BANDS)}
