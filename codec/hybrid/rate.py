"""The continuous rate knob: gain vectors on ``y`` interpolated between learned rate points.

After Cui et al. 2021, "Asymmetric Gained Deep Image Compression With Continuous Rate
Adaptation" (CVPR 2021): K learned per-channel gain vectors ``g_k`` scale ``y`` before
quantisation and K inverse-gain vectors undo it after; a rate between two points takes the
log-linear (geometric) interpolation of its neighbours, so one model serves a continuum.

Why this parametrisation: ``log g_k = log g_0 + Σ_{j≤k} softplus(δ_j)`` makes every channel's
gain strictly increasing in k, and log-linear interpolation keeps that, so a larger ``rate``
always means a finer quantisation step on every channel — the slider is monotone by
construction, trained or not. The inverse gain is its own learned vector (``-log g_k + c_k``),
the asymmetric part of the paper.

Rate ``t`` ∈ [0, 1] is trained for ``λ(t) = λ_min · (λ_max / λ_min)^t`` (log-linear), the λ of
the loss ``λ·255²·MSE + bpp``; :func:`rate_for_lambda` is its inverse.

Below 0 the knob extrapolates the first segment: gains keep falling on its log-linear slope
and λ on its own, so a negative rate codes the residual ever more coarsely. Why: at low base
qualities a near-empty residual still carries the synthesis' base-conditioned correction, which
buys more PSNR per bit than raising the JPEG quality; the interval [0, 1] is unchanged by this,
so files coded there decode as before.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

__all__ = ["RateGain", "lambda_for_rate", "rate_for_lambda"]


def lambda_for_rate(rate: Tensor, lambda_min: float, lambda_max: float, lowest: float = 0.0) -> Tensor:
    """λ the rate knob is trained for: log-linear from ``lambda_min`` (0) to ``lambda_max`` (1),
    extrapolated down to the knob's ``lowest`` value."""
    rate = torch.as_tensor(rate, dtype=torch.float32)
    return lambda_min * torch.exp(rate.clamp(lowest, 1) * math.log(lambda_max / lambda_min))


def rate_for_lambda(lam: float, lambda_min: float, lambda_max: float, lowest: float = 0.0) -> float:
    """Inverse of :func:`lambda_for_rate`, clipped to [``lowest``, 1]."""
    if not lam > 0:
        raise ValueError(f"lambda must be positive, got {lam}")
    t = math.log(lam / lambda_min) / math.log(lambda_max / lambda_min)
    return min(1.0, max(lowest, t))


class RateGain(nn.Module):
    """Per-channel gain and inverse gain for a batch of rates in [``lowest``, 1].

    Call with ``rate`` of shape ``(N,)``; returns ``(gain, inverse_gain)``, each ``(N, C, 1, 1)``.
    """

    def __init__(self, channels: int, points: int, span: float, centre: float = 1.0, lowest: float = 0.0):
        super().__init__()
        self.points = points
        self.lowest = lowest
        step = math.log(span) / (points - 1)
        # The gains start spread geometrically around ``centre``.
        self.log_gain0 = nn.Parameter(torch.full((channels,), math.log(centre) - 0.5 * math.log(span)))
        # softplus⁻¹(step): the raw increments start as equal log-steps.
        self.raw_steps = nn.Parameter(torch.full((points - 1, channels), math.log(math.expm1(step))))
        self.inverse_correction = nn.Parameter(torch.zeros(points, channels))

    def log_gains(self) -> Tensor:
        """``(K, C)`` log-gains of the rate points, strictly increasing along K."""
        steps = torch.cumsum(F.softplus(self.raw_steps), dim=0)
        return torch.cat([self.log_gain0[None], self.log_gain0[None] + steps], dim=0)

    def forward(self, rate: Tensor) -> tuple[Tensor, Tensor]:
        rate = rate.reshape(-1).to(self.log_gain0.dtype).clamp(self.lowest, 1)
        t = rate * (self.points - 1)
        lo = t.floor().clamp(0, self.points - 2).long()  # below 0: the first segment, extended
        frac = (t - lo.to(t.dtype))[:, None]
        log_g = self.log_gains()
        log_ig = -log_g + self.inverse_correction
        gain = torch.exp((1 - frac) * log_g[lo] + frac * log_g[lo + 1])
        inverse = torch.exp((1 - frac) * log_ig[lo] + frac * log_ig[lo + 1])
        return gain[:, :, None, None], inverse[:, :, None, None]
