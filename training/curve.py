"""Learning curves: how a run's validation R-D moved with training steps.

A run's ``val.csv`` (written by the trainer) holds, for every validation, the mean bpp and PSNR
of each validated operating point, measured from real bitstreams, and the crop it validated on.
Against JPEG coded on the very same pictures, each point becomes one number — its PSNR gain over
JPEG at the same bpp — and the run's progress becomes a curve of that gain against steps. The gain
is read off JPEG's own R-D curve by interpolating PSNR linearly in log(bpp); points outside JPEG's
bpp range get none rather than an extrapolated one.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from codec.errors import ParameterError
from codec.latent_search import OPTIMIZE_PARAM
from codec.learned import POSTFILTER_PARAM

from .data import BASE_SCAN

__all__ = ["ValPoint", "read_val_csv", "jpeg_reference", "gain_over", "plot_learning_curve",
           "Comparison", "compare_validations", "point_label"]

JPEG_QUALITIES = (1, 2, 3, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 95)


@dataclass(frozen=True)
class ValPoint:
    step: int
    params: str   # the operating point, as JSON (one curve per distinct value)
    bpp: float
    psnr: float
    crop: int | None = None  # the validation crop (0: whole images); None where the log does not say


def read_val_csv(path: str | Path) -> list[ValPoint]:
    """The per-point means (rows whose image is ``mean``) of a trainer's ``val.csv``; the
    ``crop`` column, which logs before it lack, says which pictures they were measured on."""
    path = Path(path)
    try:
        with path.open(newline="") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise ParameterError(f"cannot read {path}: {exc.strerror or exc}") from None
    need = {"step", "image", "params", "bpp", "psnr"}
    if not rows or not need <= set(rows[0]):
        raise ParameterError(f"{path} is not a validation log (needs columns {', '.join(sorted(need))})")
    try:
        return [ValPoint(int(r["step"]), _without_added_params(r["params"]), float(r["bpp"]),
                         float(r["psnr"]), int(r["crop"]) if r.get("crop") not in (None, "") else None)
                for r in rows if r["image"] == "mean"]
    except ValueError as exc:
        raise ParameterError(f"{path}: malformed row ({exc})") from None


# Parameters added to the codecs after validation logs were first written, with the value at
# which a point codes as it did before they existed: validation sets the post-filter off, the
# encoders' latent refinement defaults to none, and hybrid validation codes its JPEG base in
# the training bases' scan, the only one before the choice existed.
_ADDED_PARAMS = {POSTFILTER_PARAM.name: "off", OPTIMIZE_PARAM.name: OPTIMIZE_PARAM.default,
                 "base_scan": BASE_SCAN}


def _without_added_params(params: str) -> str:
    """``params`` without the :data:`_ADDED_PARAMS` at their old-equivalent values: logs written
    before a parameter existed do not name it, so both are one operating point and the
    sessions' logs must join into one curve."""
    try:
        values = json.loads(params)
    except ValueError:
        return params
    if not isinstance(values, dict):
        return params
    kept = {k: v for k, v in values.items() if _ADDED_PARAMS.get(k, object()) != v}
    return json.dumps(kept) if len(kept) != len(values) else params


def jpeg_reference(images: Sequence[np.ndarray], qualities: Sequence[int] = JPEG_QUALITIES,
                   subsampling: str = "4:2:0") -> tuple[np.ndarray, np.ndarray]:
    """Mean (bpp, PSNR) of the registry's JPEG codec over ``images`` at each quality."""
    from codec import metrics, registry

    jpeg = registry.create("jpeg")
    bpp, psnr = [], []
    for q in qualities:
        results = [jpeg.encode(im, quality=q, subsampling=subsampling) for im in images]
        bpp.append(float(np.mean([r.bpp for r in results])))
        psnr.append(float(np.mean([metrics.psnr(im, r.image) for im, r in zip(images, results)])))
    return np.array(bpp), np.array(psnr)


def gain_over(reference: tuple[np.ndarray, np.ndarray], bpp: float, psnr: float) -> float:
    """``psnr`` minus the reference's PSNR at ``bpp`` (NaN outside the reference's bpp range)."""
    ref_bpp, ref_psnr = reference
    order = np.argsort(ref_bpp)
    log_bpp = np.log(ref_bpp[order])
    if not (bpp > 0 and log_bpp[0] <= math.log(bpp) <= log_bpp[-1]):
        return math.nan
    return float(psnr - np.interp(math.log(bpp), log_bpp, ref_psnr[order]))


POINT_COLOUR_MAPS = ("viridis", "plasma", "cividis", "cool")


def plot_learning_curve(runs: dict[str, list[ValPoint]], path: str | Path,
                        references: dict[int, tuple[np.ndarray, np.ndarray]] | None = None,
                        title: str = "") -> list[dict]:
    """Plot each run's validation R-D per step (left) and, with JPEG ``references`` (per
    validation crop, 0 for whole images), each point's gain over JPEG on the same pictures
    against steps (right). Every point must say its crop. Returns the rows of the latest step."""
    if references:
        missing = sorted({p.crop for points in runs.values() for p in points} - set(references), key=str)
        if missing:
            raise ParameterError(f"no JPEG reference for validation crop(s) {missing}")

    def gain(p: ValPoint) -> float:
        return gain_over(references[p.crop], p.bpp, p.psnr) if references else math.nan
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2 if references else 1, figsize=(16 if references else 7, 5),
                             dpi=110, squeeze=False)
    rd, gain_ax = axes[0][0], (axes[0][1] if references else None)
    cmap = plt.get_cmap("viridis")
    latest = []
    for run_index, (name, points) in enumerate(runs.items()):
        steps = sorted({p.step for p in points})
        marker = "os^Dv"[run_index % 5]
        for i, step in enumerate(steps):
            at = sorted((p for p in points if p.step == step), key=lambda p: p.bpp)
            colour = cmap(i / max(len(steps) - 1, 1))
            label = f"{name} step {step}" if i in (0, len(steps) - 1) else None
            rd.plot([p.bpp for p in at], [p.psnr for p in at], marker + "-", color=colour,
                    markersize=4, linewidth=1, label=label)
        if references:
            # One colour map per run, its points in order of rate: with a dozen points a run,
            # the default colour cycle repeats and a series could not be told from its label.
            point_cmap = plt.get_cmap(POINT_COLOUR_MAPS[run_index % len(POINT_COLOUR_MAPS)])
            by_rate = sorted({p.params for p in points},
                             key=lambda params: float(np.median([p.bpp for p in points if p.params == params])))
            for k, params in enumerate(by_rate):
                series = sorted((p for p in points if p.params == params), key=lambda p: p.step)
                gains = [gain(p) for p in series]
                gain_ax.plot([p.step for p in series], gains, marker + "-", markersize=4,
                             color=point_cmap(0.9 * k / max(len(by_rate) - 1, 1)),
                             label=f"{name} {point_label(params)}")
        last = max(steps) if steps else None
        for p in sorted((p for p in points if p.step == last), key=lambda p: p.bpp):
            latest.append({"run": name, "step": p.step, "point": point_label(p.params), "bpp": p.bpp,
                           "psnr": p.psnr,
                           "gain_db": gain(p)})
    if references:
        for crop, (ref_bpp, ref_psnr) in sorted(references.items()):
            where = f"{crop}² crops" if crop else "whole images"
            rd.plot(ref_bpp, ref_psnr, "k--" if crop else "k:", linewidth=1.5, label=f"JPEG, {where}")
        gain_ax.axhline(0, color="k", linestyle="--", linewidth=1)
        gain_ax.set_xlabel("training step")
        gain_ax.set_ylabel("PSNR gain over JPEG at equal bpp (dB)")
        gain_ax.grid(True, alpha=0.3)
        # Beside the axes: a run's dozen points would otherwise cover its curves.
        gain_ax.legend(fontsize=6, loc="upper left", bbox_to_anchor=(1.01, 1.0), borderaxespad=0)
    rd.set_xlabel("bits per pixel (from bitstream bytes)")
    rd.set_ylabel("PSNR-RGB (dB)")
    rd.grid(True, alpha=0.3)
    rd.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return latest


@dataclass(frozen=True)
class Comparison:
    """Two validations of the same operating points: ``points`` pairs each shared point's
    (params, base, new); ``bd_rate`` (%) and ``bd_psnr`` (dB) are of new against base over them."""
    base_step: int
    new_step: int
    points: list[tuple[str, ValPoint, ValPoint]]
    bd_rate: float
    bd_psnr: float


def compare_validations(base: Sequence[ValPoint], new: Sequence[ValPoint],
                        base_step: int | None = None, new_step: int | None = None) -> Comparison:
    """``new``'s validation at ``new_step`` against ``base``'s at ``base_step`` (each by default
    its log's last), over the operating points both measured: whether a run beat the weights it
    started from. The two must have been validated on the same pictures (the trainer's
    ``--val``, ``--val-images`` and ``--val-crop``), which the crops recorded in the logs check."""
    from codec.metrics import bd_psnr, bd_rate

    def at(points: Sequence[ValPoint], step: int | None, which: str) -> tuple[int, dict[str, ValPoint]]:
        steps = sorted({p.step for p in points})
        if not steps:
            raise ParameterError(f"the {which} log holds no validation")
        step = steps[-1] if step is None else step
        if step not in steps:
            raise ParameterError(f"the {which} log has no validation at step {step} (it has {steps})")
        return step, {p.params: p for p in points if p.step == step}

    base_step, base_at = at(base, base_step, "base")
    new_step, new_at = at(new, new_step, "new")
    shared = sorted(set(base_at) & set(new_at), key=lambda k: base_at[k].bpp)
    if len(shared) < 2:
        raise ParameterError(f"the logs share {len(shared)} operating point(s); a comparison needs two")
    crops = {(base_at[k].crop, new_at[k].crop) for k in shared}
    if any(a is not None and b is not None and a != b for a, b in crops):
        raise ParameterError(f"the logs were validated on different crops {sorted(crops, key=str)}")
    pairs = [(k, base_at[k], new_at[k]) for k in shared]
    before = ([b.bpp for _, b, _ in pairs], [b.psnr for _, b, _ in pairs])
    after = ([n.bpp for _, _, n in pairs], [n.psnr for _, _, n in pairs])
    return Comparison(base_step, new_step, pairs, bd_rate(before, after), bd_psnr(before, after))


def point_label(params: str) -> str:
    try:
        values = json.loads(params)
    except ValueError:
        return params
    return " ".join(f"{k}={v}" for k, v in values.items() if k not in ("refine", "subsampling"))
