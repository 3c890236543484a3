"""The training loop shared by the hybrid, refinement and wavelet runs.

One :class:`Trainer` owns a run: the model (wrapped in DistributedDataParallel under
``torchrun``), the network optimiser and the entropy bottlenecks' auxiliary optimiser
(Ballé et al., ICLR 2018; CompressAI's ``aux_loss``), the learning-rate schedule, the data
sampler, validation with real entropy coding, checkpoints and logs.

What each mode trains:

* ``hybrid`` / ``wavelet``: every parameter except the refinement post-filter (hybrid) and
  the entropy bottlenecks' quantiles (trained by the auxiliary optimiser), on
  ``λ·255²·MSE + bpp`` of ``x_hat``;
* ``refine``: only ``model.refine``, with the rest of the model frozen **in eval mode** so the
  filter learns on exactly the rounded latents that decoding produces, on the MSE of
  ``x_refined``;
* ``joint``: the hybrid's every parameter, refinement filter included, on
  ``λ·255²·MSE + bpp`` of ``x_refined``: the residual codec learns for the filter that follows
  it rather than for a picture nobody sees (the separate stages leave the filter little to do,
  as the synthesis, which sees the JPEG base, already deblocks).

Rate: continuous training draws the knob ``t ~ U[rate_range]`` per sample and weights each sample
by ``λ(t) = model.lambda_for_rate(t)``; a λ schedule trains phase k at the fixed knob
``model.rate_for_lambda(λ_k)``, each phase continuing from the last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import signal
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from compressai.entropy_models import EntropyBottleneck
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from codec.errors import ParameterError, WeightsError
from codec.evaluate import write_curve

from .average import WeightAverage
from .checkpoint import CHECKPOINT_FORMAT, capture_rng, load_checkpoint, restore_rng, save_atomic
from .config import RunConfig, apply_overrides, config_from_dict
from .data import BASE_SCAN, CropSampler, check_crop, find_images, load_images
from .dist import Dist
from .logs import RunLog
from .losses import RateDistortionLoss
from .models import (build_model, codec_class, codec_from_model, load_matching, load_source,
                     select_parameters)
from .pack import read_pack_info
from .validate import load_val_images, summarise, sweep_folder, validate, validation_points

__all__ = ["Trainer", "RunResult", "resume_config", "MAX_CONSECUTIVE_SKIPS"]

log = logging.getLogger(__name__)

DEFAULT_CROP = 128

# A run whose updates are non-finite this many times in a row is diverging, not unlucky.
MAX_CONSECUTIVE_SKIPS = 50


@dataclasses.dataclass
class RunResult:
    """How a call of :meth:`Trainer.run` ended."""

    step: int
    reason: str  # "done", "time" (budget spent), "signal", "stopped"
    checkpoint: Path | None
    minutes: float
    skipped_steps: int
    validation: dict | None


class Trainer:
    """Builds everything a run needs from a :class:`RunConfig`; :meth:`run` trains.

    Args:
        cfg: the run (for a resumed run, the saved one with the allowed overrides applied).
        dist: this process's place in a distributed run (single process when None).
        resume: a checkpoint dict (from :func:`load_checkpoint`) to continue exactly.
        on_step: called by every rank after each step as ``on_step(trainer)``; it may call
            :meth:`request_stop` (tests interrupt runs this way, the path Ctrl-C takes).
    """

    def __init__(self, cfg: RunConfig, dist: Dist | None = None, resume: dict | None = None,
                 on_step: Callable[["Trainer"], None] | None = None):
        cfg.validate()
        self.cfg = cfg
        self.dist = dist or Dist()
        self.device = self.dist.device
        self.on_step = on_step
        self.out = Path(cfg.out)
        self._stop_signal: int | None = None
        self._stop_requested = False
        self.codec_cls = codec_class(cfg.codec)

        # -- model ------------------------------------------------------------------------
        self.started_from = "random initialisation (seed %d)" % cfg.seed
        self.history: list = []
        # latent channels that growing a narrower model added (cfg.widen_rate_warmup_steps)
        self.new_channels: torch.Tensor | None = None
        source = None
        if resume is not None:
            if resume.get("codec") != cfg.codec:
                raise WeightsError(f"checkpoint is a {resume.get('codec')!r} run, not {cfg.codec!r}")
            self.model_config = config_from_dict(self.codec_cls.config_class, resume["model_config"])
        else:
            base = None
            if cfg.init:
                source = load_source(cfg.init, codec=cfg.codec)
                base = source.config
            self.model_config = apply_overrides(self.codec_cls.config_class, base, cfg.model_config)
        model = build_model(self.codec_cls, self.model_config, cfg.seed)
        knob_lo, knob_hi = model.rate_range
        if cfg.continuous and not (knob_lo <= cfg.rate_range[0] and cfg.rate_range[1] <= knob_hi):
            raise ParameterError(f"--rate-range {cfg.rate_range[0]:g} {cfg.rate_range[1]:g} leaves the "
                                 f"{cfg.codec} knob's range {knob_lo:g} to {knob_hi:g}")
        if resume is None and source is not None:
            source_config = config_from_dict(self.codec_cls.config_class, source.config)
            try:
                try:
                    model.load_state_dict(source.state_dict)
                except RuntimeError:
                    # A model that can grow (a wider latent) starts from a smaller one's weights;
                    # overrides that leave the shapes alone (λ range, switches) load as they are.
                    if not hasattr(model, "load_narrower"):
                        raise
                    self.new_channels = model.load_narrower(source.state_dict, source_config)
            except (RuntimeError, KeyError, ValueError) as err:
                raise WeightsError(f"{source.description} does not fit this model config: {err}") from None
            self.started_from = source.description + (
                f", grown from {_config_change(source_config, self.model_config)}"
                if self.new_channels is not None else "")
            self.history = source.history
            log.info("starting from %s", self.started_from)
        if resume is None and cfg.pretrain:
            pre = load_source(cfg.pretrain, codec=cfg.codec)
            report = load_matching(model, pre.state_dict)
            self.started_from = f"transfer from {pre.description}"
            self.history = pre.history
            log.info("pretrained %s: %d tensors loaded, %d new (%s), %d of another shape, %d unused",
                     pre.description, len(report["loaded"]), len(report["missing"]),
                     ", ".join(sorted({k.split('.')[0] for k in report["missing"]})) or "none",
                     len(report["mismatched"]), len(report["unexpected"]))
        if resume is None and cfg.refine_from:
            self._take_refinement_filter(model, load_source(cfg.refine_from, codec=cfg.codec))
        self.raw: nn.Module = model.to(self.device)
        self.stride = int(self.raw.stride)
        min_crop = int(getattr(self.raw, "min_train_crop", 0) or 0)
        if cfg.crop is None:
            cfg.crop = max(DEFAULT_CROP, -(-min_crop // self.stride) * self.stride)
        check_crop(cfg.crop, self.stride)
        if cfg.crop < min_crop:
            log.warning("--crop %d is below the %s model's min_train_crop %d: parts of it stay untrained",
                        cfg.crop, cfg.codec, min_crop)

        # -- parameter roles --------------------------------------------------------------
        names = [n for n, _ in self.raw.named_parameters()]
        self.aux_names = [f"{m}.quantiles" if m else "quantiles"
                          for m, mod in self.raw.named_modules() if isinstance(mod, EntropyBottleneck)]
        is_refine = [n for n in names if n == "refine" or n.startswith("refine.")]
        if cfg.trains_filter and not is_refine:
            raise ParameterError(f"the {cfg.codec} model has no `refine` sub-module to train")
        if cfg.filter_only:
            self.main_names = is_refine
            self.aux_names = []
        elif cfg.trains_filter:
            self.main_names = [n for n in names if n not in self.aux_names]
        else:
            self.main_names = [n for n in names if n not in self.aux_names and n not in is_refine]
        self.freeze_names = None
        if cfg.freeze_except:
            chosen = select_parameters(self.raw, cfg.freeze_except)
            self.freeze_names = [n for n in chosen if n in self.main_names]
            if not self.freeze_names:
                raise ParameterError(f"--freeze-except {' '.join(cfg.freeze_except)} selects no "
                                     f"parameter this {cfg.mode} run trains")
            log.info("transfer stage: training %d of %d tensors (%s) %s", len(self.freeze_names),
                     len(self.main_names), ", ".join(cfg.freeze_except),
                     f"for {cfg.freeze_steps} steps" if cfg.freeze_steps is not None else "for the whole run")
        params = dict(self.raw.named_parameters())
        self.optimizer = torch.optim.Adam([params[n] for n in self.main_names], lr=cfg.lr)
        self.aux_optimizer = (torch.optim.Adam([params[n] for n in self.aux_names], lr=cfg.aux_lr)
                              if self.aux_names else None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, lambda s: cfg.lr_factor(s))
        self.loss_fn = RateDistortionLoss(cfg.ms_ssim_weight, cfg.vgg_weight, cfg.vgg_weights).to(self.device)

        # -- data -------------------------------------------------------------------------
        paths = find_images(cfg.data)
        self.data_pack = read_pack_info(cfg.data)
        if len(paths) < self.dist.world_size:
            raise ParameterError(f"{len(paths)} training images cannot be sharded over "
                                 f"{self.dist.world_size} ranks")
        shard = paths[self.dist.rank::self.dist.world_size]
        t0 = time.perf_counter()
        images = load_images(shard, min_side=cfg.crop)
        seed_seq = np.random.SeedSequence([cfg.seed, self.dist.rank])
        self.sampler = CropSampler(images, cfg.crop, seed=int(seed_seq.generate_state(1)[0]),
                                   base_quality=cfg.base_quality if self._uses_base else None,
                                   base_subsampling=cfg.base_subsampling, base_tables=cfg.base_tables,
                                   augment=cfg.augment)
        log.info("rank %d: %d images (%.0f MB) cached in %.1f s", self.dist.rank, len(self.sampler),
                 sum(i.nbytes for i in self.sampler.images) / 1e6, time.perf_counter() - t0)
        torch.manual_seed(cfg.seed * 1000 + 1 + self.dist.rank)

        # -- state ------------------------------------------------------------------------
        self.step = 0
        self.minutes_before = 0.0
        self.skipped = 0
        self._consecutive_skips = 0
        self.validation: dict | None = None
        self.results: dict = {}
        self.val_images = []
        if self.dist.is_main and cfg.val and cfg.val_images > 0:
            self.val_images = load_val_images(cfg.val, cfg.val_images, cfg.val_crop)
        if resume is not None:
            self._restore(resume)
        if cfg.widen_rate_warmup_steps and self.new_channels is None:
            log.warning("--widen-rate-warmup-steps has no effect: this run did not grow its model "
                        "from a narrower one")
        self.average: WeightAverage | None = None
        if cfg.ema > 0:
            self._start_average((resume or {}).get("ema"))
        self.ddp: nn.Module | None = None
        self._stage: str | None = None
        self._set_stage()
        self.out.mkdir(parents=True, exist_ok=True)
        self.runlog = RunLog(self.out, cfg.steps, self.step, enabled=self.dist.is_main)
        if self.dist.is_main:
            (self.out / "run.json").write_text(json.dumps(
                {"run": cfg.to_dict(), "model_config": dataclasses.asdict(self.model_config)},
                indent=2) + "\n")

    # -- helpers ------------------------------------------------------------------------------
    def _take_refinement_filter(self, model: nn.Module, other) -> None:
        """Replace the filter --init brought with ``other``'s; its training joins the history
        (newest first), so the manifest lists both the main model's runs and the filter's."""
        own = model.state_dict()
        taken = {k: v for k, v in other.state_dict.items() if k.startswith("refine.")}
        wanted = [k for k in own if k.startswith("refine.")]
        if sorted(taken) != sorted(wanted) or any(taken[k].shape != own[k].shape for k in wanted):
            raise WeightsError(f"the refinement filter of {other.description} does not fit this model "
                               f"(refine_channels {self.model_config.refine_channels})")
        model.load_state_dict(taken, strict=False)
        self.started_from += f"; its refinement filter from {other.description}"
        self.history = other.history[:1] + list(self.history)
        log.info("refinement filter from %s", other.description)

    @property
    def _uses_base(self) -> bool:
        return self.cfg.codec == "hybrid"

    @property
    def _base_settings(self) -> dict[str, str]:
        """The JPEG base the run trains on, as codec parameters: validation codes with it too."""
        if not self._uses_base:
            return {}
        return {"subsampling": self.cfg.base_subsampling, "base_tables": self.cfg.base_tables,
                "base_scan": BASE_SCAN}

    @property
    def model(self) -> nn.Module:
        """The module the training forward goes through (the DDP wrapper when distributed)."""
        return self.ddp if self.ddp is not None else self.raw

    def request_stop(self) -> None:
        """Stop after the current step with a checkpoint (what Ctrl-C and SIGTERM do)."""
        self._stop_requested = True

    def _frozen_stage(self) -> bool:
        return self.freeze_names is not None and (
            self.cfg.freeze_steps is None or self.step < self.cfg.freeze_steps)

    def _set_stage(self) -> None:
        """Set ``requires_grad`` and the DDP wrapper for the current stage (transfer or full)."""
        stage = "transfer" if self._frozen_stage() else "full"
        if stage == self._stage:
            return
        trainable = set(self.freeze_names if stage == "transfer" else self.main_names)
        trainable.update(self.aux_names)
        for n, p in self.raw.named_parameters():
            p.requires_grad_(n in trainable)
        if self._stage is not None:
            log.info("step %d: %s stage, training %d tensors", self.step, stage, len(trainable))
        self._stage = stage
        if self.dist.enabled:
            # The quantiles are trained by the auxiliary loss outside the forward pass, so DDP
            # must not wait for their gradients; their updates are averaged by hand.
            DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(self.raw, self.aux_names)
            self.ddp = DistributedDataParallel(
                self.raw, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                broadcast_buffers=False, find_unused_parameters=self.cfg.ddp_find_unused)

    def _fixed_rate(self) -> tuple[float, float] | None:
        """(rate, λ) of the current phase, or None for continuous-rate training."""
        if self.cfg.continuous:
            return None
        lam = self.cfg.lambda_schedule[self.cfg.phase_of(self.step)]
        return float(self.raw.rate_for_lambda(lam)), lam

    def _train_modes(self) -> None:
        if self.cfg.filter_only:
            self.raw.eval()
            self.raw.refine.train()
        else:
            self.raw.train()

    # -- one step -----------------------------------------------------------------------------
    def _train_step(self) -> dict[str, float]:
        cfg = self.cfg
        batch = self.sampler.sample(cfg.batch)
        dev = self.device
        # NCHW-contiguous: a channels-last input makes some CPU convolution backward passes
        # of torch 2.14 hang or crash (seen with the hybrid model).
        x = _to_tensor(batch.images, dev)
        kwargs = {}
        base_bits = None
        if batch.bases is not None:
            kwargs["base"] = _to_tensor(batch.bases, dev)
            base_bits = torch.from_numpy(batch.base_bits).to(dev)
        fixed = self._fixed_rate()
        if fixed is None:
            lo, hi = cfg.rate_range
            rate = (lo + (hi - lo) * torch.rand(cfg.batch)).to(dev)
        else:
            rate = torch.full((cfg.batch,), fixed[0], device=dev)
        lam = self.raw.lambda_for_rate(rate).to(dev)
        self._train_modes()
        if cfg.mode == "hybrid":
            kwargs["refine"] = False
        out = self.model(x, rate, **kwargs)
        x_hat = out["x_refined"] if cfg.trains_filter else out["x_hat"]
        likelihoods = out["likelihoods"]
        new_weight = cfg.new_channel_rate_weight(self.step)
        if self.new_channels is not None and new_weight < 1:
            likelihoods = self.raw.scale_channel_rates(likelihoods, self.new_channels, new_weight)
        terms = self.loss_fn(x_hat, x, likelihoods, lam, base_bits,
                            rate_weight=None if cfg.filter_only else cfg.rate_weight(self.step))
        self.optimizer.zero_grad(set_to_none=True)
        terms.loss.backward()
        trainable = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        max_norm = cfg.clip if cfg.clip > 0 else math.inf
        grad_norm = torch.nn.utils.clip_grad_norm_(trainable, max_norm) if trainable else torch.zeros(())
        # Gradients are all-reduced before this point, so every rank takes the same decision.
        finite = bool(torch.isfinite(grad_norm)) and bool(torch.isfinite(terms.loss))
        if finite:
            self.optimizer.step()
            self._consecutive_skips = 0
        else:
            self.skipped += 1
            self._consecutive_skips += 1
            log.warning("step %d: non-finite loss or gradient (loss %s, grad norm %s): update skipped",
                        self.step, terms.loss.item(), grad_norm.item())
            if self._consecutive_skips >= MAX_CONSECUTIVE_SKIPS:
                raise FloatingPointError(f"{MAX_CONSECUTIVE_SKIPS} consecutive non-finite steps: "
                                         "the run diverged (lower --lr or raise --clip)")
        self.optimizer.zero_grad(set_to_none=True)
        aux_value = 0.0
        if self.aux_optimizer is not None:
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux = self.raw.aux_loss()
            aux.backward()
            aux_params = [p for g in self.aux_optimizer.param_groups for p in g["params"] if p.grad is not None]
            self.dist.mean_([p.grad for p in aux_params])
            if all(bool(torch.isfinite(p.grad).all()) for p in aux_params):
                self.aux_optimizer.step()
            self.aux_optimizer.zero_grad(set_to_none=True)
            aux_value = float(aux.detach())
        if finite and self.average is not None:
            self.average.update(self.raw)
        self.scheduler.step()
        row = {"loss": float(terms.loss.detach()), "bpp": float(terms.bpp), "bpp_latent": float(terms.bpp_latent),
               "mse": float(terms.mse), "psnr": float(terms.psnr), "aux": aux_value,
               "grad_norm": float(grad_norm), "lambda": float(lam.mean())}
        if terms.ms_ssim is not None:
            row["ms_ssim"] = float(terms.ms_ssim)
        return row if finite else {}

    # -- the loop -----------------------------------------------------------------------------
    def run(self) -> RunResult:
        cfg = self.cfg
        restore = self._install_signals()
        t_start = time.monotonic()
        last_ckpt = t_start
        reason = "done"
        acc: dict[str, float] = {}
        count = 0
        checkpoint = None
        try:
            while self.step < cfg.steps:
                self._set_stage()
                row = self._train_step()
                self.step += 1
                self.runlog.advance()
                for k, v in row.items():
                    acc[k] = acc.get(k, 0.0) + v
                count += 1 if row else 0
                if self.on_step is not None:
                    self.on_step(self)
                now = time.monotonic()
                session_min = (now - t_start) / 60.0
                if self.step % cfg.log_every == 0 and count:
                    self.runlog.step(self.step, {
                        **{k: v / count for k, v in acc.items()}, "phase": cfg.phase_of(self.step - 1) + 1,
                        "lr": self.optimizer.param_groups[0]["lr"], "skipped": self.skipped,
                        "minutes": self.minutes_before + session_min})
                    acc, count = {}, 0
                stop, over_time, ckpt_due = self.dist.any(
                    self._stop_requested or self._stop_signal is not None,
                    cfg.max_minutes is not None and session_min >= cfg.max_minutes,
                    (now - last_ckpt) / 60.0 >= cfg.checkpoint_every_minutes)
                finished = self.step >= cfg.steps
                phase_end = (not cfg.continuous and cfg.phase_steps
                             and self.step % cfg.phase_steps == 0
                             and self.step // cfg.phase_steps <= len(cfg.lambda_schedule))
                if (cfg.val_every and self.step % cfg.val_every == 0) or finished or phase_end:
                    self.run_validation()
                if finished and cfg.final_eval:
                    self.run_final_eval()
                if phase_end:
                    self._finish_phase(t_start)
                if stop or over_time or finished:
                    reason = "done" if finished else ("time" if over_time else (
                        "signal" if self._stop_signal is not None else "stopped"))
                    checkpoint = self.save_checkpoint(t_start)
                    break
                if ckpt_due:
                    self.save_checkpoint(t_start)
                    last_ckpt = time.monotonic()
            else:
                checkpoint = self.save_checkpoint(t_start)
            if reason in ("done", "time") and cfg.export_name and self.dist.is_main:
                self._export(checkpoint, cfg.export_name)
            self.dist.barrier()
        finally:
            restore()
            self.runlog.close()
        minutes = self.minutes_before + (time.monotonic() - t_start) / 60.0
        log.info("run ended (%s) at step %d after %.1f min (%d steps skipped)%s", reason, self.step, minutes,
                 self.skipped, f"; checkpoint {checkpoint}" if checkpoint else "")
        return RunResult(self.step, reason, checkpoint, minutes, self.skipped, self.validation)

    def _finish_phase(self, t_start: float) -> None:
        k = self.cfg.phase_of(self.step - 1)
        lam = self.cfg.lambda_schedule[k]
        path = self.save_checkpoint(t_start, self.out / f"phase{k + 1}-lambda{lam:g}.ckpt")
        log.info("phase %d (λ=%g) finished at step %d: %s", k + 1, lam, self.step, path)
        if self.cfg.export_name and self.dist.is_main and len(self.cfg.lambda_schedule) > 1:
            self._export(path, f"{self.cfg.export_name}-lambda{lam:g}")

    def _export(self, checkpoint: Path | None, name: str) -> None:
        from .export import export_checkpoint

        if checkpoint is not None:
            entry = export_checkpoint(checkpoint, name)
            log.info("exported %s as weights %r (id %d)", checkpoint, name, entry["weights_id"])

    # -- validation ---------------------------------------------------------------------------
    def _start_average(self, saved: dict | None) -> None:
        self.average = WeightAverage(self.raw, self.cfg.ema)
        if saved:
            try:
                self.average.load_state_dict(saved)
            except KeyError as err:
                raise WeightsError(f"checkpoint's weight average does not fit the model: {err}") from None
            log.info("weight average (decay %g) continues after %d updates", self.cfg.ema, self.average.updates)
        else:
            log.info("weight average (decay %g) starts at step %d; validation and export use it",
                     self.cfg.ema, self.step)

    def _reported_weights(self) -> contextlib.AbstractContextManager:
        """The weights validation and export read: the average where the run keeps one."""
        return self.average.applied(self.raw) if self.average is not None else contextlib.nullcontext()

    def _reported_name(self) -> str:
        return f"average (ema {self.average.decay:g})" if self.average is not None else "last step"

    def run_validation(self) -> None:
        """Rank 0 codes the validation images with the reported weights; others wait."""
        if self.dist.is_main and self.val_images:
            t0 = time.perf_counter()
            with self._reported_weights():
                codec = codec_from_model(self.codec_cls, self.raw, self.model_config, self.device,
                                         label=f"step {self.step}")
                rate = None
                if not self.cfg.continuous:  # the knob of the phase the last step trained
                    lam = self.cfg.lambda_schedule[self.cfg.phase_of(max(self.step - 1, 0))]
                    rate = float(self.raw.rate_for_lambda(lam))
                points = validation_points(codec, self.cfg.val_points, rate, self.cfg.rate_range,
                                           self._base_settings)
                rows = validate(codec, self.val_images, points)
            self.validation = {"step": self.step, "weights": self._reported_name(),
                               **summarise(rows, self.val_images)}
            self.runlog.validation(self.step, [{**r, "crop": self.cfg.val_crop} for r in rows])
            log.debug("validation took %.1f s", time.perf_counter() - t0)
        self.dist.barrier()

    def run_final_eval(self) -> None:
        """Rank 0 sweeps every operating point of the codec over ``final_eval``; others wait."""
        if self.dist.is_main:
            with self._reported_weights():
                codec = codec_from_model(self.codec_cls, self.raw, self.model_config, self.device,
                                         label=f"step {self.step}")
                summary, curve = sweep_folder(codec, self.cfg.final_eval, self.cfg.final_eval_images)
            self.results = {"eval": {"step": self.step, "weights": self._reported_name(), **summary}}
            write_curve(curve, self.out / "final_eval.json")
            log.info("final sweep on %d images of %s: %s", summary["images"], summary["dataset"], ", ".join(
                f"{p['bpp']:.3f} bpp {p['psnr']:.2f} dB" for p in summary["points"]))
        self.dist.barrier()

    # -- checkpoints --------------------------------------------------------------------------
    def _install_signals(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = {}

        def handler(signum, frame):
            self._stop_signal = signum
            log.warning("%s: checkpointing after this step (again to abort at once)",
                        signal.Signals(signum).name)
            signal.signal(signum, previous[signum])

        for sig in (signal.SIGINT, signal.SIGTERM):
            previous[sig] = signal.signal(sig, handler)

        def restore() -> None:
            for sig, h in previous.items():
                signal.signal(sig, h)

        return restore

    def state(self, t_start: float) -> dict[str, Any]:
        """This rank's part of a checkpoint (every rank calls it; rank 0's holds everything)."""
        mine = {"rng": capture_rng(self.device), "sampler": self.sampler.state_dict()}
        everyone = self.dist.gather(mine)
        return {
            "format": CHECKPOINT_FORMAT,
            "codec": self.cfg.codec,
            "mode": self.cfg.mode,
            "model_config": dataclasses.asdict(self.model_config),
            "run": self.cfg.to_dict(),
            "model": {k: v.detach().to("cpu").clone() for k, v in self.raw.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "aux_optimizer": self.aux_optimizer.state_dict() if self.aux_optimizer else None,
            "scheduler": self.scheduler.state_dict(),
            "ema": self.average.state_dict() if self.average is not None else None,
            "step": self.step,
            "phase": self.cfg.phase_of(max(self.step - 1, 0)),
            "minutes": self.minutes_before + (time.monotonic() - t_start) / 60.0,
            "world_size": self.dist.world_size,
            "device": _device_name(self.device),
            "rng": [e["rng"] for e in everyone],
            "sampler": [e["sampler"] for e in everyone],
            "started_from": self.started_from,
            "new_channels": None if self.new_channels is None else self.new_channels.tolist(),
            "data_pack": self.data_pack,
            "history": self.history,
            "skipped_steps": self.skipped,
            "validation": self.validation,
            "results": self.results,
        }

    def save_checkpoint(self, t_start: float, path: Path | None = None) -> Path:
        """Write ``last.ckpt`` (or ``path``) atomically; collective: every rank must call it."""
        path = Path(path or self.out / "last.ckpt")
        doc = self.state(t_start)
        if self.dist.is_main:
            save_atomic(doc, path)
            log.info("checkpoint step %d -> %s", self.step, path)
        self.dist.barrier()
        return path

    def _restore(self, doc: dict[str, Any]) -> None:
        try:
            self.raw.load_state_dict(doc["model"])
        except (RuntimeError, KeyError, ValueError) as err:
            raise WeightsError(f"checkpoint does not fit the model: {err}") from None
        self.raw.to(self.device)
        self.optimizer.load_state_dict(doc["optimizer"])
        if self.aux_optimizer is not None and doc.get("aux_optimizer"):
            self.aux_optimizer.load_state_dict(doc["aux_optimizer"])
        self.scheduler.load_state_dict(doc["scheduler"])
        self.step = int(doc["step"])
        self.minutes_before = float(doc.get("minutes", 0.0))
        self.started_from = doc.get("started_from", self.started_from)
        if doc.get("new_channels") is not None:
            self.new_channels = torch.tensor(doc["new_channels"], dtype=torch.bool)
        self.history = list(doc.get("history") or [])
        self.skipped = int(doc.get("skipped_steps", 0))
        self.validation = doc.get("validation")
        self.results = dict(doc.get("results") or {})
        if int(doc.get("world_size", 1)) == self.dist.world_size:
            restore_rng(doc["rng"][self.dist.rank], self.device)
            self.sampler.load_state_dict(doc["sampler"][self.dist.rank])
        else:
            log.warning("checkpoint was written by %s ranks, this run has %d: data order and noise "
                        "restart from fresh seeds", doc.get("world_size"), self.dist.world_size)
        log.info("resumed at step %d (%.1f min trained)", self.step, self.minutes_before)


def _to_tensor(images: np.ndarray, device: torch.device) -> torch.Tensor:
    """``(N, H, W, 3)`` uint8 → contiguous ``(N, 3, H, W)`` float in [0, 1] on ``device``."""
    t = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
    return t.to(device).float().div_(255.0)


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return "CPU"


def resume_config(out: str | Path, overrides: dict[str, Any]) -> tuple[RunConfig, dict]:
    """The saved run of ``out/last.ckpt`` with ``overrides`` applied, and the checkpoint.

    Raises:
        ParameterError: an override changes something a resumed run cannot (the model, the
            data, the optimisation); only the session's budget and reporting may change.
    """
    from .config import RESUMABLE_FIELDS

    path = Path(out) / "last.ckpt"
    doc = load_checkpoint(path)
    cfg = RunConfig.from_dict(doc["run"])
    for key, value in overrides.items():
        if value is None or getattr(cfg, key) == value:
            continue
        if key not in RESUMABLE_FIELDS:
            raise ParameterError(
                f"--{key.replace('_', '-')} cannot change on --resume (saved {getattr(cfg, key)!r}, "
                f"given {value!r}); changeable: {', '.join(sorted(RESUMABLE_FIELDS))}")
        setattr(cfg, key, value)
    return cfg, doc


def _config_change(old: Any, new: Any) -> str:
    """``"M=96 → M=192"``: the fields in which two model configs differ."""
    return ", ".join(f"{f.name}={getattr(old, f.name)} → {f.name}={getattr(new, f.name)}"
                     for f in dataclasses.fields(old) if getattr(old, f.name) != getattr(new, f.name))
