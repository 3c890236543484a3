"""HyRES model: the learned residual codec on top of a JPEG base, plus the refinement filter.

.. code-block:: none

            x ──┐ (encoder only)
                ▼
    base ──► r = x − base ─► ·s ─┐
      │                          ├─► g_a ─► y ─► ·g(t) ─► LC ─► ·g⁻¹(t) ─► g_s ─► /s ─► r̂
      ├──────── (side info) ─────┘                                       ▲         │
      ├──────────────────────── (conditioning) ───────────────────────────┘         │
      └────────────────────────────────────────────────────────────────► + ◄───────┘
                                                                         │
                                                               x̂ = base + r̂ ─► MultiScaleRefine ─► x̃

``base`` is the JPEG decode of ``x`` (both sides have it). With ``Config.base_side_info`` the
analysis transform sees it beside the residual, so it can spend bits where the base is poor;
with ``Config.base_synthesis`` the synthesis fuses it at full resolution (conditional coding). ``LC`` is the hyperprior + checkerboard latent codec of
:mod:`.entropy`; ``g(t)``/``g⁻¹(t)`` the continuous-rate gains of :mod:`.rate`.
The residual lies in [-1, 1]; ``s = Config.residual_gain`` scales it to a unit-ish range.
"""

from __future__ import annotations

from typing import Any

import torch
from compressai.models import CompressionModel
from torch import Tensor

from ..gdn import use_in_place_gdn
from ..latent_search import refine_latent
from . import rate as rate_mod
from .config import Config
from .entropy import latent_codec
from .refine import MultiScaleRefine
from .transforms import Y_STRIDE, Z_STRIDE, SynthesisTransform, analysis_transform

__all__ = ["HybridModel", "SECTION_NAMES"]

# Bitstream sections of the residual, in coding order (besides "jpeg").
SECTION_NAMES = ("hyper", "anchor", "nonanchor")


class HybridModel(CompressionModel):
    """Residual codec + refinement of the HyRES hybrid codec, built from a :class:`Config`."""

    stride = Y_STRIDE * Z_STRIDE
    # The knob's range: the gain vectors interpolate from 0 to 1 and extrapolate their first
    # segment below 0 (rate.py says why).
    rate_range = (-1.0, 1.0)

    def __init__(self, config: Config | None = None):
        super().__init__()
        self.config = cfg = config if config is not None else Config()
        self.g_a = analysis_transform(cfg)
        self.g_s = SynthesisTransform(cfg)
        self.latent_codec = latent_codec(cfg)
        self.rate_gain = rate_mod.RateGain(cfg.M, cfg.rate_points, cfg.gain_span, cfg.gain_init,
                                           lowest=self.rate_range[0])
        self.refine = MultiScaleRefine(cfg.refine_channels, cfg.refine_conditioned)
        use_in_place_gdn(self)

    # -- rate knob ----------------------------------------------------------------------------
    def lambda_for_rate(self, rate: Tensor) -> Tensor:
        return rate_mod.lambda_for_rate(rate, self.config.lambda_min, self.config.lambda_max, self.rate_range[0])

    def rate_for_lambda(self, lam: float) -> float:
        return rate_mod.rate_for_lambda(lam, self.config.lambda_min, self.config.lambda_max, self.rate_range[0])

    def _rates(self, rate: Any, n: int, device) -> Tensor:
        rate = torch.as_tensor(rate, dtype=torch.float32, device=device).reshape(-1)
        if rate.numel() == 1:
            rate = rate.expand(n)
        if rate.numel() != n:
            raise ValueError(f"rate has {rate.numel()} values for a batch of {n}")
        return rate

    def _knob(self, rate: Any, n: int, device) -> tuple[Tensor, Tensor, Tensor]:
        """The knob per sample, and the latent's gain and inverse gain at it."""
        rate = self._rates(rate, n, device)
        return (rate, *self.rate_gain(rate))

    # -- transforms ---------------------------------------------------------------------------
    def _analysis(self, x: Tensor, base: Tensor) -> Tensor:
        # Contiguous (NCHW) where autograd records: with channels-last input (what permuting HWC
        # image batches gives), torch 2.14's CPU backward of the strided 1x1 skip convolution in
        # ResidualBlockWithStride crashes the process. Without a backward, channels-last is
        # faster on a CPU (768x512, one thread: 242 -> 169 ms).
        layout = torch.contiguous_format if torch.is_grad_enabled() else torch.channels_last
        x, base = x.contiguous(memory_format=layout), base.contiguous(memory_format=layout)
        r = (x - base) * self.config.residual_gain
        inp = torch.cat([r, base - 0.5], dim=1) if self.config.base_side_info else r
        # torch.cat returns NCHW where an input's size-1 batch dimension has an unusual stride
        # (one from unsqueezing a permuted HWC array): the first, full-resolution stage would
        # then run in NCHW, twice as slow.
        return self.g_a(inp.contiguous(memory_format=layout))

    def _synthesis(self, y_hat: Tensor, base: Tensor, rate: Tensor, refine: bool) -> dict[str, Tensor]:
        r_hat = self.g_s(y_hat, base) / self.config.residual_gain
        x_hat = base + r_hat
        out = {"r_hat": r_hat, "x_hat": x_hat}
        if refine:
            out["x_refined"] = self.refine(x_hat.clamp(0, 1), base, rate)
        return out

    # -- training -----------------------------------------------------------------------------
    def forward(self, x: Tensor, rate: Tensor, base: Tensor | None = None,
                refine: bool = True) -> dict[str, Any]:
        """Training pass: ``x``, ``base`` ``(N, 3, H, W)`` in [0, 1], ``rate`` ``(N,)`` in :attr:`rate_range`.

        Returns ``x_hat`` (base + decoded residual, STE-quantised latents), ``x_refined``
        (``refine`` applied to ``x_hat`` clamped to [0, 1]; left out with ``refine=False``, which
        spares its cost while the residual codec trains alone), ``r_hat`` and per-symbol
        ``likelihoods`` of ``y`` and ``z`` (additive-noise quantisation in train mode,
        rounding in eval mode). In eval mode ``x_hat`` is what the decoder reconstructs.
        """
        if base is None:
            raise ValueError("the hybrid model needs base= (the JPEG decode of x)")
        rate, gain, inverse = self._knob(rate, x.shape[0], x.device)
        y = self._analysis(x, base)
        out = self.latent_codec(y * gain)
        result = self._synthesis(out["y_hat"] * inverse, base.contiguous(), rate, refine=refine)
        result["likelihoods"] = out["likelihoods"]
        return result

    @torch.no_grad()
    def unquantized(self, x: Tensor, base: Tensor, refine: bool = False) -> dict[str, Tensor]:
        """Base + synthesis of the residual's unquantized latent (``x_hat``; ``x_refined`` too
        with ``refine``, told the knob is at its finest): the ceiling at infinite rate."""
        rate = self._rates(self.rate_range[1], x.shape[0], x.device)
        return self._synthesis(self._analysis(x, base), base.contiguous(), rate, refine=refine)

    # -- entropy coding (used by HybridCodec) -----------------------------------------------
    def latent_shapes(self, height: int, width: int) -> dict[str, tuple[int, int]]:
        """Shapes of ``y`` (C, H, W) and ``z`` (H, W) for a padded ``height`` x ``width`` (multiples of stride)."""
        if height % self.stride or width % self.stride:
            raise ValueError(f"{width}x{height} is not a multiple of the stride {self.stride}")
        return {"y": (self.config.M, height // Y_STRIDE, width // Y_STRIDE),
                "hyper": (height // self.stride, width // self.stride)}

    def forward_latent(self, y: Tensor, rate: Tensor, noise: bool, base: Tensor) -> dict[str, Any]:
        """:meth:`forward` from the residual's scaled latent ``y`` (after the rate gain: the
        values that are rounded) on: ŷ straight-through, likelihoods under additive noise
        (``noise``) or of the rounded symbols; ``x_hat`` is base + decoded residual. For the
        encoder's latent refinement, whose steps are then the same size at every rate."""
        rate, _, inverse = self._knob(rate, y.shape[0], y.device)
        was_training = self.latent_codec.training
        self.latent_codec.train(noise)  # its only train/eval difference is how it quantises
        try:
            out = self.latent_codec(y)
        finally:
            self.latent_codec.train(was_training)
        result = self._synthesis(out["y_hat"] * inverse, base.contiguous(), rate, refine=False)
        return {"x_hat": result["x_hat"], "likelihoods": out["likelihoods"]}

    @torch.no_grad()
    def compress(self, x: Tensor, base: Tensor, rate: float, latent_steps: int = 0,
                 valid: tuple[int, int] | None = None) -> dict[str, Any]:
        """Entropy-code the residual of ``x`` over ``base``.

        Returns ``strings`` (one list of per-image strings per section) and ``y_hat``: the
        scaled latent exactly as the decoder will rebuild it — CompressAI's ``compress`` obtains
        it by running the decoder's own rANS decode, hyper synthesis and context passes on the
        strings — so :meth:`reconstruct` of it equals :meth:`decompress` of the strings.
        ``latent_steps`` > 0 first refines the latent for this image
        (:func:`codec.latent_search.refine_latent`, measured on the top-left ``valid`` (h, w)
        region); the decoder is the same either way.
        """
        _, gain, _ = self._knob(rate, x.shape[0], x.device)
        y = self._analysis(x, base) * gain
        if latent_steps > 0:
            if x.shape[0] != 1:
                raise ValueError("latent refinement codes one image at a time")
            y = refine_latent(self, x, y.contiguous(), float(rate), latent_steps, valid, base=base)
        out = self.latent_codec.compress(y)
        anchor, nonanchor, hyper = out["strings"]
        strings = {"hyper": list(hyper), "anchor": list(anchor), "nonanchor": list(nonanchor)}
        return {"strings": strings, "y_hat": out["y_hat"]}

    @torch.no_grad()
    def decompress(self, strings: dict[str, list[bytes]], base: Tensor, rate: float,
                   refine: bool = True) -> dict[str, Tensor]:
        """Decode the residual over ``base`` (padded to the stride); returns ``r_hat``, ``x_hat``
        and, with ``refine``, ``x_refined``. String counts must match ``base``'s batch."""
        n, _, height, width = base.shape
        for name in SECTION_NAMES:
            if len(strings[name]) != n:
                raise ValueError(f"{len(strings[name])} {name} strings for a batch of {n}")
        shapes = self.latent_shapes(height, width)
        out = self.latent_codec.decompress(
            [strings["anchor"], strings["nonanchor"], strings["hyper"]], shapes)
        return self.reconstruct(out["y_hat"], base, rate, refine)

    @torch.no_grad()
    def reconstruct(self, y_hat: Tensor, base: Tensor, rate: float, refine: bool = True) -> dict[str, Tensor]:
        """Scaled latent ``y_hat`` (as decoded) → ``r_hat``, ``x_hat`` (and ``x_refined``)."""
        rate, _, inverse = self._knob(rate, base.shape[0], base.device)
        return self._synthesis(y_hat * inverse, base, rate, refine)
