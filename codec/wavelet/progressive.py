"""Hierarchical progressive context model of one latent band (after HPCM, Li et al. 2025).

A band is coded in a few sequential steps. Each step codes one (spatial stage × channel group)
subset of the symbols; its Gaussian parameters come from a small network that sees the
hyperprior state, every symbol decoded in earlier steps (all others are exactly zero) and which
positions/channels those are, and that updates a *context state* carried on to the next step,
so information gathered early keeps informing later steps.

Spatial stages go coarse to fine over a 4x4 tile of the band (ranks below): the stride-4
lattice (S1), the rest of the stride-2 lattice (S2), then the finest positions (S3: odd-odd,
then the remaining checkerboard half). Coarse symbols are spread out, so they are cheap to
guess from the hyperprior alone and give every later position nearby context::

    rank  0 4 2 4      levels: 0 = S1          (stride-4 lattice)
          4 3 4 3              1, 2 = S2        (rest of the stride-2 lattice)
          2 4 1 4              3, 4 = S3        (odd-odd, then i+j odd)
          4 3 4 3

``k`` spatial stages group these five levels; each stage is split into ``g`` channel groups
(see :func:`codec.wavelet.config.steps_layout`). High bands may carry a cross-attention to the
decoded-LL context whose contribution to μ and log σ is scaled by the frequency gate.

Causality: a step's parameters depend on the state (hyperprior + earlier steps), on ŷ masked
to earlier steps, and, for high bands, on context/gate computed from the decoded LL. The same
:meth:`BandCoder.run` loop serves training, encoding and decoding; only the ``io`` object that
turns parameters into symbols differs (see entropy.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from .attention import WindowAttention
from .config import steps_layout
from .quant import dequantize

__all__ = ["Step", "spatial_stages", "schedule", "BandCoder"]

_RANK = torch.tensor([[0, 4, 2, 4], [4, 3, 4, 3], [2, 4, 1, 4], [4, 3, 4, 3]])

_STAGES = {
    False: {1: [(0, 1, 2, 3, 4)], 2: [(0, 1, 2, 3), (4,)], 3: [(0, 1, 2), (3,), (4,)],
            4: [(0,), (1, 2), (3,), (4,)], 5: [(0,), (1,), (2,), (3,), (4,)]},
    # S3 (levels 3 and 4) kept in one stage
    True: {1: [(0, 1, 2, 3, 4)], 2: [(0, 1, 2), (3, 4)], 3: [(0,), (1, 2), (3, 4)],
           4: [(0,), (1,), (2,), (3, 4)]},
}


def spatial_stages(k: int, skip_s3: bool = False) -> list[tuple[int, ...]]:
    """The rank levels of each of ``k`` spatial stages, coarse to fine."""
    try:
        return _STAGES[bool(skip_s3)][k]
    except KeyError:
        raise ValueError(f"{k} spatial stages unsupported (skip_s3={skip_s3})") from None


@dataclass(frozen=True)
class Step:
    """One coding step: ``mask`` (1, M, h, w) bool marks its symbols; ``maps`` (1, g+1, h, w)
    holds, per channel group, which positions were decoded before it, and its own positions."""

    mask: torch.Tensor
    maps: torch.Tensor


def schedule(h: int, w: int, M: int, steps: int, skip_s3: bool = False,
             device: Any = None) -> list[Step]:
    """The steps of a band of size ``h x w``; their masks partition all ``M x h x w`` symbols."""
    k, g = steps_layout(steps)
    rank = _RANK.to(device).repeat(-(-h // 4), -(-w // 4))[:h, :w]
    known = torch.zeros(g, h, w, dtype=torch.bool, device=device)
    cg = M // g
    out = []
    for levels in spatial_stages(k, skip_s3):
        spatial = torch.zeros(h, w, dtype=torch.bool, device=device)
        for lv in levels:
            spatial |= rank == lv
        for j in range(g):
            mask = torch.zeros(M, h, w, dtype=torch.bool, device=device)
            mask[j * cg:(j + 1) * cg] = spatial
            maps = torch.cat((known, spatial.unsqueeze(0))).float().unsqueeze(0)
            out.append(Step(mask.unsqueeze(0), maps))
            known[j] |= spatial
    return out


class BandCoder(nn.Module):
    """The per-step networks of one band, and the progressive coding loop."""

    def __init__(self, M: int, state_channels: int, steps: int, skip_s3: bool = False,
                 attention: dict | None = None):
        super().__init__()
        self.M, self.steps, self.skip_s3 = M, steps, skip_s3
        _, g = steps_layout(steps)
        c = state_channels
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c + M + g + 1, c, 3, padding=1), nn.GELU(),
                          nn.Conv2d(c, c, 3, padding=1))
            for _ in range(steps))
        self.heads = nn.ModuleList(nn.Conv2d(c, 2 * M, 1) for _ in range(steps))
        self.attn = (WindowAttention(c, attention["context_channels"], attention["dim"],
                                     attention["heads"], attention["window"], 2 * M)
                     if attention else None)

    def run(self, name: str, state: torch.Tensor, delta: torch.Tensor, io, y: torch.Tensor | None = None,
            context: torch.Tensor | None = None, gate: torch.Tensor | None = None,
            trace: list | None = None) -> torch.Tensor:
        """Code the band step by step; return ŷ.

        ``io.code(name, t, y, mu, sigma, delta, mask)`` returns the symbols of step ``t`` (valid
        where ``mask``); ``trace``, when given, receives ``(name, t, mu, sigma, mask)`` per step.
        """
        n, _, h, w = state.shape
        yhat = state.new_zeros(n, self.M, h, w)
        known = torch.zeros(1, self.M, h, w, dtype=torch.bool, device=state.device)
        for t, step in enumerate(schedule(h, w, self.M, self.steps, self.skip_s3, state.device)):
            if not bool(step.mask.any()):
                continue
            visible = torch.where(known, yhat, torch.zeros_like(yhat))
            inp = torch.cat((state, visible, step.maps.expand(n, -1, -1, -1)), dim=1)
            state = state + self.nets[t](inp)
            mu, log_sigma = self.heads[t](state).chunk(2, dim=1)
            if self.attn is not None:
                d_mu, d_log_sigma = self.attn(state, context).chunk(2, dim=1)
                mu = mu + gate * d_mu
                log_sigma = log_sigma + gate * d_log_sigma
            sigma = torch.exp(log_sigma.clamp(-20.0, 20.0))
            if trace is not None:
                trace.append((name, t, mu, sigma, step.mask))
            symbols = io.code(name, t, y, mu, sigma, delta, step.mask)
            yhat = torch.where(step.mask, dequantize(symbols, mu, delta), yhat)
            known = known | step.mask
        return yhat
