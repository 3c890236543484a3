"""Channel-wise frequency gate: how much each high-band channel trusts the LL context.

Some latent channels' high bands follow the LL structure closely (edges), others hardly at all
(noise-like texture); the gate α_b ∈ (0, 1)^M scales the LL-derived correction of band b's
entropy parameters per channel. It is content-adaptive — computed from the pooled context of
the decoded LL — so the decoder derives the same α from data it has (WeConvene's frequency-
aware entropy model, made causal).
"""

from __future__ import annotations

import torch
from torch import nn

from ..dwt import HIGH_BANDS

__all__ = ["FrequencyGate"]


class FrequencyGate(nn.Module):
    """Pooled LL context → α_LH, α_HL, α_HH, each ``(N, M, 1, 1)``."""

    def __init__(self, context_channels: int, M: int):
        super().__init__()
        self.fc = nn.ModuleDict({b: nn.Linear(context_channels, M) for b in HIGH_BANDS})

    def forward(self, context: torch.Tensor) -> dict[str, torch.Tensor]:
        pooled = context.mean(dim=(2, 3))
        n = pooled.shape[0]
        return {b: torch.sigmoid(fc(pooled)).view(n, -1, 1, 1) for b, fc in self.fc.items()}
