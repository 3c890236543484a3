"""The configuration of one training run, and ``key=value`` overrides of a model's Config.

A run is described by one :class:`RunConfig` (saved in every checkpoint, summarised in the
manifest) rather than by loose flags, so that ``--resume`` rebuilds exactly the run that was
interrupted and ``lic-train export`` can record how the weights were made.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from codec.errors import ParameterError

from .data import AUGMENTATIONS

__all__ = [
    "MODES",
    "RunConfig",
    "RESUMABLE_FIELDS",
    "parse_range",
    "parse_floats",
    "parse_overrides",
    "apply_overrides",
    "config_from_dict",
]

# lic-train sub-command -> registry codec it trains.
MODES = {"hybrid": "hybrid", "refine": "hybrid", "joint": "hybrid", "wavelet": "wavelet"}

# The default λ schedule of the hybrid design: each phase fine-tunes the previous one.
HYBRID_SCHEDULE = (0.045, 0.032, 0.016, 0.008, 0.004, 0.002)


@dataclass
class RunConfig:
    """Everything that defines a training run.

    Attributes:
        mode: ``hybrid`` (residual codec), ``refine`` (post-filter only, main model frozen in
            eval mode), ``joint`` (the hybrid's residual codec and post-filter together, on the
            filtered picture) or ``wavelet``.
        data, val: training folder (recursive) and validation folder (real entropy coding).
        model_config: ``--config key=value`` overrides of the model's Config (strings, parsed
            against the Config's field types when the model is built).
        crop, batch: square random crop side (a multiple of the model's stride) and batch size.
            ``crop=None``: 128, or the model's ``min_train_crop`` rounded up to its stride when
            that is larger (the wavelet model needs 192 for every progressive step to code).
        augment: ``flip`` (each crop mirrored left-right half the time) or ``dihedral`` (each
            turned into one of the square's eight symmetries: more distinct crops from the few
            training images as large as a large crop).
        lr, aux_lr: Adam learning rates of the network and of the entropy bottlenecks'
            quantiles (CompressAI's auxiliary loss).
        warmup_steps, lr_decay_at, lr_decay_factor: linear warm-up, then the rate is multiplied
            by ``lr_decay_factor`` at each fraction of a segment (the run, or each λ phase).
        clip: gradient-norm clip (0: none).
        ema: decay per step of an exponential moving average of the weights (0: none); when
            kept, validation and export use the average, which smooths out the noise of small
            batches the way a learning-rate decay does, without stopping the run's progress (with
            a λ schedule it reaches back across a phase boundary for its first ~1/(1 − ema) steps).
        rate_warmup_steps: the rate term is off for the first half of these steps, then its
            weight ramps linearly to 1. With the rate term on from the start, the hybrid's
            analysis transform shrinks ``y`` into the rounding dead zone within a few hundred
            steps (every symbol equal to its predicted mean, the decoder falling back on the
            JPEG base) and never leaves it. Even a small rate weight does this: under Adam a
            consistent rate gradient outweighs the still incoherent distortion gradient.
        widen_rate_warmup_steps: the same schedule for the rate of the latent channels alone
            that ``init`` added by growing a narrower model (:mod:`codec.wavelet.widen`): they
            carry information before they pay for it. Without it the rate pulled the new
            channels' latent to zero faster than the synthesis learned to use it (on the CPU,
            all of them were silent after about 600 steps). The training log's bpp counts their
            bits at the weight of the step.
        steps: total steps of the run (across resumes); with a λ schedule and ``phase_steps``
            it defaults to ``len(schedule) * phase_steps``.
        max_minutes: wall-clock budget of this session; the run checkpoints and stops when spent.
        checkpoint_every_minutes: periodic checkpoint interval.
        lambda_schedule: fixed-λ phases (each trains the knob at ``model.rate_for_lambda(λ)``);
            empty means continuous-rate training (rate ~ U[rate_range] per sample).
        rate_range: the knob values continuous-rate training draws from, within the model's
            knob range (``Model.rate_range``); (0, 1) is λ_min to λ_max. The wavelet codec's
            knob reaches below 0, which weights trained on (0, 1) only extrapolate.
        phase_steps: steps of each λ phase.
        base_quality: JPEG quality range of the hybrid's base layer, sampled per crop (the
            default covers the codec's sweep, 10 to 80).
        base_subsampling: chroma subsampling of that base (the codec's default).
        base_tables: quantisation tables of that base (:data:`codec.jpeg.TABLES`); the codec's
            default is ``psnr``, the weights shipped before it existed trained on ``standard``.
        val_images, val_points, val_every, val_crop: validation on the first ``val_images``
            images of ``val`` (centre-cropped to ``val_crop`` px if > 0) at ``val_points`` of
            the codec's sweep points, every ``val_every`` steps and at the end.
        final_eval, final_eval_images: when the run completes, the full sweep of the codec's
            operating points over that folder (e.g. Kodak), recorded in the checkpoint and,
            on export, in the manifest's ``results``.
        export_name: export the weights under this name when the run completes or its time
            budget is spent (and each finished λ phase as ``NAME-lambdaλ``).
        ms_ssim_weight, vgg_weight, vgg_weights: optional extra distortion terms.
        init: weights (file, manifest name or checkpoint) the model starts from.
        pretrain, freeze_except, freeze_steps: the wavelet transfer recipe: load matching
            tensors from ``pretrain``, train only the named sub-modules for ``freeze_steps``
            steps (all of the run when None), then fine-tune everything.
        refine_from: refine mode: weights or checkpoint whose refinement filter replaces
            ``init``'s or ``pretrain``'s (a filter trained on another main model, carried over
            to this one).
    """

    mode: str = "wavelet"
    data: str = ""
    val: str | None = None
    out: str = "runs/default"
    model_config: dict[str, str] = field(default_factory=dict)
    crop: int | None = None
    batch: int = 8
    augment: str = "flip"
    lr: float = 1e-4
    aux_lr: float = 1e-3
    warmup_steps: int = 500
    lr_decay_at: tuple[float, ...] = (0.8, 0.95)
    lr_decay_factor: float = 0.1
    clip: float = 1.0
    ema: float = 0.0
    rate_warmup_steps: int = 0
    widen_rate_warmup_steps: int = 0
    steps: int = 100_000
    max_minutes: float | None = None
    checkpoint_every_minutes: float = 10.0
    lambda_schedule: tuple[float, ...] = ()
    rate_range: tuple[float, float] = (0.0, 1.0)
    phase_steps: int | None = None
    base_quality: tuple[int, int] = (10, 80)
    base_subsampling: str = "4:2:0"
    base_tables: str = "standard"
    ms_ssim_weight: float = 0.0
    vgg_weight: float = 0.0
    vgg_weights: str | None = None
    init: str | None = None
    pretrain: str | None = None
    freeze_except: tuple[str, ...] = ()
    freeze_steps: int | None = None
    refine_from: str | None = None
    val_images: int = 4
    val_points: int = 3
    val_every: int = 2000
    val_crop: int = 0
    log_every: int = 50
    export_name: str | None = None
    final_eval: str | None = None
    final_eval_images: int = 0
    seed: int = 0
    threads: int | None = None
    device: str | None = None
    ddp_find_unused: bool = True

    @property
    def codec(self) -> str:
        return MODES[self.mode]

    @property
    def trains_filter(self) -> bool:
        """The loss is taken after the refinement filter (refine and joint runs), which is trained."""
        return self.mode in ("refine", "joint")

    @property
    def filter_only(self) -> bool:
        """Only the refinement filter learns; the codec under it is frozen (refine runs)."""
        return self.mode == "refine"

    @property
    def continuous(self) -> bool:
        return not self.lambda_schedule

    def phase_of(self, step: int) -> int:
        """Index of the λ phase that ``step`` (0-based) belongs to (0 when continuous)."""
        if self.continuous or not self.phase_steps:
            return 0
        return min(step // self.phase_steps, len(self.lambda_schedule) - 1)

    def segment(self, step: int) -> tuple[int, int]:
        """(first step, length) of the learning-rate segment holding ``step``."""
        if self.continuous or not self.phase_steps or len(self.lambda_schedule) == 1:
            return 0, self.steps
        k = self.phase_of(step)
        start = k * self.phase_steps
        end = self.steps if k == len(self.lambda_schedule) - 1 else start + self.phase_steps
        return start, max(end - start, 1)

    def rate_weight(self, step: int) -> float:
        """Weight of the rate term at ``step`` (see ``rate_warmup_steps``)."""
        return _warmup_weight(step, self.rate_warmup_steps)

    def new_channel_rate_weight(self, step: int) -> float:
        """Weight of the grown channels' rate at ``step`` (see ``widen_rate_warmup_steps``)."""
        return _warmup_weight(step, self.widen_rate_warmup_steps)

    def lr_factor(self, step: int) -> float:
        """Multiplier of ``lr`` at ``step``: warm-up over the run's start, step decay per segment."""
        factor = 1.0
        if self.warmup_steps > 0 and step < self.warmup_steps:
            factor = (step + 1) / self.warmup_steps
        start, length = self.segment(step)
        frac = (step - start) / length
        for at in self.lr_decay_at:
            if frac >= at:
                factor *= self.lr_decay_factor
        return factor

    def validate(self) -> None:
        """Raise :class:`ParameterError` naming the first inconsistent option."""
        if self.mode not in MODES:
            raise ParameterError(f"mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not self.data:
            raise ParameterError("--data DIR (a folder of training images) is required")
        for name in ("crop", "batch", "steps"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ParameterError(f"--{name} must be positive, got {getattr(self, name)}")
        if self.augment not in AUGMENTATIONS:
            raise ParameterError(f"--augment must be one of {', '.join(AUGMENTATIONS)}, got {self.augment!r}")
        if self.lr <= 0 or self.aux_lr <= 0:
            raise ParameterError("--lr and --aux-lr must be positive")
        if not 0 <= self.ema < 1:
            raise ParameterError(f"--ema is a decay per step in [0, 1) (0: off), got {self.ema}")
        if any(not 0 < a <= 1 for a in self.lr_decay_at):
            raise ParameterError(f"--lr-decay-at fractions must lie in (0, 1], got {self.lr_decay_at}")
        if any(not lam > 0 for lam in self.lambda_schedule):
            raise ParameterError(f"--lambda-schedule values must be positive, got {self.lambda_schedule}")
        if len(self.lambda_schedule) > 1 and not self.phase_steps:
            raise ParameterError("a λ schedule of several phases needs --phase-steps")
        if len(self.rate_range) != 2 or not self.rate_range[0] < self.rate_range[1]:
            raise ParameterError(f"--rate-range needs LO < HI, got {self.rate_range}")
        if self.phase_steps is not None and self.phase_steps < 1:
            raise ParameterError(f"--phase-steps must be positive, got {self.phase_steps}")
        lo, hi = self.base_quality
        if not 1 <= lo <= hi <= 100:
            raise ParameterError(f"--base-quality {lo}:{hi} must satisfy 1 <= lo <= hi <= 100")
        if self.vgg_weight > 0 and not self.vgg_weights:
            raise ParameterError(
                "--vgg-weight needs --vgg-weights FILE, a local torchvision VGG16 state dict "
                "(nothing is downloaded)")
        if self.freeze_except and not self.pretrain and not self.init:
            raise ParameterError("--freeze-except only makes sense with --pretrain CKPT or --init WEIGHTS")
        if self.trains_filter and not (self.init or self.pretrain):
            raise ParameterError(f"lic-train {self.mode} needs --init (or --pretrain) a hybrid checkpoint or "
                                 "weights to refine")
        if self.refine_from and not (self.filter_only and (self.init or self.pretrain)):
            raise ParameterError("--refine-from only makes sense in lic-train refine with --init or --pretrain")
        if self.rate_warmup_steps < 0 or self.widen_rate_warmup_steps < 0:
            raise ParameterError("--rate-warmup-steps and --widen-rate-warmup-steps must be >= 0, got "
                                 f"{self.rate_warmup_steps} and {self.widen_rate_warmup_steps}")
        if self.val_images < 0 or self.val_every < 0:
            raise ParameterError("--val-images and --val-every must be >= 0")
        if self.val_points < 1:
            raise ParameterError(f"--val-points must be positive, got {self.val_points}")

    def to_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "RunConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items() if k in names}
        return cls(**kwargs)


# Options that a resumed run may change (the session's budget and reporting, not the model,
# data or optimisation). The weight average only watches the optimisation, so it may start later.
RESUMABLE_FIELDS = frozenset({
    "steps", "max_minutes", "checkpoint_every_minutes", "threads", "device", "log_every",
    "val", "val_images", "val_points", "val_every", "val_crop", "export_name", "final_eval",
    "final_eval_images", "ema",
})


def parse_range(text: str) -> tuple[int, int]:
    """``"10:60"`` → (10, 60); ``"30"`` → (30, 30)."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise ParameterError(f"expected LO:HI integers, got {text!r}") from None
    if len(parts) == 1:
        parts *= 2
    if len(parts) != 2:
        raise ParameterError(f"expected LO:HI integers, got {text!r}")
    return parts[0], parts[1]


def parse_floats(text: str) -> tuple[float, ...]:
    """``"0.045,0.032"`` → (0.045, 0.032)."""
    try:
        return tuple(float(p) for p in str(text).split(",") if p.strip())
    except ValueError:
        raise ParameterError(f"expected comma-separated numbers, got {text!r}") from None


def parse_overrides(items: Sequence[str]) -> dict[str, str]:
    """``["M=64", "ll_context=false"]`` → ``{"M": "64", "ll_context": "false"}``."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParameterError(f"--config expects key=value, got {item!r}")
        out[key.strip()] = value.strip()
    return out


def _coerce(name: str, kind: Any, text: Any, default: Any = None) -> Any:
    """Parse ``text`` as the field's type (``kind``; a bare ``tuple`` takes its default's item type)."""
    if not isinstance(text, str):
        return tuple(text) if isinstance(text, list) else text
    if kind is bool:
        low = text.lower()
        if low not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
            raise ParameterError(f"--config {name}={text!r}: expected true/false")
        return low in ("1", "true", "yes", "on")
    try:
        if kind is int:
            return int(text)
        if kind is float:
            return float(text)
        if kind is tuple or typing.get_origin(kind) is tuple:
            args = [a for a in typing.get_args(kind) if a is not Ellipsis]
            item = args[0] if args else (type(default[0]) if isinstance(default, tuple) and default else float)
            return tuple(item(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise ParameterError(f"--config {name}={text!r} is not a valid {getattr(kind, '__name__', kind)}") from None
    return text


def apply_overrides(config_class: type, base: Mapping[str, Any] | None,
                    overrides: Mapping[str, Any]) -> Any:
    """A ``config_class`` instance from ``base`` (a saved config dict) plus parsed ``overrides``.

    Raises:
        ParameterError: an override names no field (the message lists the valid ones) or its
            value does not parse; the Config's own checks fail.
    """
    hints = typing.get_type_hints(config_class)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    names = list(fields)
    values = dict(base or {})
    unknown = set(values) - set(names)
    if unknown:
        raise ParameterError(f"{config_class.__module__}.Config has no field(s) {sorted(unknown)}")
    for key, text in overrides.items():
        if key not in names:
            raise ParameterError(f"--config {key}=…: no such field; valid: {', '.join(names)}")
        values[key] = _coerce(key, hints[key], text)
    try:
        return config_class(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()})
    except (TypeError, ValueError) as err:
        raise ParameterError(f"invalid model config: {err}") from None


def config_from_dict(config_class: type, data: Mapping[str, Any]) -> Any:
    """Rebuild a saved model Config (lists become tuples)."""
    return apply_overrides(config_class, data, {})


def _warmup_weight(step: int, steps: int) -> float:
    """0 for the first half of ``steps``, then a linear ramp to 1 at ``steps`` (1 throughout
    when ``steps`` is 0)."""
    if steps <= 0 or step >= steps:
        return 1.0
    half = steps / 2
    return max(0.0, (step - half) / half)
