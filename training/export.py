"""``lic-train export``: a checkpoint becomes ``weights/NAME.pt`` plus its manifest entry.

The weights file holds only tensors and plain data (``torch.load(weights_only=True)``)::

    {"format": "lic-studio-weights/1", "codec", "config", "state_dict", "weights_id"}

The manifest entry gives it an explicit id (an entry of the same name keeps its id, a new
name gets the largest id + 1: ids are written into bitstreams and must never shift), its
sha256, the model config, the rate range, how it was trained and what it measured.
With ``fp16`` the float parameters are stored as half precision (the loader's
``load_state_dict`` casts them back); buffers — the entropy coder's integer tables among
them — are kept exactly.
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codec import weights as W
from codec.errors import ParameterError, WeightsError

from .checkpoint import checkpoint_weights, load_checkpoint, save_atomic, training_record
from .config import RunConfig, config_from_dict
from .models import build_model, codec_class, coding_state

__all__ = ["export_checkpoint", "retire_weights", "validate_manifest", "round_trip_check", "trained_steps",
           "MANIFEST_NAME"]

log = logging.getLogger(__name__)

MANIFEST_NAME = W.MANIFEST_NAME  # re-exported: the export side names the file too


def _write_json_atomic(path: Path, doc: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(json.dumps(doc, indent=2) + "\n")
    os.replace(tmp, path)


def _rate_range(doc: dict[str, Any], model: torch.nn.Module) -> dict[str, list[float]]:
    run = RunConfig.from_dict(doc["run"])
    if run.continuous:
        rates = list(run.rate_range)
    else:
        lam = run.lambda_schedule[int(doc.get("phase", 0))]
        r = float(model.rate_for_lambda(lam))
        rates = [r, r]
    lams = model.lambda_for_rate(torch.tensor(rates)).tolist()
    return {"rate_range": rates, "lambda_range": [round(v, 6) for v in lams]}


def round_trip_check(codec) -> None:
    """Encode and decode a small synthetic image; raise if decoding is not bit-exact."""
    side = max(64, int(getattr(codec.model, "stride", 16)))
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) / side
    img = np.stack([yy, xx, 0.5 + 0.5 * np.sin(6 * (xx + yy))], axis=-1)
    img = img + np.random.default_rng(0).normal(0, 0.03, img.shape).astype(np.float32)
    img = np.clip(img * 255 + 0.5, 0, 255).astype(np.uint8)[: side - 5, : side - 3]
    res = codec.encode(img)
    back = codec.decode(res.bitstream)
    if not np.array_equal(back.image, res.image):
        raise WeightsError(f"{codec.name} weights {codec.weights_name!r}: decode is not bit-exact")


def _same_state(path: Path, state: dict) -> bool:
    """Whether the weights file at ``path`` holds exactly the tensors of ``state``."""
    try:
        old = torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    except Exception:  # missing or unreadable: certainly not the same weights
        return False
    return old.keys() == state.keys() and all(
        old[k].dtype == state[k].dtype and old[k].shape == state[k].shape and torch.equal(old[k], state[k])
        for k in state)


def export_checkpoint(checkpoint: str | Path, name: str, weights_dir: str | Path | None = None,
                      fp16: bool = False, default: bool = False, results: dict | None = None,
                      check: bool = True, averaged: bool = True) -> dict[str, Any]:
    """Write ``weights_dir/NAME.pt`` from a training checkpoint and update the manifest.

    Args:
        checkpoint: a ``.ckpt`` written by ``lic-train``.
        name: weights name (letters, digits, ``.``, ``_``, ``-``); the file is ``NAME.pt``.
        weights_dir: the manifest's folder (default: :func:`codec.weights.weights_dir`).
        fp16: store float parameters as float16.
        default: make this the codec's default weights (clearing the flag on its others).
        results: measured results to record (e.g. a Kodak sweep); the checkpoint's last
            validation is recorded as well.
        check: load the written file through the codec and check a bit-exact round trip.
        averaged: export the run's moving average of the weights where it kept one (``--ema``);
            False exports the weights of its last step.

    Returns:
        The manifest entry written.
    """
    if not W.is_weights_name(name):
        raise ParameterError(f"weights name {name!r}: use letters, digits, '.', '_' and '-'")
    root = Path(weights_dir) if weights_dir is not None else W.weights_dir()
    root.mkdir(parents=True, exist_ok=True)
    doc = load_checkpoint(checkpoint)
    codec_cls = codec_class(doc["codec"])
    config = config_from_dict(codec_cls.config_class, doc["model_config"])
    with torch.random.fork_rng(devices=[]):  # a run exporting between phases keeps its RNG
        model = build_model(codec_cls, config, seed=0)
    model.load_state_dict(checkpoint_weights(doc, averaged))
    state = coding_state(model)
    if fp16:
        params = {n for n, p in model.named_parameters() if p.is_floating_point()}
        state = {k: (v.half() if k in params else v) for k, v in state.items()}

    manifest = W.read_manifest_doc(root)
    entries = manifest["weights"]
    existing = next((e for e in entries if e.get("name") == name), None)
    if existing is not None and existing.get("codec") != doc["codec"]:
        raise WeightsError(f"weights {name!r} already exist for codec {existing.get('codec')!r}; "
                           f"choose another name for this {doc['codec']} model")
    # A bitstream names its weights by id, so an id may only ever mean one set of tensors:
    # re-exporting a name keeps its id only when the tensors are unchanged, otherwise files
    # coded with the old weights would decode to garbage instead of failing clearly.
    if existing is not None and _same_state(root / existing["file"], state):
        weights_id = int(existing["weights_id"])
    else:
        used = [int(e["weights_id"]) for e in entries + manifest.get("retired", [])]
        weights_id = max(used + [0]) + 1
    if not 0 < weights_id < W.RANDOM_INIT_BIT:
        raise WeightsError(f"no weights id left below {W.RANDOM_INIT_BIT:#x}")

    path = root / f"{name}.pt"
    config_dict = dataclasses.asdict(config)
    save_atomic({"format": W.WEIGHTS_FORMAT, "codec": doc["codec"], "config": config_dict,
                 "state_dict": state, "weights_id": weights_id}, path)
    sha = W.sha256_file(path)

    entry: dict[str, Any] = {
        "name": name,
        "codec": doc["codec"],
        "weights_id": weights_id,
        "file": path.name,
        "sha256": sha,
        "default": bool(default),
        "config": json.loads(json.dumps(config_dict)),
        **_rate_range(doc, model),
        "precision": "float16" if fp16 else "float32",
        "bytes": path.stat().st_size,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "training": training_record(doc, with_history=True),
        "results": {},
    }
    if doc.get("ema"):
        entry["training"]["exported"] = "moving average" if averaged else "last step"
    # The run measured the weights it reports (the average where it kept one); the last step's
    # weights were not measured.
    measured = averaged or not doc.get("ema")
    if measured and doc.get("validation"):
        entry["results"]["validation"] = doc["validation"]
    if measured:
        entry["results"].update(doc.get("results") or {})
    if results:
        entry["results"].update(results)
    if default:
        for e in entries:
            if e.get("codec") == doc["codec"]:
                e["default"] = False
    if existing is not None:
        entries[entries.index(existing)] = entry
    else:
        entries.append(entry)
    _write_json_atomic(root / MANIFEST_NAME, manifest)
    log.info("wrote %s (%d bytes, id %d, sha256 %s…) and its manifest entry", path,
             entry["bytes"], weights_id, sha[:12])
    if check:
        codec = codec_cls(weights=str(path), device="cpu")
        round_trip_check(codec)
    problems = validate_manifest(root, check_files=False)
    if problems:
        raise WeightsError(f"manifest {root / MANIFEST_NAME} is invalid after export: {'; '.join(problems)}")
    return entry


def _find_entry(manifest: dict[str, Any], name: str, root: Path) -> dict[str, Any]:
    entry = next((e for e in manifest["weights"] if e.get("name") == name), None)
    if entry is None:
        names = ", ".join(e.get("name", "?") for e in manifest["weights"]) or "none"
        raise WeightsError(f"no weights named {name!r} in {root / MANIFEST_NAME}; available: {names}")
    return entry


def set_default_weights(name: str, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """Make the exported weights ``name`` their codec's default (the one default of that codec)."""
    root = Path(weights_dir) if weights_dir is not None else W.weights_dir()
    manifest = W.read_manifest_doc(root)
    entry = _find_entry(manifest, name, root)
    for e in manifest["weights"]:
        if e.get("codec") == entry.get("codec"):
            e["default"] = e is entry
    _write_json_atomic(root / MANIFEST_NAME, manifest)
    return {k: entry.get(k) for k in ("name", "codec", "weights_id", "default")}


def retire_weights(name: str, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """Remove weights ``name`` (its file and manifest entry) to keep the install small.

    The manifest keeps a ``retired`` record of the name, id, file and sha256: the id is never
    given to other weights, and a bitstream coded with the retired weights fails with a message
    saying how to restore them from the git history. Default weights cannot be retired; make
    others the default first.
    """
    root = Path(weights_dir) if weights_dir is not None else W.weights_dir()
    manifest = W.read_manifest_doc(root)
    entry = _find_entry(manifest, name, root)
    if entry.get("default"):
        raise WeightsError(f"{name!r} are the default {entry.get('codec')} weights; export or mark "
                           "others as the default before retiring them")
    record = {k: entry.get(k) for k in ("name", "codec", "weights_id", "file", "sha256")}
    if entry.get("training"):  # kept so that learning curves of later runs still find their steps
        record["training"] = entry["training"]
    record["retired"] = _dt.date.today().isoformat()
    manifest["weights"] = [e for e in manifest["weights"] if e is not entry]
    manifest.setdefault("retired", []).append(record)
    _write_json_atomic(root / MANIFEST_NAME, manifest)
    (root / entry["file"]).unlink(missing_ok=True)
    return record


def _runs_newest_first(training: dict[str, Any]) -> list[dict[str, Any]]:
    own = {k: v for k, v in training.items() if k not in ("history", "total_steps", "total_minutes")}
    return [own, *training.get("history", [])]


def trained_steps(name: str, weights_dir: str | Path | None = None, mode: str | None = None) -> int:
    """How many steps weights ``name`` had been trained for, from the manifest's records.

    Counted are the runs of ``mode`` (default: the weights' codec, so a hybrid's refinement runs
    do not add to its residual codec's steps). The record is the weights' own (live, or retired
    with their training kept) or, for weights retired before records were kept, the history of
    later weights that started from them: every run older than the one that started from
    ``manifest weights 'NAME'``.
    """
    root = Path(weights_dir) if weights_dir is not None else W.weights_dir()
    doc = W.read_manifest_doc(root)
    records = [(e.get("name"), e.get("codec"), _runs_newest_first(e["training"]))
               for e in doc["weights"] + doc.get("retired", []) if e.get("training")]
    found = next(((codec, runs) for n, codec, runs in records if n == name), None)
    if found is None:
        started_here = f"manifest weights {name!r}"
        found = next(((codec, runs[i + 1:]) for _, codec, runs in records for i, r in enumerate(runs)
                      if str(r.get("started_from", "")).startswith(started_here)), None)
    if found is None:
        raise WeightsError(f"no training record of weights {name!r} in {root / MANIFEST_NAME}")
    codec, runs = found
    mode = mode or codec
    return sum(int(r.get("steps", 0)) for r in runs if r.get("mode") == mode)


def validate_manifest(root: str | Path | None = None, check_files: bool = True) -> list[str]:
    """Everything wrong with a manifest (an empty list when it is valid).

    Checks each entry's fields and types, that its codec is a registered learned codec, that
    its config builds that codec's Config, unique names and ids, at most one default per codec,
    and (``check_files``) that each file exists, matches its sha256 and holds the same codec,
    config and id.
    """
    root = Path(root) if root is not None else W.weights_dir()
    problems: list[str] = []
    try:
        doc = W.read_manifest_doc(root)
        W.load_manifest(root)
    except WeightsError as err:
        return [str(err)]
    required = {"name": str, "codec": str, "weights_id": int, "file": str, "sha256": str,
                "default": bool, "config": dict}
    live_ids = {e.get("weights_id") for e in doc["weights"]}
    for r in doc.get("retired", []):
        if not isinstance(r, dict) or not isinstance(r.get("weights_id"), int):
            problems.append(f"retired record {r!r}: no integer weights_id")
        elif r["weights_id"] in live_ids:
            problems.append(f"retired weights id {r['weights_id']} ({r.get('name')!r}) is reused by live weights")
    names, defaults = set(), {}
    for i, e in enumerate(doc["weights"]):
        label = f"entry {i} ({e.get('name', '?')!r})"
        for key, kind in required.items():
            if not isinstance(e.get(key), kind):
                problems.append(f"{label}: field {key!r} missing or not {kind.__name__}")
        if problems and problems[-1].startswith(label):
            continue
        if e["name"] in names:
            problems.append(f"{label}: duplicate name")
        names.add(e["name"])
        if e["default"]:
            defaults.setdefault(e["codec"], []).append(e["name"])
        try:
            cls = codec_class(e["codec"])
            config_from_dict(cls.config_class, e["config"])
        except (ParameterError, WeightsError) as err:
            problems.append(f"{label}: {err}")
            continue
        if "rate_range" in e:
            lo, hi = e["rate_range"]
            knob_lo, knob_hi = cls.model_class.rate_range
            if not knob_lo <= lo <= hi <= knob_hi:
                problems.append(f"{label}: rate_range {e['rate_range']} outside the knob's "
                                f"[{knob_lo:g}, {knob_hi:g}]")
        if check_files:
            path = root / e["file"]
            try:
                wdoc = W.read_weights_file(path, expected_sha256=e["sha256"], codec=e["codec"])
            except WeightsError as err:
                problems.append(f"{label}: {err}")
                continue
            if int(wdoc.get("weights_id", e["weights_id"])) != e["weights_id"]:
                problems.append(f"{label}: file holds weights id {wdoc.get('weights_id')}, "
                                f"manifest says {e['weights_id']}")
            if json.loads(json.dumps(wdoc["config"])) != e["config"]:
                problems.append(f"{label}: file config differs from the manifest's")
    for codec, ds in defaults.items():
        if len(ds) > 1:
            problems.append(f"codec {codec!r} has several default weights: {', '.join(ds)}")
    return problems
