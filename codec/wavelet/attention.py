"""Windowed multi-head attention: the LL self-attention and the LL → high-band cross-attention.

Attention runs inside non-overlapping ``w x w`` windows (Liu et al., Swin Transformer, 2021) so
its cost grows linearly with the image. The four DWT bands are spatially aligned, so a window
of a high band and the same window of the LL context cover the same image region: cross-
attention fetches the LL structure (edges, textures) that predicts where high-band energy is.
Bands are padded to a multiple of ``w``; padded keys are masked out.

Causality (see model.py): keys/values are built from the *decoded* LL only, queries from data
the decoder has when it codes the high band.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["to_windows", "from_windows", "WindowAttention"]


def to_windows(x: torch.Tensor, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(N, C, H, W)`` → ``(N·nW, w·w, C)`` tokens and a ``(N·nW, w·w)`` validity mask."""
    n, c, h, wd = x.shape
    ph, pw = (-h) % w, (-wd) % w
    valid = torch.ones(1, 1, h, wd, dtype=torch.bool, device=x.device)
    if ph or pw:
        x = F.pad(x, (0, pw, 0, ph))
        valid = F.pad(valid, (0, pw, 0, ph))
    hh, ww = (h + ph) // w, (wd + pw) // w

    def split(t):
        t = t.view(t.shape[0], t.shape[1], hh, w, ww, w).permute(0, 2, 4, 3, 5, 1)
        return t.reshape(t.shape[0] * hh * ww, w * w, t.shape[-1])

    tokens = split(x)
    mask = split(valid.expand(n, 1, -1, -1)).squeeze(-1)
    return tokens, mask


def from_windows(tokens: torch.Tensor, n: int, h: int, wd: int, w: int) -> torch.Tensor:
    """Inverse of :func:`to_windows`: tokens → ``(N, C, H, W)`` (padding cropped)."""
    hh, ww = -(-h // w), -(-wd // w)
    c = tokens.shape[-1]
    t = tokens.view(n, hh, ww, w, w, c).permute(0, 5, 1, 3, 2, 4).reshape(n, c, hh * w, ww * w)
    return t[:, :, :h, :wd]


class WindowAttention(nn.Module):
    """Multi-head attention of query tokens on the key/value tokens of the same window.

    Self-attention when ``query is context``; the LL → high-band cross-attention otherwise.
    """

    def __init__(self, q_dim: int, kv_dim: int, dim: int, heads: int, window: int, out_dim: int):
        super().__init__()
        self.heads, self.window = heads, window
        self.norm_q = nn.LayerNorm(q_dim)
        self.norm_kv = nn.LayerNorm(kv_dim)
        self.q = nn.Linear(q_dim, dim)
        self.kv = nn.Linear(kv_dim, 2 * dim)
        self.out = nn.Linear(dim, out_dim)

    def forward(self, query: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, _, h, wd = query.shape
        q_tok, _ = to_windows(query, self.window)
        kv_tok, valid = to_windows(context, self.window)
        b, L, _ = q_tok.shape
        q = self.q(self.norm_q(q_tok))
        k, v = self.kv(self.norm_kv(kv_tok)).chunk(2, dim=-1)

        def heads(t):
            return t.view(b, L, self.heads, -1).transpose(1, 2)

        mask = valid.view(b, 1, 1, L)
        a = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
        a = a.transpose(1, 2).reshape(b, L, -1)
        return from_windows(self.out(a), n, h, wd, self.window)

