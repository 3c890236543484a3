"""Run logs: CSV files (always), TensorBoard (when installed), and a progress line.

Rows are appended, so a resumed run continues the same files. Background runs write to a
file rather than a terminal, so the progress display is a tqdm bar only on a terminal and a
periodic log line otherwise.
"""

from __future__ import annotations

import csv
import importlib.util
import json
import logging
import sys
from pathlib import Path
from typing import Any, Mapping

__all__ = ["CsvLog", "RunLog"]

log = logging.getLogger(__name__)


class CsvLog:
    """Append rows to a CSV file; the header is fixed by the first row ever written."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.fields: list[str] | None = None
        if self.path.exists() and self.path.stat().st_size > 0:
            with open(self.path, newline="") as f:
                self.fields = next(csv.reader(f), None)

    def write(self, row: Mapping[str, Any]) -> None:
        new = self.fields is None
        if new:
            self.fields = list(row)
        extra = [k for k in row if k not in self.fields]
        if extra:
            log.debug("%s: dropping columns %s not in its header", self.path.name, extra)
        with open(self.path, "a", newline="") as f:
            w = csv.DictWriter(f, fieldnames=self.fields, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerow({k: _fmt(v) for k, v in row.items()})


def _label(params_json: str) -> str:
    """``{"base_quality": 10, "rate": 0.5}`` → ``base_quality=10 rate=0.5`` (numbers only)."""
    params = json.loads(params_json)
    return " ".join(f"{k}={v:g}" for k, v in params.items()
                    if isinstance(v, (int, float)) and not isinstance(v, bool))


def _fmt(v: Any) -> Any:
    return f"{v:.6g}" if isinstance(v, float) else v


class RunLog:
    """Rank 0's logging of one run: ``train.csv``, ``val.csv``, TensorBoard, progress."""

    def __init__(self, out: Path, total_steps: int, start_step: int, enabled: bool = True):
        self.enabled = enabled
        self.train = CsvLog(out / "train.csv") if enabled else None
        self.val = CsvLog(out / "val.csv") if enabled else None
        self.tb = None
        self.bar = None
        if not enabled:
            return
        if importlib.util.find_spec("tensorboard") is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        if sys.stderr.isatty() and importlib.util.find_spec("tqdm") is not None:
            from tqdm import tqdm

            self.bar = tqdm(total=total_steps, initial=start_step, dynamic_ncols=True, unit="step")

    def step(self, step: int, row: Mapping[str, Any]) -> None:
        """A training-log row (averages over the last interval)."""
        if not self.enabled:
            return
        self.train.write({"step": step, **row})
        if self.tb is not None:
            for k, v in row.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(f"train/{k}", v, step)
        summary = (f"loss {row['loss']:.4g}  bpp {row['bpp']:.4f}  PSNR {row['psnr']:.2f} dB  "
                   f"lr {row['lr']:.2e}")
        if self.bar is not None:
            self.bar.set_postfix_str(summary)
        else:
            log.info("step %d  %s  (%.1f min)", step, summary, row.get("minutes", 0.0))

    def advance(self, n: int = 1) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def validation(self, step: int, rows: list[Mapping[str, Any]]) -> None:
        if not self.enabled:
            return
        for r in rows:
            self.val.write({"step": step, **r})
            if self.tb is not None and r.get("image") == "mean":
                self.tb.add_scalar(f"val/bpp_rate{r['rate']:g}", r["bpp"], step)
                self.tb.add_scalar(f"val/psnr_rate{r['rate']:g}", r["psnr"], step)
        means = [r for r in rows if r.get("image") == "mean"]
        log.info("validation at step %d: %s", step, "; ".join(
            f"{_label(r['params'])}: {r['bpp']:.4f} bpp {r['psnr']:.2f} dB" for r in means))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tb is not None:
            self.tb.close()
