"""``lic-codec``: encode, decode, inspect, evaluate and benchmark codecs from the command line.

Codec parameters are given as ``--NAME VALUE`` after the known options, e.g.
``lic-codec encode in.png out.lic --codec jpeg --quality 40 --subsampling 4:4:4``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

__all__ = ["main", "parse_args"]

log = logging.getLogger("lic-codec")


def _codec_options(extra: Sequence[str]) -> dict[str, str]:
    """Turn ``--name value`` pairs left over by argparse into a parameter dict."""
    out: dict[str, str] = {}
    it = iter(extra)
    for token in it:
        if not token.startswith("--") or len(token) < 3:
            raise SystemExit(f"lic-codec: unexpected argument {token!r}")
        key = token[2:].replace("-", "_")
        if "=" in key:
            key, value = key.split("=", 1)
        else:
            try:
                value = next(it)
            except StopIteration:
                raise SystemExit(f"lic-codec: option {token} needs a value") from None
        out[key] = value
    return out


def parse_args(argv: Sequence[str] | None = None) -> tuple[argparse.Namespace, dict[str, str]]:
    p = argparse.ArgumentParser(prog="lic-codec", description=__doc__.splitlines()[0])
    p.add_argument("--verbose", action="store_true", help="show tracebacks and debug logging")
    sub = p.add_subparsers(dest="command", required=True)

    def learned_opts(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--weights", default="default",
                        help="learned codecs: manifest name, .pt path, 'default' or 'random'")
        sp.add_argument("--device", default=None, help="learned codecs: cpu, cuda, cuda:1 … (default: CUDA if present)")

    e = sub.add_parser("encode", help="encode an image to a .lic file")
    e.add_argument("input")
    e.add_argument("output")
    e.add_argument("--codec", default="jpeg")
    e.add_argument("--recon", help="also write the encoder-side reconstruction as PNG")
    learned_opts(e)

    d = sub.add_parser("decode", help="decode a .lic file to PNG")
    d.add_argument("input")
    d.add_argument("output")
    d.add_argument("--device", default=None)
    d.add_argument("--no-verify", dest="verify", action="store_false",
                   help="write the picture even where it fails the file's picture check (decoded "
                        "on another kind of device than the encoder's), with a warning")

    i = sub.add_parser("info", help="describe a .lic file")
    i.add_argument("input")
    i.add_argument("--json", action="store_true", help="machine-readable output")

    v = sub.add_parser("eval", help="R-D sweep of codecs over a folder of images")
    v.add_argument("folder")
    v.add_argument("--codecs", default="jpeg",
                   help="comma-separated registry names, each optionally NAME:PARAM=VALUE to hold a "
                        "parameter fixed (e.g. hybrid:refine=false), or the rate knob as LO..HI to keep "
                        "the sweep's points in that range (e.g. wavelet:rate=0..1; taken from the same "
                        "run's full sweep when it has one)")
    v.add_argument("--out", default="results", help="output folder for JSON curves, table and plot")
    v.add_argument("--anchors", help="folder of CompressAI-format JSON curves to compare against")
    v.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    v.add_argument("--no-ms-ssim", action="store_true", help="skip MS-SSIM (faster)")
    v.add_argument("--ceiling", action="store_true",
                   help="also measure each learned codec with its latent unquantized (ceiling.json)")
    v.add_argument("--jobs", type=int, default=1,
                   help="sweep up to N codec specs at once, each in its own process (default 1)")
    v.add_argument("--threads", type=int, default=0,
                   help="torch threads per sweep (0: torch default with --jobs 1, else cores / jobs); "
                        "the learned codecs' encoding and decoding run on one CPU thread regardless")
    learned_opts(v)

    g = sub.add_parser("grid", help="R-D of one codec over a grid of parameter values, and the "
                                    "grid points on the convex hull (to choose a sweep)")
    g.add_argument("folder")
    g.add_argument("--codec", required=True)
    g.add_argument("--param", action="append", required=True, metavar="NAME=V1,V2,...",
                   help="a parameter and the values to try (repeatable; the grid is every combination)")
    g.add_argument("--limit", type=int, default=0, help="use only the first N images (0: all)")
    g.add_argument("--out", help="write every grid point (params, bpp, PSNR, on_hull) as JSON here")
    learned_opts(g)

    b = sub.add_parser("bench", help="time encode/decode of codecs against bmshj2018-hyperprior")
    b.add_argument("folder")
    b.add_argument("--codecs", default=None,
                   help="comma-separated codecs, each NAME[:PARAM=VALUE...] as eval's (default: every registry name)")
    b.add_argument("--limit", type=int, default=4, help="images to time (0: all)")
    b.add_argument("--repeat", type=int, default=3, help="timed runs per image (median taken)")
    b.add_argument("--threads", type=int, default=0,
                   help="torch threads (0: torch default); on the CPU every codec, the reference "
                        "included, codes on one thread regardless")
    b.add_argument("--out", help="write the table as JSON here too")
    learned_opts(b)

    bd = sub.add_parser("bd", help="BD-rate and BD-PSNR of curve files (eval's JSON, CompressAI's "
                                   "format) against a reference curve file, e.g. across two runs")
    bd.add_argument("reference", help="the reference curve (.json)")
    bd.add_argument("curves", nargs="+", help="curves to measure against it (.json)")
    bd.add_argument("--exclude", default="",
                    help="comma-separated images to leave out of every curve's means, by file name or "
                         "stem (e.g. kodim01,kodim02: the images training validated on); needs curves "
                         "written by lic-codec eval, which keep each image's values")
    bd.add_argument("--metric", choices=["psnr", "ms-ssim"], default="psnr",
                    help="the quality the curves are compared on: PSNR-RGB, or MS-SSIM-RGB in dB "
                         "(−10·log10(1 − MS-SSIM))")
    bd.add_argument("--per-image", action="store_true",
                    help="one row per image too, each from that image's curves alone, and the median, "
                         "best and worst image")

    s = sub.add_parser("codecs", help="list registered codecs and their parameters")
    s.add_argument("--json", action="store_true")

    args, extra = p.parse_known_args(argv)
    if extra and args.command != "encode":
        p.error(f"unrecognized arguments: {' '.join(extra)}")
    return args, _codec_options(extra)


def _create(name: str, args: argparse.Namespace):
    from . import registry

    e = registry.entry(name)
    if e.learned:
        return registry.create(name, weights=args.weights, device=args.device)
    return registry.create(name)


def _cmd_encode(args, options) -> int:
    from .image import ImageWarning, open_image
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ImageWarning)
        image = open_image(args.input)
    for w in caught:
        log.warning("%s", w.message)
    codec = _create(args.codec, args)
    result = codec.encode(image, **options)
    Path(args.output).write_bytes(result.bitstream)
    if args.recon:
        from PIL import Image

        Image.fromarray(result.image).save(args.recon)
    from .metrics import psnr

    print(f"{args.output}: {args.codec} {result.params} {result.num_bytes} bytes, "
          f"{result.bpp:.4f} bpp, PSNR {psnr(image, result.image):.2f} dB")
    return 0


def _cmd_decode(args, options) -> int:
    from .registry import decode_bitstream

    data = Path(args.input).read_bytes()
    kwargs = {"device": args.device} if args.device else {}
    result = decode_bitstream(data, verify=args.verify, **kwargs)
    from PIL import Image

    Image.fromarray(result.image).save(args.output, format="PNG")
    if result.info.get("picture_check") == "mismatch":
        print(f"lic-codec: warning: {args.output} is not the picture the encoder made (it fails the "
              f"file's picture check)", file=sys.stderr)
    print(f"{args.output}: {result.width}x{result.height} from {result.codec}, {result.bpp:.4f} bpp")
    return 0


def _cmd_info(args, options) -> int:
    from . import container, postfilter, registry, weights
    from .errors import BitstreamError

    data = Path(args.input).read_bytes()
    c = container.unpack(data)
    e = registry.entry_by_id(c.codec_id)
    if c.weights_id == 0:
        wname = "none"
    elif c.weights_id & weights.RANDOM_INIT_BIT:
        wname = f"random-init ({c.weights_id:#x})"
    else:
        we = weights.entry_by_id(c.weights_id)
        wname = we.name if we else f"unknown id {c.weights_id} (not in this install's manifest)"
    px = c.width * c.height
    doc = {
        "file": args.input, "codec": e.name, "codec_id": c.codec_id, "format_version": c.version,
        "weights": wname, "weights_id": c.weights_id, "width": c.width, "height": c.height,
        "params": dict(c.params), "bytes": len(data), "bpp": 8 * len(data) / px,
        "sections": {n: {"bytes": len(p), "bpp": 8 * len(p) / px} for n, p in c.sections.items()},
        "container_bytes": len(data) - sum(len(p) for p in c.sections.values()),
    }
    if postfilter.SECTION in c.sections:
        shown = doc["sections"][postfilter.SECTION]
        try:
            pf = postfilter.unpack(c.sections[postfilter.SECTION])
            shown.update(classes=pf.classes, directions=pf.directions, radius=pf.radius, guides=pf.guides,
                         clip=pf.clip, shape=postfilter.describe(pf))
        except BitstreamError as err:
            shown["classes"] = f"unreadable: {err}"
    if args.json:
        print(json.dumps(doc, indent=2))
        return 0
    print(f"{args.input}: {e.name} (id {c.codec_id}), format v{c.version}, weights {wname}")
    print(f"  image {c.width}x{c.height}, {len(data)} bytes, {doc['bpp']:.4f} bpp")
    print(f"  params: {', '.join(f'{k}={v}' for k, v in c.params.items()) or '-'}")
    for n, s in doc["sections"].items():
        extra = f"  ({s['shape']})" if "shape" in s else s.get("classes", "")
        print(f"  section {n:<12} {s['bytes']:>9} bytes  {s['bpp']:.4f} bpp{extra}")
    print(f"  container    {doc['container_bytes']:>11} bytes")
    return 0


def _parse_codec_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"hybrid:refine=false:subsampling=4:4:4"`` → ``("hybrid", {"refine": "false", ...})``.

    Parameters after the name are held fixed during the sweep, so one run can compare, e.g.,
    the hybrid with and without refinement.
    """
    from .errors import ParameterError
    from .registry import parse_spec

    try:
        return parse_spec(spec)
    except ParameterError as err:
        raise SystemExit(f"lic-codec: {err}") from None


def _images(args: argparse.Namespace) -> list[Path]:
    """The images of ``args.folder``, the first ``args.limit`` of them if set."""
    from . import evaluate as ev

    images = ev.list_images(args.folder)[: args.limit or None]
    if not images:
        raise SystemExit(f"lic-codec: no images in {args.folder}")
    return images


def _use_threads(threads: int) -> None:
    """Torch CPU threads for this process (0: leave torch's default)."""
    if threads:
        import torch

        torch.set_num_threads(threads)


_KNOB_RANGE = ".."


def _knob_range(codec, fixed: dict[str, str]) -> tuple[dict[str, str], tuple[float, float] | None]:
    """``fixed`` without a rate knob given as ``LO..HI``, and that range (None without one)."""
    knob = codec.rate_param.name
    value = fixed.get(knob, "")
    if _KNOB_RANGE not in value:
        return fixed, None
    lo_text, _, hi_text = value.partition(_KNOB_RANGE)
    try:
        lo, hi = float(lo_text), float(hi_text)
    except ValueError:
        raise SystemExit(f"lic-codec: {codec.name}: {knob}={value!r} is not a range LO..HI of numbers") from None
    if not lo <= hi:
        raise SystemExit(f"lic-codec: {codec.name}: {knob}={value} needs LO <= HI")
    return {k: v for k, v in fixed.items() if k != knob}, (lo, hi)


def _spec_points(codec, fixed: dict[str, str]) -> list[dict[str, Any]]:
    """The sweep's points with ``fixed`` held; a fixed rate knob leaves one point, not the
    sweep's length of copies of it, and a knob range the points inside it."""
    fixed, knob_range = _knob_range(codec, fixed)
    knob = codec.rate_param.name
    path = codec.sweep_points(fixed)
    points = [p for p in path if knob_range is None or knob_range[0] <= p[knob] <= knob_range[1]]
    if not points:  # only a range can leave none
        raise SystemExit(f"lic-codec: {codec.name}: no sweep point has {knob} in "
                         f"{knob_range[0]:g}..{knob_range[1]:g}; the sweep's are {[p[knob] for p in path]}")
    return points


def _range_parents(specs: list[tuple[str, dict[str, str]]], codecs: dict[str, Any]) -> dict[int, int]:
    """{index of a knob-range spec: index of the spec whose sweep it is a part of}: the same
    codec with the same other fixed parameters. Such a spec's curve is that sweep's points in
    the range, not a second measurement of them."""
    parents: dict[int, int] = {}
    for i, (name, fixed) in enumerate(specs):
        rest, knob_range = _knob_range(codecs[name], fixed)
        if knob_range is None:
            continue
        for j, (other, more) in enumerate(specs):
            if other == name and more == rest:
                parents[i] = j
                break
    return parents


def _curve_name(name: str, fixed: dict[str, str]) -> str:
    return name + "".join(f"_{k}-{v}" for k, v in fixed.items()).replace(":", "")


_worker_codecs: dict[str, Any] = {}


def _measure_job(name: str, points: list[dict[str, Any]], images: list[Path], args: argparse.Namespace,
                 threads: int) -> Any:
    """One spec's measurements on some of the images: a process-pool job of ``eval --jobs``.

    A worker keeps the codecs it has built, since it runs many jobs of the same specs.
    """
    from . import evaluate as ev

    _use_threads(threads)
    if name not in _worker_codecs:
        _worker_codecs[name] = _create(name, args)
    return ev.measure(_worker_codecs[name], images, points, with_ms_ssim=not args.no_ms_ssim)


def _sweep_all(specs: list[tuple[str, dict[str, str]]], codecs: dict[str, Any], images: list[Path],
               args: argparse.Namespace, parents: dict[int, int]) -> list:
    """Curves of every spec, in ``specs`` order, with ``codecs`` (one per codec name).

    Every spec's parameters are checked before anything is measured. A knob-range spec with a
    full sweep among ``specs`` (``parents``, :func:`_range_parents`) takes its points from that
    sweep's curve.
    """
    if args.jobs < 1:
        raise SystemExit(f"lic-codec: --jobs {args.jobs} must be at least 1")
    points = [_spec_points(codecs[name], fixed) for name, fixed in specs]
    names = [_curve_name(name, fixed) for name, fixed in specs]
    measured = [i for i in range(len(specs)) if i not in parents]
    curves = dict(zip(measured, _measure_specs([specs[i][0] for i in measured], [points[i] for i in measured],
                                               [names[i] for i in measured], codecs, images, args)))
    for i, parent in parents.items():
        curves[i] = curves[parent].restricted_to(points[i], names[i])
    return [curves[i] for i in range(len(specs))]


def _measure_specs(specs: list[str], points: list[list[dict[str, Any]]], names: list[str],
                   codecs: dict[str, Any], images: list[Path], args: argparse.Namespace) -> list:
    """The curve of codec ``specs[i]`` at ``points[i]``, named ``names[i]``, for each i.

    With ``args.jobs`` > 1, worker processes take one (spec, image) pair at a time, so that a
    slow spec is shared among all workers rather than left to one.
    """
    from . import evaluate as ev

    curves: list = []
    jobs = min(args.jobs, len(specs) * len(images))
    if jobs == 1:
        for name, spec_points, curve_name in zip(specs, points, names):
            curve = ev.sweep(codecs[name], images, spec_points, with_ms_ssim=not args.no_ms_ssim,
                             progress=ev.stderr_progress)
            curve.name = curve_name
            curves.append(curve)
        return curves
    import multiprocessing
    import os
    from concurrent.futures import ProcessPoolExecutor

    threads = args.threads or max(1, (os.cpu_count() or 1) // jobs)
    # spawn: a forked child would inherit torch's thread pools mid-state.
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [[pool.submit(_measure_job, name, spec_points, [image], args, threads) for image in images]
                   for name, spec_points in zip(specs, points)]
        try:
            # Waiting in submission order only delays the messages; the workers run ahead regardless.
            for done, (parts, curve_name) in enumerate(zip(futures, names), 1):
                measured = parts[0].result()
                for part in parts[1:]:
                    measured.extend(part.result())
                curve = measured.curve()
                curve.name = curve_name
                curves.append(curve)
                print(f"[{done}/{len(specs)}] swept {curve_name}", file=sys.stderr, flush=True)
        except BaseException:
            # A failed job (a decode that differs, Ctrl-C) ends the run now, not after the queue.
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return curves


def _cmd_eval(args, options) -> int:
    from . import evaluate as ev

    images = _images(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    specs = [_parse_codec_spec(n) for n in args.codecs.split(",") if n.strip()]
    if not any(name == "jpeg" and not fixed for name, fixed in specs):
        specs.insert(0, ("jpeg", {}))  # the reference every table is measured against
    _use_threads(args.threads)
    codecs = {name: _create(name, args) for name in dict.fromkeys(name for name, _ in specs)}
    parents = _range_parents(specs, codecs)
    curves = _sweep_all(specs, codecs, images, args, parents)
    for curve in curves:
        ev.write_curve(curve, out / f"{curve.name}.json")
    anchors = ev.read_curves(args.anchors) if args.anchors else []
    tables, written = _write_bd_tables(out, specs, codecs, curves, anchors, f"{len(images)} images of {args.folder}",
                                       with_ms_ssim=not args.no_ms_ssim)
    table = tables["psnr"]
    ceilings = _ceilings(specs, codecs, images) if args.ceiling else []
    if ceilings:
        (out / "ceiling.json").write_text(json.dumps(ceilings, indent=2) + "\n")
    # A range with a full sweep in the run is drawn already, as part of it.
    ev.plot_curves([c for i, c in enumerate(curves) if i not in parents], anchors, out / "rd.png",
                   title=f"{Path(args.folder).name}: {len(images)} images", ceilings=ceilings)
    print(table)
    for c in ceilings:
        print(f"{c['codec']} {json.dumps(c['params'])}: latent unquantized {c['psnr']:.2f} dB")
    print(f"wrote {out}/: {', '.join([c.name + '.json' for c in curves] + written)}, rd.png")
    # An earlier run's curves left in the folder would pass for this run's (bench.json is the
    # bench command's, written there by make results).
    ours = {f"{c.name}.json" for c in curves} | set(written) | {"bench.json"} | (
        {"ceiling.json"} if args.ceiling else set())
    stale = sorted(p.name for p in out.glob("*.json") if p.name not in ours)
    if stale:
        print(f"lic-codec: {out} also holds {', '.join(stale)}, which this run did not make: "
              f"remove them, or they pass for its results", file=sys.stderr)
    return 0


def _write_bd_tables(out: Path, specs: list[tuple[str, dict[str, str]]], codecs: dict[str, Any], curves: list,
                     anchors: list, measured_on: str, with_ms_ssim: bool) -> tuple[dict[str, str], list[str]]:
    """eval's BD tables, on PSNR and (``with_ms_ssim``) on MS-SSIM: every curve against the JPEG
    measured in the run, each codec against its own stages, every curve against the anchors.
    Returns the Markdown table of each metric and the names of the files written to ``out``."""
    from . import evaluate as ev

    jpeg = next(c for c in curves if c.name == "jpeg")
    # A knob range is a part of a sweep, not a stage of the codec.
    stages = [(spec, c) for spec, c in zip(specs, curves) if _knob_range(codecs[spec[0]], spec[1])[1] is None]
    tables, written = {}, []
    for metric, suffix, scale in (("psnr", "", "PSNR-RGB"),
                                  ("ms-ssim", "_ms-ssim", "MS-SSIM-RGB in dB, −10·log10(1 − MS-SSIM)")):
        if metric == "ms-ssim" and not with_ms_ssim:
            continue
        rows = ev.bd_table([c for c in curves if c is not jpeg], [jpeg], metric)
        rows += ev.bd_table_of_stages([spec for spec, _ in stages], [c for _, c in stages], metric)
        rows += ev.bd_table(curves, anchors, metric)
        tables[metric] = ev.format_bd_table(rows, metric)
        (out / f"bd_rate{suffix}.md").write_text(
            f"BD-rate on {measured_on} ({scale}; negative = fewer bits than the reference).\n\n{tables[metric]}\n")
        (out / f"bd_rate{suffix}.json").write_text(json.dumps(rows, indent=2, allow_nan=True) + "\n")
        written += [f"bd_rate{suffix}.md", f"bd_rate{suffix}.json"]
    return tables, written


def _ceilings(specs: list[tuple[str, dict[str, str]]], codecs: dict[str, Any], images: list[Path]) -> list:
    """The transform ceiling of each learned codec swept without fixed parameters."""
    from . import evaluate as ev
    from . import registry

    names = [name for name, fixed in specs if not fixed and registry.entry(name).learned]
    return [row for name in dict.fromkeys(names) for row in ev.transform_ceiling(codecs[name], images)]


def _cmd_grid(args, options) -> int:
    from . import evaluate as ev

    images = _images(args)
    values: dict[str, list[str]] = {}
    for spec in args.param:
        name, eq, listed = spec.partition("=")
        if not eq or not name or not listed:
            raise SystemExit(f"lic-codec: bad --param {spec!r}; use NAME=V1,V2,...")
        values[name] = listed.split(",")
    codec = _create(args.codec, args)
    curve = ev.sweep(codec, images, ev.grid_points(codec, values), with_ms_ssim=False,
                     progress=ev.stderr_progress, check_decode=False)
    hull = set(ev.upper_hull(curve.bpp, curve.psnr))
    rows = [{"params": {k: curve.params[i][k] for k in values}, "bpp": curve.bpp[i],
             "psnr": curve.psnr[i], "on_hull": i in hull} for i in range(len(curve.bpp))]
    print(f"{codec.name} ({codec.weights_name}) on {len(images)} images of {args.folder}; "
          "* marks the convex hull")
    for r in rows:
        print(f"{'*' if r['on_hull'] else ' '} {json.dumps(r['params'])}  {r['bpp']:.4f} bpp  {r['psnr']:.2f} dB")
    if args.out:
        Path(args.out).write_text(json.dumps({"codec": codec.name, "weights": codec.weights_name,
                                              "images": [p.name for p in images], "points": rows},
                                             indent=2) + "\n")
    return 0


def _cmd_bench(args, options) -> int:
    from . import bench

    return bench.run(args, _images(args))


def _cmd_bd(args, options) -> int:
    from . import evaluate as ev
    from .errors import ParameterError

    curves = []
    for path in [args.reference, *args.curves]:
        try:
            curve = ev.read_curve(path)
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ParameterError(f"{path}: not a readable curve file ({err})") from None
        curve.name = str(path)  # two runs' curves often share a codec name
        curves.append(curve)
    excluded = [n.strip() for n in args.exclude.split(",") if n.strip()]
    try:
        if excluded:
            curves = [_without_images(c, excluded) for c in curves]
            print(f"averaged over {len(curves[0].images)} image(s), without {', '.join(excluded)}")
        print(ev.format_bd_table([ev.bd_row(c, curves[0], args.metric) for c in curves[1:]], args.metric))
        if args.per_image:
            for curve in curves[1:]:
                rows = ev.bd_table_per_image(curve, curves[0], args.metric)
                print()
                print(ev.format_bd_table(rows, args.metric))
                print(ev.summarize_per_image(rows))
    except ValueError as err:
        raise ParameterError(str(err)) from None
    return 0


def _without_images(curve, excluded: Sequence[str]):
    """``curve`` averaged over its images but ``excluded`` (file names or stems)."""
    if not curve.per_image:
        raise ValueError(f"{curve.name}: the curve file keeps no per-image values, so no image can be "
                         "left out (anchors keep none; eval's curves do)")
    unknown = [n for n in excluded if not any(n in (i, Path(i).stem) for i in curve.images)]
    if unknown:
        raise ValueError(f"{curve.name}: no image named {', '.join(unknown)}")
    return curve.on_images([i for i in curve.images if i not in excluded and Path(i).stem not in excluded])


def _cmd_codecs(args, options) -> int:
    from .registry import CODECS
    from .base import Codec  # noqa: F401  (documented type of the classes listed)

    doc = []
    for e in CODECS.values():
        klass = e.load_class()
        doc.append({"name": e.name, "id": e.codec_id, "title": e.title, "learned": e.learned,
                    "params": [{"name": p.name, "kind": p.kind, "default": p.default, "min": p.minimum,
                                "max": p.maximum, "choices": list(p.choices), "help": p.help}
                               for p in klass.params]})
    if args.json:
        print(json.dumps(doc, indent=2))
    else:
        for d in doc:
            print(f"{d['name']} (id {d['id']}{', learned' if d['learned'] else ''}): {d['title']}")
            for p in d["params"]:
                rng = f" {p['min']}..{p['max']}" if p["min"] is not None else ""
                ch = f" {{{', '.join(p['choices'])}}}" if p["choices"] else ""
                print(f"  --{p['name']} ({p['kind']}{rng}{ch}, default {p['default']}): {p['help']}")
    return 0


COMMANDS = {"encode": _cmd_encode, "decode": _cmd_decode, "info": _cmd_info, "eval": _cmd_eval,
            "grid": _cmd_grid, "bench": _cmd_bench, "codecs": _cmd_codecs,
            "bd": _cmd_bd}


def main(argv: Sequence[str] | None = None) -> int:
    args, options = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="lic-codec: %(levelname)s: %(message)s")
    from .errors import LicError

    try:
        return COMMANDS[args.command](args, options)
    except (LicError, OSError, ValueError, RuntimeError) as err:
        if args.verbose:
            raise
        msg = str(err).splitlines()[0] if str(err) else err.__class__.__name__
        print(f"lic-codec: error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("lic-codec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
