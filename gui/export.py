"""Writing what the studio shows to files: PNGs, ``.lic`` bitstreams, metrics as JSON and CSV.

Only full-resolution results are exported (a preview coded mid-drag is never written); the
``.lic`` files are the exact bytes whose size gave the bpp, so ``lic-codec decode`` reproduces
the reconstructions.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from PIL import Image

from .panels import Panel, signed_to_rgb
from .state import EncodeOutcome, ImageSource

__all__ = ["safe_name", "export_panels", "export_bitstreams", "metrics_rows", "export_metrics_json",
           "export_metrics_csv"]


def safe_name(key: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in key)


def export_panels(folder: str | Path, panels: list[Panel], gain: float = 4.0) -> list[Path]:
    """Every full-resolution panel as ``<key>.png`` (signed panels mid-grey at zero, ×``gain``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for p in panels:
        if p.scale != 1:
            continue
        img = signed_to_rgb(p.data, gain) if p.kind == "signed" else p.data
        path = folder / f"{safe_name(p.key)}.png"
        Image.fromarray(np.ascontiguousarray(img), "RGB").save(path)
        out.append(path)
    return out


def export_bitstreams(folder: str | Path, outcomes: Mapping[str, EncodeOutcome]) -> list[Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, o in outcomes.items():
        if o.ok and not o.preview:
            path = folder / f"{safe_name(name)}.lic"
            path.write_bytes(o.result.bitstream)
            out.append(path)
    return out


def _clean(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_clean(x) for x in v]
    if isinstance(v, np.generic):
        return _clean(v.item())
    return v


def metrics_rows(source: ImageSource, outcomes: Mapping[str, EncodeOutcome],
                 sweeps: Mapping[str, list[Any]] | None = None,
                 delta_psnr: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """One row per current operating point (``kind="current"``) and per sweep point (``"sweep"``)."""
    rows = []
    for name, o in outcomes.items():
        if not o.ok or o.preview:
            continue
        m = o.metrics.as_dict()
        rows.append({"image": source.name, "codec": name, "kind": "current", "params": dict(o.params),
                     **{k: v for k, v in m.items() if k != "section_bpp"},
                     "section_bpp": m["section_bpp"],
                     "delta_psnr_vs_jpeg_db": (delta_psnr or {}).get(name, math.nan)})
    for name, points in (sweeps or {}).items():
        for p in points:
            rows.append({"image": source.name, "codec": name, "kind": "sweep", "params": dict(p.params),
                         "width": source.width, "height": source.height, "bpp": p.bpp,
                         "psnr_rgb_db": p.psnr, "ms_ssim": p.ms_ssim, "ms_ssim_db": p.ms_ssim_db})
    return rows


def export_metrics_json(path: str | Path, rows: list[dict[str, Any]],
                        bd: list[tuple[str, float, float]] | None = None) -> Path:
    doc = {"tool": "lic-studio", "bpp": "from .lic file bytes", "psnr": "PSNR-RGB on 8-bit decoded image",
           "rows": _clean(rows),
           "bd_vs_jpeg": [{"codec": n, "bd_rate_percent": _clean(r), "bd_psnr_db": _clean(d)}
                          for n, r, d in (bd or [])]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2) + "\n")
    return path


def export_metrics_csv(path: str | Path, rows: list[dict[str, Any]]) -> Path:
    fields = ["image", "codec", "kind", "params", "width", "height", "bytes", "bpp", "psnr_rgb_db",
              "ms_ssim", "ms_ssim_db", "encode_ms", "decode_ms", "delta_psnr_vs_jpeg_db", "section_bpp"]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in rows:
            r = _clean(dict(r))
            r["params"] = json.dumps(r.get("params", {}), sort_keys=True)
            if "section_bpp" in r:
                r["section_bpp"] = json.dumps(r["section_bpp"], sort_keys=True)
            w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in fields})
    return path
