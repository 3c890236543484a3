"""Configuration of the wavelet latent codec: one frozen dataclass, saved with the weights."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Config", "steps_layout"]

# Progressive coding: a band's steps are (spatial stage) x (channel group). A step count maps to
# (number of spatial stages k, number of channel groups g) as below; see progressive.py.
_VALID_STEPS = (1, 2, 3, 4, 5, 6, 8, 10)


def steps_layout(steps: int) -> tuple[int, int]:
    """``steps`` → ``(spatial stages, channel groups)``; raises ValueError for unsupported counts."""
    if steps not in _VALID_STEPS:
        raise ValueError(f"progressive step count {steps} unsupported; valid: {_VALID_STEPS}")
    groups = 2 if steps % 2 == 0 and steps >= 4 else 1
    return steps // groups, groups


@dataclass(frozen=True)
class Config:
    """Sizes and switches of :class:`codec.wavelet.model.Model`.

    The defaults (about 4M parameters) are sized to learn on a CPU in hours; the papers' models
    are several times wider.

    Attributes:
        N: channels of the analysis/synthesis transforms and of the hyper latent z.
        M: channels of the latent y (each DWT band of y has M channels).
        state_channels: width of the progressive context state carried from step to step.
        context_channels: width of the LL context encoder's output (cross-attention keys/values).
        attention_dim: width of the attention projections (divisible by ``attention_heads``).
        attention_heads: heads of the LL self-attention and of the LL→high-band cross-attention.
        window: side of the square attention windows (in band positions).
        ll_steps, hf_steps: progressive coding steps of the LL band and of each high band.
        skip_s3_for_hf: high bands code the whole finest spatial scale (S3: positions off the
            stride-2 lattice) in one stage instead of splitting it.
        use_adaptive_quant: learn a quantisation step Δ per band (else Δ = 1 for every band).
        use_simple_weconv: one convolution per wavelet branch in the WeConv blocks (else two).
        delta_init: initial Δ of LL, LH, HL, HH.
        step_scale_init: global step scale at rate 0 and at rate 1 (learned per channel).
        lambda_min, lambda_max: the λ trained for at rate 0 and rate 1 (log-linear between).
    """

    N: int = 64
    M: int = 96
    state_channels: int = 48
    context_channels: int = 48
    attention_dim: int = 48
    attention_heads: int = 8
    window: int = 8
    ll_steps: int = 10
    hf_steps: int = 4
    skip_s3_for_hf: bool = False
    use_adaptive_quant: bool = True
    use_simple_weconv: bool = True
    delta_init: tuple = (1.0, 1.2, 1.2, 1.5)
    step_scale_init: tuple = (2.0, 0.5)
    lambda_min: float = 0.002
    lambda_max: float = 0.045

    def __post_init__(self):
        for name in ("ll_steps", "hf_steps"):
            k, g = steps_layout(getattr(self, name))
            if self.M % g:
                raise ValueError(f"M={self.M} must be divisible by the {g} channel groups of {name}")
        if self.skip_s3_for_hf and steps_layout(self.hf_steps)[0] > 4:
            raise ValueError(f"skip_s3_for_hf allows at most 4 spatial stages; hf_steps={self.hf_steps}")
        if self.attention_dim % self.attention_heads:
            raise ValueError(
                f"attention_dim={self.attention_dim} is not divisible by attention_heads={self.attention_heads}")
        if len(self.delta_init) != 4 or min(self.delta_init) <= 0:
            raise ValueError(f"delta_init needs 4 positive steps, got {self.delta_init}")
        if len(self.step_scale_init) != 2 or min(self.step_scale_init) <= 0:
            raise ValueError(f"step_scale_init needs 2 positive scales, got {self.step_scale_init}")
        if not 0 < self.lambda_min < self.lambda_max:
            raise ValueError(f"need 0 < lambda_min < lambda_max, got {self.lambda_min}, {self.lambda_max}")
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")

    @classmethod
    def tiny(cls, **overrides) -> "Config":
        """A few channels everywhere: for tests."""
        base = dict(N=8, M=8, state_channels=8, context_channels=8, attention_dim=16, window=4)
        base.update(overrides)
        return cls(**base)
