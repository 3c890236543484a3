"""Training checkpoints: atomic writes, random-generator states, safe loading.

A checkpoint holds what an exact continuation needs: the model (and the moving average of its
weights, if the run keeps one), both optimisers, the learning-rate scheduler, the step, every
rank's random generators and data-sampler state.
It is written to a temporary file and renamed over the old one, so a kill at any moment leaves
either the previous or the new checkpoint, never half of one. Checkpoints hold only tensors
and plain data and load with ``weights_only=True``.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec.errors import WeightsError

__all__ = ["CHECKPOINT_FORMAT", "save_atomic", "load_checkpoint", "is_checkpoint", "checkpoint_weights",
           "capture_rng", "restore_rng", "training_record"]

CHECKPOINT_FORMAT = "lic-studio-checkpoint/1"


def save_atomic(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` looks like a training checkpoint (by name; content is checked on load)."""
    return Path(path).suffix == ".ckpt"


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint on the CPU; :class:`WeightsError` if it is missing or not one."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"checkpoint {path} not found")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a damaged file
        raise WeightsError(f"{path} is not a loadable checkpoint ({err.__class__.__name__}: {err})") from None
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path} is not a lic-train checkpoint (format {CHECKPOINT_FORMAT} expected)")
    return doc


def checkpoint_weights(doc: dict[str, Any], averaged: bool = True) -> dict[str, torch.Tensor]:
    """The model state a checkpoint stands for: with ``averaged``, the run's moving average of
    the weights where it kept one (``--ema``), otherwise the weights of its last step.

    The average covers the floating-point tensors; the rest (integer tables) is the last step's.
    """
    state = doc["model"]
    average = (doc.get("ema") or {}).get("state") if averaged else None
    if not average:
        return state
    return {k: average.get(k, v) for k, v in state.items()}


def _numpy_state() -> dict[str, Any]:
    # The MT19937 key as a tensor: ``weights_only`` loading accepts tensors, not ndarrays.
    st = np.random.get_state(legacy=False)
    st["state"] = {"key": torch.from_numpy(st["state"]["key"].astype(np.int64)), "pos": int(st["state"]["pos"])}
    return st


def capture_rng(device: torch.device) -> dict[str, Any]:
    """This process's random-generator states (Python, NumPy's global, torch CPU and CUDA)."""
    state = {
        "python": random.getstate(),
        "numpy": _numpy_state(),
        "torch": torch.get_rng_state(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng(state: dict[str, Any], device: torch.device) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    np_state = dict(state["numpy"])
    np_state["state"] = {"key": np_state["state"]["key"].numpy().astype(np.uint32),
                         "pos": int(np_state["state"]["pos"])}
    np.random.set_state(np_state)
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def training_record(doc: dict[str, Any], with_history: bool = False) -> dict[str, Any]:
    """How a checkpoint's weights were trained (the manifest's ``training`` entry).

    With ``with_history`` the records of the runs it started from (``--init``) are listed
    under ``history`` and the totals over all of them given.
    """
    from .config import RunConfig

    run = RunConfig.from_dict(doc["run"])
    rec: dict[str, Any] = {
        "mode": run.mode,
        "data": run.data,
        **({"data_pack": doc["data_pack"]} if doc.get("data_pack") else {}),
        "steps": int(doc["step"]),
        "minutes": round(float(doc.get("minutes", 0.0)), 1),
        "device": doc.get("device", "CPU"),
        "ranks": int(doc.get("world_size", 1)),
        "crop": run.crop,
        "batch": run.batch,
        **({"augment": run.augment} if run.augment != "flip" else {}),
        "lr": run.lr,
        # The step decay happens at fractions of --steps, which a resumed run may change: the
        # rate actually reached says whether the run got to its low-learning-rate end.
        "final_lr": run.lr * run.lr_factor(max(int(doc["step"]) - 1, 0)),
        "started_from": doc.get("started_from", ""),
        "seed": run.seed,
    }
    if run.continuous:
        rec["continuous"] = True
    else:
        rec["lambda_schedule"] = list(run.lambda_schedule)
        rec["phase"] = int(doc.get("phase", 0)) + 1
        rec["phase_steps"] = run.phase_steps
    if doc.get("ema"):
        rec["ema"] = {"decay": float(doc["ema"]["decay"]), "updates": int(doc["ema"]["updates"])}
    if run.rate_warmup_steps:
        rec["rate_warmup_steps"] = run.rate_warmup_steps
    if run.widen_rate_warmup_steps:
        rec["widen_rate_warmup_steps"] = run.widen_rate_warmup_steps
    if run.codec == "hybrid":
        rec["base_quality"] = list(run.base_quality)
        rec["base_tables"] = run.base_tables
    if run.model_config:
        rec["config_overrides"] = dict(run.model_config)
    if run.pretrain:
        rec["transfer"] = {"pretrain": run.pretrain, "freeze_except": list(run.freeze_except),
                           "freeze_steps": run.freeze_steps}
    extra = [k for k, v in (("ms_ssim_weight", run.ms_ssim_weight), ("vgg_weight", run.vgg_weight)) if v]
    for k in extra:
        rec[k] = getattr(run, k)
    if doc.get("skipped_steps"):
        rec["skipped_steps"] = int(doc["skipped_steps"])
    history = list(doc.get("history") or [])
    if with_history and history:
        rec["history"] = history
        rec["total_steps"] = rec["steps"] + sum(int(h.get("steps", 0)) for h in history)
        rec["total_minutes"] = round(rec["minutes"] + sum(float(h.get("minutes", 0)) for h in history), 1)
    return rec
