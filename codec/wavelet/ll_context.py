"""LL context encoder: what the decoded LL band tells about the high bands.

The LL band is a half-size picture of the latent, so its decoded symbols already show where
edges and textures are. Windowed self-attention gathers the global structure of each region,
then three 3x3 convolutions add local texture cues (the two-part design of the issue; cf. the
"global + local" context of HPCM, Li et al. 2025). The encoder only ever sees ŷ_LL, the LL the
decoder reconstructs, never the encoder-side y_LL.
"""

from __future__ import annotations

import torch
from torch import nn

from .attention import WindowAttention

__all__ = ["LLContextEncoder"]


class LLContextEncoder(nn.Module):
    """ŷ_LL (M channels) → context features (``channels``) at the same resolution."""

    def __init__(self, M: int, channels: int, attention_dim: int, heads: int, window: int):
        super().__init__()
        self.inp = nn.Conv2d(M, channels, 1)
        self.attn = WindowAttention(channels, channels, attention_dim, heads, window, channels)
        self.local = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1), nn.GELU(),
            nn.Conv2d(channels, channels, 3, padding=1))

    def forward(self, yhat_ll: torch.Tensor) -> torch.Tensor:
        x = self.inp(yhat_ll)
        x = x + self.attn(x, x)
        return x + self.local(x)
