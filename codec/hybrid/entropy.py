"""The residual latent's entropy model: hyperprior + checkerboard context, from CompressAI parts.

Hyperprior after Ballé et al. 2018, "Variational Image Compression with a Scale Hyperprior"
(ICLR 2018); two-pass checkerboard context after He et al. 2021, "Checkerboard Context Model
for Efficient Learned Image Compression" (CVPR 2021). Assembled from CompressAI 1.2.8's
``latent_codecs``, whose code we checked for the defects common in public checkerboard code:

* ``CheckerboardMaskedConv2d`` (odd kernel, mask type A) only sees positions of the opposite
  parity, so at a non-anchor it sees anchors only; anchors get an all-zero context (``_mask_all``)
  in training and in coding, so anchor parameters depend on the hyperprior alone.
* ``compress`` splits ``y`` into the anchor and non-anchor halves (``unembed``) and codes each
  half once, with its own parameters: every symbol is coded exactly once.
* ``entropy_parameters`` is applied per half at coding time and to the whole tensor in
  training, which is only the same function because it is point-wise — so it is 1x1 convs only.
* Training uses ``forward_method="twopass"``: ŷ = STE-round(y − μ) + μ with μ from the anchor
  pass for anchors and the non-anchor pass for non-anchors — exactly what the decoder
  reconstructs — while likelihoods use additive uniform noise (Minnen & Singh 2020 mixed
  quantisation). The hyper latent likewise uses STE around the entropy bottleneck's medians,
  which is what ``EntropyBottleneck.compress`` codes.

.. code-block:: none

    y·g ─► h_a ─► z ─► EB ─► ẑ ─► h_s ─► ψ ──┐
                                          ├─► EP(1x1) ─► (σ, μ) anchors ─► GC ─► ŷ_anchor
                                   0 ─────┘
                    ŷ_anchor ─► ctx(5x5 mask) ─┬─► EP(1x1) ─► (σ, μ) non-anchors ─► GC ─► ŷ_non
                                         ψ ────┘
"""

from __future__ import annotations

import torch.nn as nn
from compressai.entropy_models import EntropyBottleneck
from compressai.latent_codecs import (
    CheckerboardLatentCodec,
    GaussianConditionalLatentCodec,
    HyperLatentCodec,
    HyperpriorLatentCodec,
)
from compressai.layers import CheckerboardMaskedConv2d

from ..gaussian import GaussianConditional
from .config import Config
from .transforms import hyper_analysis, hyper_synthesis

__all__ = ["latent_codec", "entropy_parameters"]


def entropy_parameters(m: int) -> nn.Sequential:
    """[context (2M) ⊕ hyper (2M)] → (scales, means): point-wise only, see the module docstring."""
    h1, h2 = m * 10 // 3, m * 8 // 3
    return nn.Sequential(
        nn.Conv2d(4 * m, h1, 1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(h1, h2, 1),
        nn.LeakyReLU(inplace=True),
        nn.Conv2d(h2, 2 * m, 1),
    )


def latent_codec(cfg: Config) -> HyperpriorLatentCodec:
    m, k = cfg.M, cfg.context_kernel
    y_codec = CheckerboardLatentCodec(
        latent_codec={"y": GaussianConditionalLatentCodec(  # its own ŷ is unused
            gaussian_conditional=GaussianConditional(None))},
        entropy_parameters=entropy_parameters(m),
        context_prediction=CheckerboardMaskedConv2d(m, 2 * m, kernel_size=k, padding=k // 2, stride=1),
        anchor_parity="even",
        forward_method="twopass",
    )
    hyper = HyperLatentCodec(
        entropy_bottleneck=EntropyBottleneck(cfg.hyper_channels),
        h_a=hyper_analysis(cfg),
        h_s=hyper_synthesis(cfg),
        quantizer="ste",
    )
    return HyperpriorLatentCodec(latent_codec={"y": y_codec, "hyper": hyper})
