"""Rate-distortion sweeps over a folder of images, CompressAI-format curves and BD-rate tables.

``lic-codec eval`` is a thin wrapper around :func:`sweep`, :func:`write_curve`,
:func:`bd_table` and :func:`plot_curves`.
"""

from __future__ import annotations

import itertools
import json
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from . import metrics
from .base import Codec
from .image import open_image

__all__ = [
    "IMAGE_SUFFIXES",
    "Curve",
    "list_images",
    "Measurements",
    "measure",
    "sweep",
    "grid_points",
    "upper_hull",
    "write_curve",
    "read_curve",
    "read_curves",
    "bd_table",
    "bd_table_per_image",
    "BD_TABLE_HEADER",
    "bd_table_header",
    "QUALITY_METRICS",
    "format_bd_table",
    "summarize_per_image",
    "plot_curves",
    "stderr_progress",
]

# scripts/readme_tables.py finds the README's copy of the table by this line.
BD_TABLE_HEADER = "| codec | reference | BD-rate | BD-PSNR |"
# The qualities a BD table can be measured on: PSNR-RGB, and MS-SSIM-RGB on the decibel scale
# (−10·log10(1 − MS-SSIM), as the literature plots it), each with its rows' key for the
# quality difference and the table's column title.
QUALITY_METRICS = {"psnr": ("bd_psnr_db", "BD-PSNR"), "ms-ssim": ("bd_ms_ssim_db", "BD-MS-SSIM")}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".ppm", ".pgm", ".bmp", ".tif", ".tiff", ".webp"}


@dataclass
class Curve:
    """One codec's R-D curve: per-operating-point means over a set of images."""

    name: str
    bpp: list[float]
    psnr: list[float]
    ms_ssim: list[float] = field(default_factory=list)
    encoding_time: list[float] = field(default_factory=list)
    decoding_time: list[float] = field(default_factory=list)
    params: list[dict[str, Any]] = field(default_factory=list)
    description: str = ""
    # Each image's own values behind the means, so that a curve can be re-averaged over a
    # subset of its images (one left out because training validated on it) or compared image
    # by image: series name (a key of ``results``) -> [point][image], images in ``images`` order.
    images: list[str] = field(default_factory=list)
    per_image: dict[str, list[list[float]]] = field(default_factory=dict)

    def restricted_to(self, params: Sequence[dict[str, Any]], name: str) -> "Curve":
        """The curve of this one's points whose parameters are among ``params``, named ``name``."""
        keep = [i for i, p in enumerate(self.params) if p in params]

        def pick(series: list) -> list:
            return [series[i] for i in keep] if series else []

        return Curve(name, pick(self.bpp), pick(self.psnr), pick(self.ms_ssim), pick(self.encoding_time),
                     pick(self.decoding_time), pick(self.params), self.description, list(self.images),
                     {k: pick(v) for k, v in self.per_image.items()})

    def on_images(self, images: Sequence[str]) -> "Curve":
        """This curve re-averaged over ``images`` (names from :attr:`images`), in the same order.

        Raises ValueError for a curve without per-image values (a published anchor, a file
        written before they were kept) or for a name it does not have.
        """
        if not self.per_image:
            raise ValueError(f"{self.name}: the curve file keeps no per-image values")
        unknown = [n for n in images if n not in self.images]
        if unknown:
            raise ValueError(f"{self.name}: no image named {', '.join(unknown)} "
                             f"(it has {', '.join(self.images)})")
        if not images:
            raise ValueError(f"{self.name}: no images left to average over")
        cols = [self.images.index(n) for n in images]
        per_image = {k: [[row[c] for c in cols] for row in v] for k, v in self.per_image.items()}
        means = {k: [_nanmean(row) for row in v] for k, v in per_image.items()}
        return Curve(self.name, means["bpp"], means["psnr-rgb"], means.get("ms-ssim-rgb", []),
                     means.get("encoding_time", []), means.get("decoding_time", []), list(self.params),
                     f"{self.description}; averaged over {len(images)} of its {len(self.images)} images",
                     list(images), per_image)

    def of_image(self, image: str) -> "Curve":
        """The curve of one of its images alone."""
        return self.on_images([image])

    def has(self, metric: str) -> bool:
        """Whether the curve has a value of ``metric`` (a key of QUALITY_METRICS) at some point."""
        return metric == "psnr" or any(math.isfinite(v) for v in self.ms_ssim)

    def quality(self, metric: str) -> list[float]:
        """Its quality on ``metric`` at each point: PSNR-RGB, or MS-SSIM-RGB in dB."""
        if metric not in QUALITY_METRICS:
            raise ValueError(f"unknown quality metric {metric!r} (known: {', '.join(QUALITY_METRICS)})")
        if not self.has(metric):
            raise ValueError(f"{self.name}: the curve has no MS-SSIM values")
        return list(self.psnr) if metric == "psnr" else [metrics.ms_ssim_db(v) for v in self.ms_ssim]

    def as_compressai(self) -> dict[str, Any]:
        results: dict[str, Any] = {"bpp": self.bpp, "psnr-rgb": self.psnr}
        if self.ms_ssim:
            results["ms-ssim-rgb"] = self.ms_ssim
            results["ms-ssim-rgb-db"] = [metrics.ms_ssim_db(v) for v in self.ms_ssim]
        if self.encoding_time:
            results["encoding_time"] = self.encoding_time
            results["decoding_time"] = self.decoding_time
        doc: dict[str, Any] = {"name": self.name, "description": self.description, "results": results}
        if self.params:
            doc["params"] = self.params
        if self.per_image:
            doc["images"] = self.images
            doc["per_image"] = self.per_image
        return doc


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder} is not a folder")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def _nanmean(values: Iterable[float]) -> float:
    arr = np.asarray(list(values), dtype=np.float64)
    arr = arr[~np.isnan(arr)]
    return float(arr.mean()) if arr.size else float("nan")


@dataclass
class Measurements:
    """One codec's per-image results at each operating point, before averaging into a Curve.

    Lists are indexed [point][image], the images named in ``images``; measurements of disjoint
    image subsets (the jobs of a parallel sweep) are joined with :meth:`extend` in image order,
    so the means are those of one sequential sweep.
    """

    codec: str
    source: str
    with_ms_ssim: bool
    params: list[dict[str, Any]]
    bpp: list[list[float]]
    psnr: list[list[float]]
    ms_ssim: list[list[float]]
    encoding_time: list[list[float]]
    decoding_time: list[list[float]]
    images: list[str]

    _SERIES = ("bpp", "psnr", "ms_ssim", "encoding_time", "decoding_time")
    # The names of these series in a curve file's ``results``.
    _RESULT_KEYS = ("bpp", "psnr-rgb", "ms-ssim-rgb", "encoding_time", "decoding_time")

    def extend(self, other: "Measurements") -> None:
        if (other.codec, other.params, other.with_ms_ssim) != (self.codec, self.params, self.with_ms_ssim):
            raise ValueError(f"cannot join measurements of {other.codec} {other.params} "
                             f"to {self.codec} {self.params}")
        for series in self._SERIES:
            for mine, theirs in zip(getattr(self, series), getattr(other, series)):
                mine.extend(theirs)
        self.images.extend(other.images)

    def curve(self) -> Curve:
        """Per-point means, sorted by bpp, with the per-image values behind them."""
        order = sorted(range(len(self.params)), key=lambda i: _nanmean(self.bpp[i]))
        rows = [(self.params[i], *(_nanmean(getattr(self, s)[i]) for s in self._SERIES)) for i in order]
        per_image = {key: [[float(v) for v in getattr(self, s)[i]] for i in order]
                     for s, key in zip(self._SERIES, self._RESULT_KEYS)
                     if s != "ms_ssim" or self.with_ms_ssim}
        return Curve(
            name=self.codec,
            params=[r[0] for r in rows],
            bpp=[r[1] for r in rows],
            psnr=[r[2] for r in rows],
            ms_ssim=[r[3] for r in rows] if self.with_ms_ssim else [],
            encoding_time=[r[4] for r in rows],
            decoding_time=[r[5] for r in rows],
            description=f"lic-studio {self.codec}, {self.source}, {len(self.images)} images, bpp from .lic file bytes",
            images=list(self.images),
            per_image=per_image,
        )


def measure(codec: Codec, images: Sequence[Path], points: Sequence[dict[str, Any]] | None = None,
            with_ms_ssim: bool = True, progress: Callable[[int, int, str], None] | None = None,
            check_decode: bool = True) -> Measurements:
    """Code every image at every operating point and keep each image's result.

    bpp is counted from the complete ``.lic`` file. Each bitstream is decoded again with
    ``codec.decode`` and checked to reproduce the encoder-side reconstruction exactly.
    """
    points = list(points if points is not None else codec.sweep_points())
    pixels = [open_image(p) for p in images]
    out = Measurements(codec.name, f"weights {codec.weights_name}, device {codec.device_name}",
                       with_ms_ssim, points, *([[] for _ in points] for _ in Measurements._SERIES),
                       images=[p.name for p in images])
    total = len(points) * len(pixels)
    done = 0
    for i, params in enumerate(points):
        for path, img in zip(images, pixels):
            res = codec.encode(img, **params)
            t_dec = res.decode_ms
            if check_decode:
                back = codec.decode(res.bitstream)
                if not np.array_equal(back.image, res.image):
                    raise RuntimeError(f"{codec.name} {params}: decode differs from the encoder's "
                                       f"reconstruction on {path.name}")
                t_dec = back.decode_ms
            out.bpp[i].append(res.bpp)
            out.psnr[i].append(metrics.psnr(img, res.image))
            out.ms_ssim[i].append(metrics.ms_ssim(img, res.image) if with_ms_ssim else float("nan"))
            out.encoding_time[i].append(res.encode_ms / 1e3)
            out.decoding_time[i].append(t_dec / 1e3)
            done += 1
            if progress:
                progress(done, total, f"{codec.name} {params} {path.name}")
    return out


def sweep(codec: Codec, images: Sequence[Path], points: Sequence[dict[str, Any]] | None = None,
          with_ms_ssim: bool = True, progress: Callable[[int, int, str], None] | None = None,
          check_decode: bool = True) -> Curve:
    """The per-point means of :func:`measure`, as a curve sorted by bpp."""
    return measure(codec, images, points, with_ms_ssim, progress, check_decode).curve()


def transform_ceiling(codec: Codec, images: Sequence[Path]) -> list[dict[str, Any]]:
    """Mean PSNR-RGB of ``codec.unquantized`` over ``images``, once per setting but the rate knob.

    The knob only changes the quantization, so this is the quality no rate can exceed: the
    hybrid has one per base quality, the wavelet codec one. A codec whose high-rate points
    approach it is limited by its transforms, not by its entropy model.
    """
    knob = codec.rate_param.name
    settings: list[dict[str, Any]] = []
    for point in codec.sweep_points():
        rest = {k: v for k, v in point.items() if k != knob}
        if rest not in settings:
            settings.append(rest)
    pixels = [open_image(p) for p in images]
    return [{"codec": codec.name, "weights": getattr(codec, "weights_name", None), "params": rest,
             "images": len(pixels),
             "psnr": float(np.mean([metrics.psnr(img, codec.unquantized(img, **rest)) for img in pixels]))}
            for rest in settings]


def channel_usage(codec: Codec, images: Sequence[Path],
                  shares: Sequence[float] = (0.5, 0.9, 0.99)) -> list[dict[str, Any]]:
    """Per sweep point: how the latent's bits spread over its channels on ``images``.

    ``channels_for``: how many channels (the costliest first) carry each share of the latent
    bits, summed over the images; ``silent``: channels with under 0.1 % of them; ``latent_bpp``:
    the estimated bits of ``y`` per pixel. See :meth:`codec.learned.LearnedCodec.channel_bits`.
    """
    pixels = [open_image(p) for p in images]
    out = []
    for point in codec.sweep_points():
        bits = sum(codec.channel_bits(img, **point) for img in pixels)
        total = float(bits.sum())
        ranked = np.cumsum(np.sort(bits)[::-1])
        out.append({"params": point, "images": len(pixels), "channels": int(bits.size),
                    "latent_bpp": total / sum(img.shape[0] * img.shape[1] for img in pixels),
                    "channels_for": {f"{s:g}": int(np.searchsorted(ranked, s * total) + 1) for s in shares},
                    "silent": int(np.sum(bits < 1e-3 * total))})
    return out


def grid_points(codec: Codec, values: dict[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """Every combination of ``values`` (parameter name → values to try), resolved by ``codec``."""
    names = list(values)
    return [codec.resolve_params(dict(zip(names, combo))) for combo in itertools.product(*values.values())]


def upper_hull(bpp: Sequence[float], psnr: Sequence[float]) -> list[int]:
    """Indices of the points on the upper convex hull of PSNR over bpp, by rising bpp.

    These are the operating points a codec with several knobs should be swept along: every
    other point is beaten by a mix of two hull points. Points with a non-finite value are
    left out.
    """
    order = sorted((i for i in range(len(bpp)) if math.isfinite(bpp[i]) and math.isfinite(psnr[i])),
                   key=lambda i: (bpp[i], -psnr[i]))
    hull: list[int] = []
    for i in order:
        if hull and psnr[i] <= psnr[hull[-1]]:
            continue  # more bits for no more quality
        while len(hull) >= 2:
            a, b = hull[-2], hull[-1]
            # b lies on or below the chord from a to i: drop it.
            if (psnr[b] - psnr[a]) * (bpp[i] - bpp[a]) <= (psnr[i] - psnr[a]) * (bpp[b] - bpp[a]):
                hull.pop()
            else:
                break
        hull.append(i)
    return hull


def write_curve(curve: Curve, path: str | Path) -> None:
    Path(path).write_text(json.dumps(curve.as_compressai(), indent=2, allow_nan=True) + "\n")


def read_curve(path: str | Path) -> Curve:
    """Read a CompressAI-format results JSON (``psnr-rgb`` or ``psnr`` key)."""
    doc = json.loads(Path(path).read_text())
    res = doc.get("results", {}) if isinstance(doc, dict) else {}
    psnr = res.get("psnr-rgb", res.get("psnr")) if isinstance(res, dict) else None
    if psnr is None or "bpp" not in res:
        raise ValueError(f"{path}: not a CompressAI results file (needs results.bpp and results.psnr-rgb)")
    ms_ssim = res.get("ms-ssim-rgb")
    ms_ssim_db = res.get("ms-ssim-rgb-db", res.get("ms-ssim-db-rgb"))
    if ms_ssim is None and ms_ssim_db is not None:  # some published curves give only the dB scale
        ms_ssim = [1.0 - 10.0 ** (-float(v) / 10.0) for v in ms_ssim_db]
    per_image = doc.get("per_image") or {}
    images = [str(n) for n in doc.get("images") or []]
    points = len(res["bpp"])
    if per_image and not (isinstance(per_image, dict) and "bpp" in per_image and "psnr-rgb" in per_image and all(
            isinstance(v, list) and len(v) == points and all(isinstance(row, list) and len(row) == len(images)
                                                            for row in v) for v in per_image.values())):
        raise ValueError(f"{path}: its per_image values do not match its {points} points "
                         f"and {len(images)} images")
    return Curve(name=str(doc.get("name", Path(path).stem)), bpp=list(map(float, res["bpp"])),
                 psnr=list(map(float, psnr)), ms_ssim=list(map(float, ms_ssim or [])),
                 encoding_time=list(res.get("encoding_time", [])),
                 decoding_time=list(res.get("decoding_time", [])),
                 params=list(doc.get("params") or []), description=str(doc.get("description", "")),
                 images=images if per_image else [],
                 per_image={k: [list(map(float, row)) for row in v] for k, v in per_image.items()})


def read_curves(folder: str | Path) -> list[Curve]:
    out = []
    for p in sorted(Path(folder).glob("*.json")):
        try:
            out.append(read_curve(p))
        except (ValueError, KeyError, TypeError):
            continue
    return out


def bd_row(test: Curve, reference: Curve, metric: str = "psnr") -> dict[str, Any]:
    """BD-rate (%) and BD quality (dB) of ``test`` against ``reference`` on ``metric``."""
    rt, rr = (test.bpp, test.quality(metric)), (reference.bpp, reference.quality(metric))
    return {"codec": test.name, "reference": reference.name, "metric": metric,
            "bd_rate_percent": metrics.bd_rate(rr, rt), QUALITY_METRICS[metric][0]: metrics.bd_psnr(rr, rt)}


def bd_table(tests: Sequence[Curve], references: Sequence[Curve], metric: str = "psnr") -> list[dict[str, Any]]:
    """BD rows of every test curve against every reference curve on ``metric``; a pair of which
    one curve has no values of the metric (a published curve without MS-SSIM) is left out."""
    return [bd_row(t, r, metric) for t in tests for r in references
            if t is not r and t.has(metric) and r.has(metric)]


def bd_table_per_image(test: Curve, reference: Curve, metric: str = "psnr") -> list[dict[str, Any]]:
    """BD rows of ``test`` against ``reference`` on each image both were measured on, each from
    the two curves of that image alone, in ``test``'s image order."""
    for c in (test, reference):
        if not c.per_image:
            raise ValueError(f"{c.name}: the curve file keeps no per-image values")
    rows = []
    for image in (n for n in test.images if n in reference.images):
        rows.append({"image": image, **bd_row(test.of_image(image), reference.of_image(image), metric)})
    return rows


def bd_table_of_stages(specs: Sequence[tuple[str, Mapping[str, Any]]],
                       curves: Sequence[Curve], metric: str = "psnr") -> list[dict[str, Any]]:
    """BD rows that measure what fixed parameters are worth: a codec's sweep against each of its
    sweeps with fixed parameters (the hybrid against ``refine=off``: what refinement gives), and a
    sweep against one that fixes one parameter more (``postfilter=off`` against
    ``refine=off,postfilter=off``: the refinement filter alone). ``specs[i]`` is
    ``(codec name, fixed parameters)`` of ``curves[i]``; JPEG's variants are left out."""
    rows: list[dict[str, Any]] = []
    for (name, fixed), curve in zip(specs, curves):
        for (other, more), reference in zip(specs, curves):
            if other != name or name == "jpeg" or reference is curve:
                continue
            extra = set(more.items()) - set(fixed.items())
            if set(fixed.items()) < set(more.items()) and (not fixed or len(extra) == 1):
                rows += bd_table([curve], [reference], metric)
    return rows


def bd_table_header(metric: str = "psnr") -> str:
    """The header line of :func:`format_bd_table`'s tables on ``metric``."""
    return BD_TABLE_HEADER.replace("BD-PSNR", QUALITY_METRICS[metric][1])


def format_bd_table(rows: Sequence[dict[str, Any]], metric: str = "psnr") -> str:
    """A Markdown table of :func:`bd_table` rows measured on ``metric``."""
    def num(v: float, unit: str) -> str:
        return "n/a (no overlap)" if math.isnan(v) else f"{v:+.1f}{unit}" if unit == " %" else f"{v:+.2f}{unit}"

    key = QUALITY_METRICS[metric][0]
    header = bd_table_header(metric)
    per_image = any("image" in r for r in rows)
    lines = [f"| image {header}" if per_image else header,
             "|---|---|---|---:|---:|" if per_image else "|---|---|---:|---:|"]
    for r in rows:
        lines.append(f"{'| ' + r.get('image', '') + ' ' if per_image else ''}| {r['codec']} | {r['reference']} | "
                     f"{num(r['bd_rate_percent'], ' %')} | {num(r[key], ' dB')} |")
    return "\n".join(lines)


def summarize_per_image(rows: Sequence[dict[str, Any]]) -> str:
    """One line on :func:`bd_table_per_image` rows: the median BD-rate and the best and worst image."""
    usable = [r for r in rows if math.isfinite(r["bd_rate_percent"])]
    if not usable:
        return "no image's curves overlap in quality"
    ranked = sorted(usable, key=lambda r: r["bd_rate_percent"])
    best, worst = ranked[0], ranked[-1]
    median = float(np.median([r["bd_rate_percent"] for r in usable]))
    skipped = len(rows) - len(usable)
    return (f"median {median:+.1f} % over {len(usable)} images; best {best['image']} "
            f"{best['bd_rate_percent']:+.1f} %, worst {worst['image']} {worst['bd_rate_percent']:+.1f} %"
            + (f"; {skipped} without overlap" if skipped else ""))


def plot_curves(measured: Sequence[Curve], anchors: Sequence[Curve], path: str | Path,
                title: str = "", ceilings: Sequence[dict[str, Any]] = ()) -> None:
    """PSNR-RGB against bpp: measured curves solid with markers, published anchors dashed, and
    the transform ceiling of a codec that has a single one (:func:`transform_ceiling`) dotted."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6), dpi=110)
    for c in anchors:
        ax.plot(c.bpp, c.psnr, "--", linewidth=1, alpha=0.7, label=f"{c.name} (published)")
    colours = {}
    for c in measured:
        (line,) = ax.plot(c.bpp, c.psnr, "o-", linewidth=2, markersize=4, label=f"{c.name} (measured)")
        colours[c.name] = line.get_color()
    for name in {c["codec"] for c in ceilings}:
        own = [c for c in ceilings if c["codec"] == name]
        if len(own) == 1:
            ax.axhline(own[0]["psnr"], linestyle=":", linewidth=1.5, color=colours.get(name, "grey"),
                       label=f"{name}: latent unquantized ({own[0]['psnr']:.2f} dB)")
    bpps = [b for c in measured for b in c.bpp]
    if bpps:
        ax.set_xlim(0, min(max(bpps) * 1.1, 3.0))
    psnrs = [p for c in measured for p in c.psnr if math.isfinite(p)]
    if psnrs:
        ax.set_ylim(min(psnrs) - 1, max(psnrs) + 1)
    ax.set_xlabel("bits per pixel (from .lic file bytes)")
    ax.set_ylabel("PSNR-RGB (dB)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def stderr_progress(done: int, total: int, label: str) -> None:
    """A one-line progress bar on stderr."""
    width = 30
    filled = int(width * done / max(total, 1))
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {label[:60]:<60}")
    if done == total:
        sys.stderr.write("\n")
    sys.stderr.flush()
