"""The wavelet latent model: WeConv transforms, DWT latent split, progressive band coding.

Data flow (shapes for an H x W input, H and W multiples of ``stride`` = 64)::

    x ─g_a─▶ y (M, H/16) ──DWT──▶ LL, LH, HL, HH (M, H/32 each)
             │
             └─h_a─▶ z (N, H/64) ─EB─▶ ẑ ─h_s─▶ four initial context states (H/32)

    LL:  progressive steps (ll_steps) ─▶ ŷ_LL ─▶ LL context encoder ─▶ ctx, gate α
    LH, HL, HH (each): progressive steps (hf_steps), every step's μ/σ corrected by
         α_b ⊙ cross-attention(queries: band state, keys/values: ctx)
    ŷ = IDWT(ŷ_LL, ŷ_LH, ŷ_HL, ŷ_HH) ─g_s─▶ x̂

Decoder-side causality is structural: the high bands see the LL only through ctx and α, which
are functions of ŷ_LL; every step sees only the hyperprior state and earlier symbols. The stride
is 64 because h_a halves y twice more (H/16 → H/64); that also keeps the DWT of y even-sized.
References: Ballé et al. 2018 (hyperprior), Fu et al. 2024 (WeConvene), Li et al. 2025 (HPCM).
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from compressai.entropy_models import EntropyBottleneck
from compressai.models import CompressionModel

from ..dwt import BANDS, HIGH_BANDS, dwt, idwt
from ..gaussian import GaussianConditional
from .config import Config
from .entropy import RansReader, RansWriter, TrainingIO, check_rans_stream
from .gate import FrequencyGate
from ..latent_search import refine_latent
from .ll_context import LLContextEncoder
from .progressive import BandCoder
from .quant import AdaptiveQuantizer
from .weconv import AnalysisTransform, SynthesisTransform
from .widen import new_channels, widen_state

__all__ = ["Model"]

log = logging.getLogger(__name__)


class Model(CompressionModel):
    """See the module docstring. Built as ``Model(config)``; ``forward`` is the training path."""

    stride = 64
    # The knob's range. Below 0 the quantiser steps continue on their log-linear path past
    # λ_min (quant.py); nothing in the model depends on the rate but the steps, so the
    # extension is smooth, and with it the knob reaches down to the low rates where the
    # published learned codecs' Kodak curves begin, near 0.1 bpp (README: "rate knob").
    rate_range = (-0.5, 1.0)
    # Training crops below this leave some progressive steps without symbols (a band smaller
    # than 3x3 lacks rank levels), so those steps' networks would never learn.
    min_train_crop = 192  # 3 band positions: every rank level of the 4x4 tile occurs

    def __init__(self, config: Config = Config()):
        super().__init__()
        cfg = self.config = config
        N, M, C = cfg.N, cfg.M, cfg.state_channels
        self.g_a = AnalysisTransform(N, M, cfg.use_simple_weconv)
        self.g_s = SynthesisTransform(N, M, cfg.use_simple_weconv)
        self.h_a = nn.Sequential(
            nn.Conv2d(M, N, 3, padding=1), nn.GELU(),
            nn.Conv2d(N, N, 5, stride=2, padding=2), nn.GELU(),
            nn.Conv2d(N, N, 5, stride=2, padding=2))
        self.h_s = nn.Sequential(
            nn.ConvTranspose2d(N, N, 5, stride=2, padding=2, output_padding=1), nn.GELU(),
            nn.Conv2d(N, N, 3, padding=1), nn.GELU(),
            nn.Conv2d(N, 4 * C, 3, padding=1))
        self.entropy_bottleneck = EntropyBottleneck(N)
        self.gaussian_conditional = GaussianConditional(None)
        self.quantizer = AdaptiveQuantizer(M, cfg.use_adaptive_quant, cfg.delta_init, cfg.step_scale_init)
        attn = dict(context_channels=cfg.context_channels, dim=cfg.attention_dim,
                    heads=cfg.attention_heads, window=cfg.window)
        self.bands = nn.ModuleDict({"LL": BandCoder(M, C, cfg.ll_steps)})
        for b in HIGH_BANDS:
            self.bands[b] = BandCoder(M, C, cfg.hf_steps, cfg.skip_s3_for_hf, attention=attn)
        self.ll_context = LLContextEncoder(M, cfg.context_channels, cfg.attention_dim,
                                           cfg.attention_heads, cfg.window)
        self.gate = FrequencyGate(cfg.context_channels, M)

    # -- rate knob ------------------------------------------------------------------------------
    def lambda_for_rate(self, rate: torch.Tensor) -> torch.Tensor:
        """λ of knob value ``rate`` (log-linear, λ_min at 0 → λ_max at 1, extrapolated below 0)."""
        lo, hi = math.log(self.config.lambda_min), math.log(self.config.lambda_max)
        return torch.exp(lo + torch.as_tensor(rate, dtype=torch.float32) * (hi - lo))

    def rate_for_lambda(self, lam: float) -> float:
        """Inverse of :meth:`lambda_for_rate`, clipped to :attr:`rate_range`."""
        lo, hi = math.log(self.config.lambda_min), math.log(self.config.lambda_max)
        return min(self.rate_range[1], max(self.rate_range[0], (math.log(lam) - lo) / (hi - lo)))

    def load_narrower(self, state: dict[str, torch.Tensor], config: Config, **scales: float) -> torch.Tensor:
        """Load the weights of a model whose latent is narrower (``config`` differs only in a
        smaller M), so that this model starts out coding almost as that one does; ``scales``:
        ``init_scale`` / ``synthesis_scale`` of :func:`widen.widen_state`. Returns the boolean
        mask of the latent channels it added (see :meth:`scale_channel_rates`).

        Raises:
            ValueError: ``config`` is not a narrower version of this model's config.
        """
        self.load_state_dict(widen_state(state, config, self.state_dict(), self.config, **scales))
        return new_channels(config, self.config)

    @staticmethod
    def scale_channel_rates(likelihoods: dict[str, torch.Tensor], channels: torch.Tensor,
                            weight: float) -> dict[str, torch.Tensor]:
        """:meth:`forward`'s ``likelihoods`` with the bits of the latent ``channels`` (a boolean
        mask over M) multiplied by ``weight``: their likelihoods raised to that power."""
        scaled = dict(likelihoods)
        for band in BANDS:
            lik = likelihoods[band]
            mask = channels.to(lik.device).view(1, -1, 1, 1)
            scaled[band] = torch.where(mask, lik.pow(weight), lik)
        return scaled

    # -- shared pieces ----------------------------------------------------------------------------
    def hyper_states(self, z_hat: torch.Tensor) -> dict[str, torch.Tensor]:
        """ẑ → initial progressive state of each band."""
        return dict(zip(BANDS, self.h_s(z_hat).chunk(4, dim=1)))

    def code_bands(self, states: dict[str, torch.Tensor], deltas: dict[str, torch.Tensor], io,
                   y: dict[str, torch.Tensor] | None = None, trace: list | None = None):
        """Run the band coders in decoding order (LL, then LH, HL, HH).

        Returns ``(ŷ per band, gate per high band)``. ``y`` (encoder side) is only handed to
        ``io``; nothing that computes entropy parameters ever reads it.
        """
        yb = y or {}
        yhat = {"LL": self.bands["LL"].run("LL", states["LL"], deltas["LL"], io, yb.get("LL"), trace=trace)}
        context = self.ll_context(yhat["LL"])
        gates = self.gate(context)
        for b in HIGH_BANDS:
            yhat[b] = self.bands[b].run(b, states[b], deltas[b], io, yb.get(b), context=context,
                                        gate=gates[b], trace=trace)
        return yhat, gates

    def _check_size(self, x: torch.Tensor):
        h, w = x.shape[-2:]
        if h % self.stride or w % self.stride:
            raise ValueError(f"input {h}x{w} is not a multiple of the model stride {self.stride}")

    # -- training -------------------------------------------------------------------------------
    def forward(self, x: torch.Tensor, rate: torch.Tensor, base=None) -> dict:
        """Training/validation pass with straight-through ŷ (see quant.py)."""
        self._check_size(x)
        if self.training and min(x.shape[-2:]) < self.min_train_crop and not getattr(self, "_warned", False):
            self._warned = True
            log.warning("training on %dx%d crops: below %d some progressive steps code no symbols "
                        "and stay untrained", x.shape[-2], x.shape[-1], self.min_train_crop)
        rate = torch.as_tensor(rate, dtype=x.dtype, device=x.device).reshape(-1).expand(x.shape[0])
        return self.forward_latent(self.g_a(x), rate, noise=self.training)

    def forward_latent(self, y: torch.Tensor, rate: torch.Tensor, noise: bool) -> dict:
        """:meth:`forward` from the latent ``y`` on: ŷ straight-through, likelihoods under
        additive noise (``noise``) or of the rounded symbols; ``rate`` of shape ``(N,)``."""
        z = self.h_a(y)
        z_hat, z_likelihoods = self.entropy_bottleneck(z, training=noise)
        deltas = self.quantizer.steps(rate)
        io = TrainingIO(noise=noise)
        yhat, gates = self.code_bands(self.hyper_states(z_hat), deltas, io, dict(zip(BANDS, dwt(y))))
        x_hat = self.g_s(idwt(*(yhat[b] for b in BANDS)))
        return {"x_hat": x_hat, "likelihoods": {"z": z_likelihoods, **io.likelihoods},
                "deltas": deltas, "gates": gates}

    @torch.no_grad()
    def unquantized(self, x: torch.Tensor) -> torch.Tensor:
        """Synthesis of the unquantized latent (the band split is lossless): the ceiling at infinite rate."""
        self._check_size(x)
        return self.g_s(self.g_a(x))

    # -- entropy coding -----------------------------------------------------------------------------
    def compress(self, x: torch.Tensor, rate: float, latent_steps: int = 0,
                 valid: tuple[int, int] | None = None) -> dict:
        """``x`` (1, 3, H, W), H and W multiples of ``stride`` → strings per section, the y bands,
        and what the decoder will rebuild from the strings: ŷ per band, the gates and the steps.
        Writer and reader hand the band coders the same integers (:mod:`.entropy`), so this ŷ is
        the decoder's bit for bit and :meth:`reconstruct` of it is the decoder's picture: the
        encoder need not decode its own streams.

        ``latent_steps`` > 0 first refines the analysis transform's latent for this image
        (:func:`codec.latent_search.refine_latent`, measured on the top-left ``valid`` (h, w) region,
        default all of ``x``); the decoder is the same either way.
        """
        self._check_size(x)
        if x.shape[0] != 1:
            raise ValueError("compress codes one image at a time")
        y = self.g_a(x)
        if latent_steps > 0:
            y = refine_latent(self, x, y, float(rate), latent_steps, valid)
        z = self.h_a(y)
        z_string = self.entropy_bottleneck.compress(z)[0]
        z_hat = self.entropy_bottleneck.decompress([z_string], z.shape[-2:])
        deltas = self.quantizer.steps(torch.tensor([float(rate)], device=x.device))
        writer = RansWriter(self.gaussian_conditional)
        y_bands = dict(zip(BANDS, dwt(y)))
        yhat, gates = self.code_bands(self.hyper_states(z_hat), deltas, writer, y_bands)
        return {"strings": {"hyper": z_string, **writer.strings()}, "y": y_bands, "yhat": yhat, "gates": gates,
                "deltas": deltas}

    def decompress(self, strings: dict[str, bytes], height: int, width: int, rate: float,
                   trace: list | None = None) -> dict:
        """Inverse of :meth:`compress` for a padded ``height x width`` image."""
        if height % self.stride or width % self.stride or height <= 0 or width <= 0:
            raise ValueError(f"{height}x{width} is not a positive multiple of {self.stride}")
        z_size = (height // self.stride, width // self.stride)
        check_rans_stream("hyper", strings["hyper"])
        z_hat = self.entropy_bottleneck.decompress([strings["hyper"]], z_size)
        deltas = self.quantizer.steps(torch.tensor([float(rate)], device=z_hat.device))
        reader = RansReader(self.gaussian_conditional, {b: strings[b] for b in BANDS})
        yhat, gates = self.code_bands(self.hyper_states(z_hat), deltas, reader, trace=trace)
        return {"x_hat": self.reconstruct(yhat), "yhat": yhat, "gates": gates, "deltas": deltas}

    @torch.no_grad()
    def reconstruct(self, yhat: dict[str, torch.Tensor]) -> torch.Tensor:
        """The decoded picture (padded, in [0, 1]) of the bands ``yhat``."""
        return self.g_s(idwt(*(yhat[b] for b in BANDS))).clamp(0, 1)
