"""The one configuration of a HyRES model: saved inside weights files and the manifest.

Sizes are chosen so that the model trains in hours on a CPU and codes a 768x512 image in less
time than CompressAI's ``bmshj2018-hyperprior`` (N=128, M=192): the analysis and synthesis
transforms work at 1/2 .. 1/16 resolution with N channels, the latent ``y`` has M channels at
stride 16 and the hyper latent ``z`` sits 4 times lower (model stride 64).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Config"]


@dataclass(frozen=True)
class Config:
    """HyRES model hyper-parameters (every field has the shipped default).

    Attributes:
        N: channels of the analysis/synthesis transforms.
        M: channels of the latent ``y`` (stride 16).
        hyper_channels: channels of the hyper transforms and of ``z`` (stride 64).
        attention: put one ``AttentionBlock`` at 1/16 resolution in each transform.
        base_side_info: feed the JPEG base to the analysis transform beside the residual
            (encoder side only).
        base_synthesis: condition the synthesis on the JPEG base (a full-resolution fusion
            head; see :mod:`.transforms`), so the decoder uses the base it has anyway.
        head_channels: width of that fusion head.
        residual_gain: fixed factor applied to the residual before analysis (and undone after
            synthesis), so that the small residual reaches the transforms at a unit-ish scale.
        rate_points: K, the number of learned gain vectors the continuous rate interpolates.
        gain_span: initial ratio of the finest to the coarsest quantisation step across the
            rate range (sqrt of lambda_max / lambda_min, the high-rate relation Δ² ∝ 1/λ).
        gain_init: geometric centre of the initial gains. At 1, the freshly initialised
            analysis gives ``y·g`` of standard deviation about 0.1, inside the rounding dead
            zone: every symbol rounds to its mean, the decoder learns to ignore ``y`` and the
            residual code never starts (measured: ``y·g`` shrank to 0.005 and carried no bits
            after 900 steps). Starting ``y·g`` at a few quantisation steps avoids that.
        refine_channels: width of the MultiScaleRefine post-filter.
        refine_conditioned: the filter also sees the JPEG base and the rate knob (see
            :mod:`.refine`); off in the weights trained before it existed.
        context_kernel: kernel size of the checkerboard context convolution (odd).
        lambda_min, lambda_max: the λ of rate 0 and rate 1 (loss λ·255²·MSE + bpp).
    """

    N: int = 64
    M: int = 96
    hyper_channels: int = 64
    attention: bool = True
    base_side_info: bool = True
    base_synthesis: bool = True
    head_channels: int = 12
    residual_gain: float = 4.0
    rate_points: int = 6
    gain_span: float = 4.75
    gain_init: float = 16.0
    refine_channels: int = 16
    refine_conditioned: bool = False
    context_kernel: int = 5
    lambda_min: float = 0.002
    lambda_max: float = 0.045

    def __post_init__(self):
        for name in ("N", "M", "hyper_channels", "rate_points", "refine_channels", "head_channels"):
            if getattr(self, name) < 1:
                raise ValueError(f"Config.{name}={getattr(self, name)} must be positive")
        if self.rate_points < 2:
            raise ValueError(f"Config.rate_points={self.rate_points} must be at least 2")
        if self.context_kernel % 2 != 1:
            raise ValueError(f"Config.context_kernel={self.context_kernel} must be odd")
        if not self.gain_init > 0 or not self.gain_span >= 1:
            raise ValueError(f"need gain_init > 0 and gain_span >= 1, got {self.gain_init}, {self.gain_span}")
        if not 0 < self.lambda_min < self.lambda_max:
            raise ValueError(f"need 0 < lambda_min < lambda_max, got {self.lambda_min}, {self.lambda_max}")
        if self.N % 2 or self.M % 2:
            raise ValueError("Config.N and Config.M must be even (attention blocks halve them)")

    @classmethod
    def tiny(cls) -> "Config":
        """A few channels only: for tests, seconds on a CPU."""
        return cls(N=8, M=12, hyper_channels=8, rate_points=3, refine_channels=8, head_channels=8)
