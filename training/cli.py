"""``lic-train``: train the hybrid, its refinement filter and the wavelet codec; export weights.

Examples::

    lic-train hybrid --data ../shared/data/train --val ../shared/data/kodak --out runs/hybrid
    lic-train hybrid --out runs/hybrid --resume --max-minutes 120
    lic-train refine --init runs/hybrid/last.ckpt --data ../shared/data/train --out runs/refine
    lic-train wavelet --data … --pretrain runs/base/last.ckpt \
        --freeze-except ll_context freq_attention channel_gate adaptive_quant --freeze-steps 20000
    lic-train export runs/hybrid/last.ckpt --name hybrid-v1 --default
    lic-train default hybrid-v1          (make exported weights the default again)
    lic-train pack ../shared/data/train .gpudata/train   (a set small enough to send to a GPU machine)
    torchrun --nproc_per_node 4 --no-python lic-train wavelet …   (DistributedDataParallel)

Run options live in :class:`training.config.RunConfig`; every option here fills one field.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from codec.errors import LicError
from codec.jpeg import TABLES
from codec.weights import is_weights_name

from .config import HYBRID_SCHEDULE, MODES, RunConfig, parse_floats, parse_overrides, parse_range
from .data import AUGMENTATIONS

__all__ = ["parse_args", "main", "run_config_from_args"]

log = logging.getLogger("training")


def _add_run_options(p: argparse.ArgumentParser, mode: str) -> None:
    # Every default is None so that a resumed run can tell what was given on this command line.
    g = p.add_argument_group("run")
    g.add_argument("--data", help="folder of training images (recursive)")
    g.add_argument("--val", help="folder of validation images (real entropy coding), e.g. ../shared/data/kodak")
    g.add_argument("--out", help=f"run folder for checkpoints and logs (default runs/{mode})")
    g.add_argument("--resume", action="store_true", help="continue OUT/last.ckpt exactly")
    g.add_argument("--init", help="start from weights: a .pt file, a manifest name, 'default' (the codec's "
                                  "default weights) or a .ckpt")
    g.add_argument("--config", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the model Config (repeatable); with --init, a model "
                        "that can grow (the wavelet codec's latent: M=192) starts from narrower weights")
    g.add_argument("--seed", type=int)
    g.add_argument("--threads", type=int, help="torch CPU threads (e.g. 1 for a background run)")
    g.add_argument("--device", help="cpu, cuda, cuda:1 … (default: CUDA if present)")
    g = p.add_argument_group("budget")
    g.add_argument("--steps", type=int, help="total steps of the run (default 100000, or phases × --phase-steps)")
    g.add_argument("--max-minutes", type=float, help="stop (with a checkpoint) after this many minutes")
    g.add_argument("--checkpoint-every-minutes", type=float, help="periodic checkpoint interval (default 10)")
    g = p.add_argument_group("data")
    g.add_argument("--crop", type=int, help="square crop side, a multiple of the model stride "
                   "(default 128, or the model's min_train_crop rounded up to the stride if larger)")
    g.add_argument("--batch", type=int, help="batch size per rank (default 8)")
    g.add_argument("--augment", choices=AUGMENTATIONS,
                   help="flip: each crop mirrored left-right half the time (default); dihedral: each "
                        "turned into one of the square's eight symmetries (quarter turns, mirrored or not)")
    if MODES[mode] == "hybrid":
        g.add_argument("--base-quality", help="JPEG base quality range LO:HI sampled per crop (default 10:80)")
        g.add_argument("--base-subsampling", choices=("4:2:0", "4:4:4"), help="JPEG base chroma (default 4:2:0)")
        g.add_argument("--base-tables", choices=TABLES,
                       help="JPEG base quantisation tables (default standard, as the shipped weights)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--lr", type=float, help="Adam learning rate (default 1e-4)")
    g.add_argument("--aux-lr", type=float, help="entropy-bottleneck quantile learning rate (default 1e-3)")
    g.add_argument("--warmup-steps", type=int, help="linear warm-up steps (default 500)")
    g.add_argument("--lr-decay-at", help="fractions of the run (or phase) where lr is multiplied by "
                                         "--lr-decay-factor (default 0.8,0.95)")
    g.add_argument("--lr-decay-factor", type=float, help="default 0.1")
    g.add_argument("--clip", type=float, help="gradient-norm clip, 0 for none (default 1.0)")
    g.add_argument("--ema", type=float, metavar="DECAY",
                   help="keep a moving average of the weights with this decay per step (e.g. 0.999); "
                        "validation and export use it; may be switched on when resuming (default 0: off)")
    g.add_argument("--rate-warmup-steps", type=int,
                   help="train on distortion alone for N/2 steps, then ramp the rate term's weight "
                        "to 1 at step N, so the codec learns to code before it learns to save "
                        "bits (default 0)")
    g.add_argument("--widen-rate-warmup-steps", type=int,
                   help="the same ramp for the rate of the latent channels alone that --init added "
                        "by growing a narrower model (--config M=...), so they carry information "
                        "before they pay for it (default 0)")
    g = p.add_argument_group("rate")
    g.add_argument("--continuous", action="store_true",
                   help="sample the rate knob t ~ U[--rate-range] per sample, λ = model.lambda_for_rate(t) "
                        "(default)")
    g.add_argument("--rate-range", nargs=2, type=float, metavar=("LO", "HI"),
                   help="knob values continuous training draws from (default 0 1: λ_min to λ_max); "
                        "the wavelet codec's knob reaches down to -0.5")
    g.add_argument("--lambda-schedule", nargs="?", const=",".join(map(str, HYBRID_SCHEDULE)), metavar="L1,L2,…",
                   help="fixed-λ phases, each fine-tuning the last (alone: the design's "
                        f"{','.join(map(str, HYBRID_SCHEDULE))})")
    g.add_argument("--phase-steps", type=int, help="steps per λ phase")
    g = p.add_argument_group("loss")
    g.add_argument("--ms-ssim-weight", type=float, help="add W·λ·(1−MS-SSIM) to the distortion (0: off)")
    g.add_argument("--vgg-weight", type=float, help="add W·λ·VGG16 feature MSE (needs --vgg-weights)")
    g.add_argument("--vgg-weights", help="local torchvision VGG16 state dict (nothing is downloaded)")
    if mode in ("wavelet", "refine"):
        g = p.add_argument_group("transfer")
        # refine: a wider filter (--config refine_channels=…) starts from a trained main model
        g.add_argument("--pretrain", help="checkpoint/weights to copy matching tensors from "
                                          "(the model's config is the default plus --config)")
    if mode == "refine":
        g.add_argument("--refine-from", metavar="WEIGHTS",
                       help="start the filter from these weights' or checkpoint's refinement filter "
                            "instead of --init's or --pretrain's (one trained on another main model)")
    if mode == "wavelet":
        g.add_argument("--freeze-except", nargs="+", metavar="MODULE",
                       help="train only these sub-modules (dotted-name prefixes) first")
        g.add_argument("--freeze-steps", type=int,
                       help="steps of the frozen stage before everything is fine-tuned (default: whole run)")
    g = p.add_argument_group("validation and output")
    g.add_argument("--val-images", type=int, help="validation images (default 4)")
    g.add_argument("--val-points", type=int, help="codec sweep points validated (default 3)")
    g.add_argument("--val-every", type=int, help="validate every N steps (0: only at the end; default 2000)")
    g.add_argument("--val-crop", type=int, help="centre-crop validation images to N px (0: full size)")
    g.add_argument("--log-every", type=int, help="CSV/progress interval in steps (default 50)")
    g.add_argument("--final-eval", metavar="DIR",
                   help="at the end, sweep the codec's operating points over DIR (e.g. Kodak); "
                        "the results go into the checkpoint and the manifest")
    g.add_argument("--final-eval-images", type=int, help="limit the final sweep to N images (0: all)")
    g.add_argument("--export", dest="export_name", metavar="NAME",
                   help="when the run completes or its --max-minutes are spent, export the weights "
                        "(and each finished λ phase as NAME-lambdaλ) to weights/")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="lic-train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--verbose", action="store_true", help="debug logging and tracebacks")
    sub = p.add_subparsers(dest="command", required=True)
    helps = {"hybrid": "train the hybrid codec's residual model",
             "refine": "train the hybrid's MultiScaleRefine with the rest frozen (eval mode)",
             "joint": "train the hybrid's residual codec and MultiScaleRefine together, on the filtered picture",
             "wavelet": "train the wavelet codec"}
    for mode in MODES:
        _add_run_options(sub.add_parser(mode, help=helps[mode]), mode)
    e = sub.add_parser("export", help="write weights/NAME.pt and its manifest entry from a checkpoint")
    e.add_argument("checkpoint")
    e.add_argument("--name", required=True)
    e.add_argument("--fp16", action="store_true", help="store float parameters as float16")
    e.add_argument("--default", action="store_true", help="make these the codec's default weights")
    e.add_argument("--weights-dir", help="manifest folder (default: $LIC_WEIGHTS_DIR or the repo's weights/)")
    e.add_argument("--eval", dest="eval_dir", help="also measure an R-D sweep on this folder (e.g. Kodak)")
    e.add_argument("--eval-images", type=int, default=0, help="limit the sweep to N images (0: all)")
    e.add_argument("--no-check", action="store_true", help="skip the load + round-trip check")
    e.add_argument("--last-step", action="store_true",
                   help="export the weights of the last step, not the run's moving average (--ema)")
    r = sub.add_parser("retire", help="remove weights from weights/ (file and manifest entry); their id "
                                      "is kept as retired so that no other weights reuse it")
    r.add_argument("name")
    r.add_argument("--weights-dir", help="manifest folder (default: $LIC_WEIGHTS_DIR or the repo's weights/)")
    d = sub.add_parser("default", help="make exported weights their codec's default")
    d.add_argument("name")
    d.add_argument("--weights-dir", help="manifest folder (default: $LIC_WEIGHTS_DIR or the repo's weights/)")
    k = sub.add_parser("pack", help="copy a training set, large images shrunk and all stored as JPEG, "
                                    "small enough to send to a lent GPU machine")
    k.add_argument("source")
    k.add_argument("dest")
    k.add_argument("--max-side", type=int, default=768, help="shrink images whose longest side is larger")
    k.add_argument("--quality", type=int, default=95, help="JPEG quality (4:4:4)")
    v = sub.add_parser("eval", help="R-D sweep of a checkpoint or weights with real entropy coding")
    v.add_argument("source", help="a .ckpt, a .pt weights file or a manifest name")
    v.add_argument("--data", required=True, help="folder of images")
    v.add_argument("--codec", help="codec of a manifest name (default: found from the source)")
    v.add_argument("--images", type=int, default=0, help="use the first N images (0: all)")
    v.add_argument("--out", help="write the CompressAI-format curve JSON here")
    v.add_argument("--threads", type=int)
    v.add_argument("--device")
    v.add_argument("--channels", action="store_true",
                   help="also how the latent's bits spread over its channels at each point (whether "
                        "its width limits the codec)")
    v.add_argument("--ceiling", action="store_true",
                   help="also the PSNR with the latent unquantized (what no rate can exceed)")
    c = sub.add_parser("curve", help="plot learning curves: validation R-D of runs against steps, "
                                     "and each point's gain over JPEG on the same crops")
    c.add_argument("logs", nargs="+", metavar="VAL_CSV[=NAME][+STEPS]",
                   help="a run's val.csv, optionally =NAME for the legend and +STEPS, the steps "
                        "its weights had before the run (a run started with --init from "
                        "weights of N steps: +N; after =NAME, +WEIGHTS reads N from the "
                        "manifest's training records of those weights); logs of one NAME join "
                        "into one curve")
    c.add_argument("--out", required=True, help="PNG to write")
    c.add_argument("--reference", metavar="DIR",
                   help="code JPEG on these validation images (default: the run's --val, read "
                        "from run.json beside the first log)")
    c.add_argument("--images", type=int, help="validation images (default: the run's --val-images)")
    c.add_argument("--crop", type=int,
                   help="centre crop of the logs that do not record theirs (default: the run's --val-crop)")
    c.add_argument("--no-reference", action="store_true", help="plot the R-D per step only")
    c.add_argument("--title", default="")
    m = sub.add_parser("compare", help="a run's validation against another's (e.g. the weights it "
                                       "started from): each shared point's bits and dB, and BD-rate")
    m.add_argument("base", metavar="BASE_VAL_CSV[@STEP]", help="the reference log (default: its last step)")
    m.add_argument("new", metavar="NEW_VAL_CSV[@STEP]", help="the log compared with it (default: its last step)")
    return p.parse_args(argv)


def run_config_from_args(args: argparse.Namespace) -> tuple[RunConfig, dict | None]:
    """The run's config (and, with ``--resume``, its checkpoint) from parsed arguments."""
    from codec.errors import ParameterError

    mode = args.command
    given: dict[str, Any] = {}
    for key in ("data", "val", "init", "seed", "threads", "device", "steps", "max_minutes",
                "checkpoint_every_minutes", "crop", "batch", "augment", "lr", "aux_lr", "warmup_steps",
                "lr_decay_factor", "clip", "ema", "rate_warmup_steps", "widen_rate_warmup_steps",
                "phase_steps", "ms_ssim_weight", "vgg_weight", "vgg_weights",
                "val_images", "val_points", "val_every", "val_crop", "log_every", "export_name",
                "final_eval", "final_eval_images",
                "base_subsampling", "base_tables", "pretrain", "freeze_steps", "refine_from"):
        value = getattr(args, key, None)
        if value is not None:
            given[key] = value
    if getattr(args, "base_quality", None) is not None:
        given["base_quality"] = parse_range(args.base_quality)
    if args.rate_range is not None:
        given["rate_range"] = tuple(args.rate_range)
    if args.lr_decay_at is not None:
        given["lr_decay_at"] = parse_floats(args.lr_decay_at)
    if getattr(args, "freeze_except", None):
        given["freeze_except"] = tuple(args.freeze_except)
    if args.config:
        given["model_config"] = parse_overrides(args.config)
    if args.lambda_schedule is not None:
        if args.continuous:
            raise ParameterError("--continuous and --lambda-schedule exclude each other")
        given["lambda_schedule"] = parse_floats(args.lambda_schedule)
    elif args.continuous:
        given["lambda_schedule"] = ()
    out = args.out or f"runs/{mode}"
    if args.resume:
        from .trainer import resume_config

        cfg, doc = resume_config(out, given)
        if cfg.mode != mode:
            raise ParameterError(f"{out} holds a {cfg.mode!r} run; resume it with `lic-train {cfg.mode}`")
        return cfg, doc
    if (Path(out) / "last.ckpt").exists():
        raise ParameterError(f"{out} already holds a run (last.ckpt): pass --resume to continue it "
                             "or choose another --out")
    cfg = RunConfig(mode=mode, out=out, **given)
    if "steps" not in given and cfg.lambda_schedule and cfg.phase_steps:
        cfg.steps = len(cfg.lambda_schedule) * cfg.phase_steps
    cfg.validate()
    return cfg, None


def _setup_logging(verbose: bool, rank: int, world: int) -> None:
    level = logging.DEBUG if verbose else logging.INFO
    prefix = f"[rank {rank}] " if world > 1 else ""
    logging.basicConfig(level=level if rank == 0 else logging.WARNING,
                        format=f"%(asctime)s {prefix}%(levelname)s %(name)s: %(message)s")


def _set_threads(threads: int | None) -> None:
    import torch

    if threads:
        torch.set_num_threads(threads)
        try:
            torch.set_num_interop_threads(threads)
        except RuntimeError:  # only allowed before any parallel work; harmless otherwise
            pass


def _cmd_train(args: argparse.Namespace) -> int:
    from .dist import init_distributed
    from .trainer import Trainer

    cfg, doc = run_config_from_args(args)
    _set_threads(cfg.threads)
    dist = init_distributed(cfg.device)
    try:
        trainer = Trainer(cfg, dist=dist, resume=doc)
        result = trainer.run()
    finally:
        dist.close()
    if dist.is_main:
        print(json.dumps({"step": result.step, "reason": result.reason, "minutes": round(result.minutes, 2),
                          "checkpoint": str(result.checkpoint) if result.checkpoint else None,
                          "skipped_steps": result.skipped_steps, "validation": result.validation}))
    return 0 if result.reason in ("done", "time", "stopped") else 128 + int(trainer._stop_signal or 0)


def _cmd_export(args: argparse.Namespace) -> int:
    from .export import export_checkpoint

    results = None
    if args.eval_dir:
        from .validate import sweep_folder

        codec = _codec_from_source(args.checkpoint, None, None)
        results = {"eval": sweep_folder(codec, args.eval_dir, args.eval_images)[0]}
    entry = export_checkpoint(args.checkpoint, args.name, weights_dir=args.weights_dir, fp16=args.fp16,
                              default=args.default, results=results, check=not args.no_check,
                              averaged=not args.last_step)
    print(json.dumps({k: entry[k] for k in ("name", "codec", "weights_id", "file", "sha256", "default")}))
    return 0


def _cmd_retire(args: argparse.Namespace) -> int:
    from .export import retire_weights

    print(json.dumps(retire_weights(args.name, weights_dir=args.weights_dir)))
    return 0


def _cmd_default(args: argparse.Namespace) -> int:
    from .export import set_default_weights

    print(json.dumps(set_default_weights(args.name, weights_dir=args.weights_dir)))
    return 0


def _cmd_pack(args: argparse.Namespace) -> int:
    from .pack import pack_images

    print(json.dumps(pack_images(args.source, args.dest, args.max_side, args.quality)))
    return 0


def _codec_from_source(source: str, codec_name: str | None, device: str | None):
    from .checkpoint import is_checkpoint
    from .config import config_from_dict
    from .models import build_model, codec_class, codec_from_model, load_source

    if is_checkpoint(source):
        src = load_source(source)
        cls = codec_class(src.codec)
        cfg = config_from_dict(cls.config_class, src.config)
        model = build_model(cls, cfg, seed=0)
        model.load_state_dict(src.state_dict)
        return codec_from_model(cls, model, cfg, device or "cpu", label=src.description)
    name = codec_name or load_source(source).codec
    return codec_class(name)(weights=source, device=device)


def _cmd_eval(args: argparse.Namespace) -> int:
    from codec.evaluate import write_curve

    _set_threads(args.threads)
    from .validate import sweep_folder

    codec = _codec_from_source(args.source, args.codec, args.device)
    res, curve = sweep_folder(codec, args.data, args.images)
    if args.out:
        write_curve(curve, args.out)
    print(f"{codec.name} ({codec.weights_name}) on {res['images']} images of {res['dataset']}:")
    for pt in res["points"]:
        print(f"  {json.dumps(pt['params'], sort_keys=True):<60} {pt['bpp']:.4f} bpp  {pt['psnr']:.2f} dB")
    if args.ceiling:
        from .validate import ceiling_folder

        print("unquantized latent (the transforms' ceiling):")
        for c in ceiling_folder(codec, args.data, args.images):
            print(f"  {json.dumps(c['params'], sort_keys=True):<60} {'∞':>6} bpp  {c['psnr']:.2f} dB")
    if args.channels:
        from .validate import channel_usage_folder

        print("latent channels (of the costliest, how many carry 50 / 90 / 99 % of the latent's bits):")
        for u in channel_usage_folder(codec, args.data, args.images):
            counts = " / ".join(str(n) for n in u["channels_for"].values())
            print(f"  {json.dumps(u['params'], sort_keys=True):<60} {u['latent_bpp']:.4f} bpp in y  "
                  f"{counts} of {u['channels']}  ({u['silent']} under 0.1 %)")
    return 0


def _log_spec(spec: str) -> tuple[str, str, int | str]:
    """``"runs/w/val.csv=wavelet+3839"`` → ``("runs/w/val.csv", "wavelet", 3839)``; after a legend
    name the offset may name weights instead: ``"…=wavelet+wavelet-s5"`` → ``(…, "wavelet-s5")``."""
    head, plus, offset = spec.rpartition("+")
    named = "=" in head and is_weights_name(offset)
    if not (plus and (offset.isdigit() or named)):  # no offset: a '+' elsewhere is the path's or name's
        head, offset = spec, "0"
    path, _, name = head.partition("=")
    return path, name or Path(path).parent.name, int(offset) if offset.isdigit() else offset


def _cmd_curve(args: argparse.Namespace) -> int:
    from codec.errors import ParameterError

    from .curve import jpeg_reference, plot_learning_curve, read_val_csv
    from .export import trained_steps
    from .validate import load_val_images

    folder, count, crop = args.reference, args.images, args.crop
    run_json = Path(_log_spec(args.logs[0])[0]).with_name("run.json")
    if run_json.is_file():
        run = json.loads(run_json.read_text()).get("run", {})
        folder = folder or run.get("val")
        count = run.get("val_images") if count is None else count
        crop = run.get("val_crop") if crop is None else crop
    runs: dict[str, list] = {}
    for spec in args.logs:
        path, name, steps_before = _log_spec(spec)
        if isinstance(steps_before, str):
            steps_before = trained_steps(steps_before)
        # A log without its crop (written before the column existed) was measured on --crop.
        runs.setdefault(name, []).extend(
            dataclasses.replace(p, step=p.step + steps_before, crop=p.crop if p.crop is not None else crop or 0)
            for p in read_val_csv(path))
    references = None
    if not args.no_reference:
        if not folder:
            raise ParameterError("no validation folder for the JPEG reference: pass --reference DIR "
                                 "(or --no-reference)")
        references = {}
        for c in sorted({p.crop for points in runs.values() for p in points}):
            images = load_val_images(folder, 4 if count is None else count, c)
            if not images:
                raise ParameterError(f"no images in {folder} for the JPEG reference")
            references[c] = jpeg_reference([im.pixels for im in images])
    rows = plot_learning_curve(runs, args.out, references, args.title)
    for r in rows:
        gain = "" if r["gain_db"] != r["gain_db"] else f"  {r['gain_db']:+.2f} dB vs JPEG"
        print(f"{r['run']} step {r['step']}  {r['point']:<28} {r['bpp']:.4f} bpp  {r['psnr']:.2f} dB{gain}")
    print(f"wrote {args.out}")
    return 0


def _val_spec(spec: str) -> tuple[str, int | None]:
    """``"runs/w/val.csv@2000"`` → ``("runs/w/val.csv", 2000)``; without ``@STEP``, ``None``."""
    path, at, step = spec.rpartition("@")
    return (path, int(step)) if at and step.isdigit() else (spec, None)


def _cmd_compare(args: argparse.Namespace) -> int:
    from .curve import compare_validations, point_label, read_val_csv

    (base_path, base_step), (new_path, new_step) = _val_spec(args.base), _val_spec(args.new)
    c = compare_validations(read_val_csv(base_path), read_val_csv(new_path), base_step, new_step)
    print(f"{new_path} step {c.new_step} against {base_path} step {c.base_step}")
    for params, b, n in c.points:
        print(f"{point_label(params):<28} {b.bpp:.4f} bpp {b.psnr:.3f} dB -> {n.bpp:.4f} bpp {n.psnr:.3f} dB"
              f"  ({(n.bpp / b.bpp - 1) * 100:+.2f} % bits, {n.psnr - b.psnr:+.3f} dB)")
    print(f"BD-rate {c.bd_rate:+.2f} %  BD-PSNR {c.bd_psnr:+.3f} dB  over {len(c.points)} points")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.verbose, int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")))
    try:
        commands = {"export": _cmd_export, "retire": _cmd_retire, "default": _cmd_default,
                    "pack": _cmd_pack, "eval": _cmd_eval, "curve": _cmd_curve, "compare": _cmd_compare}
        return commands.get(args.command, _cmd_train)(args)
    except (LicError, FileNotFoundError) as err:
        if args.verbose:
            raise
        print(f"lic-train: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
