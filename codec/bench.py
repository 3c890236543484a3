"""``lic-codec bench``: encode/decode time, peak memory, parameters and kMAC/pixel.

Every codec is timed on the same images in the same run as CompressAI's
``bmshj2018-hyperprior`` (Ballé et al. 2018, quality-3 architecture: N=128, M=192, random
weights — the time of a forward pass does not depend on the weight values), and reported as
a ratio to it.
"""

from __future__ import annotations

import json
import statistics
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

__all__ = ["BenchRow", "run", "measure", "format_table"]


@dataclass
class BenchRow:
    codec: str
    weights: str
    device: str
    params: int
    encode_ms: float
    decode_ms: float
    peak_mb: float
    enc_kmac_px: float
    dec_kmac_px: float
    ratio_to_reference: float = float("nan")


class _PeakMemory:
    """Peak resident memory (CPU) or allocated memory (CUDA) above the level at entry, in MB."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.peak = 0.0

    def __enter__(self):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
            return self
        import psutil

        self.proc = psutil.Process()
        self.base = self.proc.memory_info().rss
        self.top = self.base
        self.stop = threading.Event()

        def sample():
            while not self.stop.is_set():
                self.top = max(self.top, self.proc.memory_info().rss)
                time.sleep(0.002)

        self.thread = threading.Thread(target=sample, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        else:
            self.stop.set()
            self.thread.join()
            self.top = max(self.top, self.proc.memory_info().rss)
            self.peak = (self.top - self.base) / 2**20
        return False


def _macs_per_pixel(fn: Callable[[], Any], pixels: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / pixels / 1e3


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(name: str, weights: str, device: str, params: int, encode: Callable[[np.ndarray], Any],
            decode: Callable[[Any], Any], images: list[np.ndarray], repeat: int,
            count_macs: bool = True) -> BenchRow:
    """Median encode/decode wall time over ``images`` × ``repeat`` after one warm-up run."""
    enc_t, dec_t, peaks = [], [], []
    decode(encode(images[0]))  # warm-up: lazy init, allocator, CDF tables
    for img in images:
        for _ in range(repeat):
            with _PeakMemory(device) as mem:
                _sync(device)
                t0 = time.perf_counter()
                payload = encode(img)
                _sync(device)
                t1 = time.perf_counter()
                decode(payload)
                _sync(device)
                t2 = time.perf_counter()
            enc_t.append((t1 - t0) * 1e3)
            dec_t.append((t2 - t1) * 1e3)
            peaks.append(mem.peak)
    enc_k = dec_k = float("nan")
    if count_macs:
        px = images[0].shape[0] * images[0].shape[1]
        payload = encode(images[0])
        enc_k = _macs_per_pixel(lambda: encode(images[0]), px)
        dec_k = _macs_per_pixel(lambda: decode(payload), px)
    return BenchRow(name, weights, device, params, statistics.median(enc_t), statistics.median(dec_t),
                    max(peaks), enc_k, dec_k)


def _reference_row(images, device: str, repeat: int) -> BenchRow:
    import torch
    from compressai.zoo import bmshj2018_hyperprior

    from .learned import coding_context, image_to_tensor, pad_to_multiple, tensor_to_image

    torch.manual_seed(0)
    net = bmshj2018_hyperprior(quality=3, pretrained=False).eval().to(device)
    net.update(force=True)

    def enc(img):
        with torch.no_grad(), coding_context(device):  # as the learned codecs code
            x = pad_to_multiple(image_to_tensor(img, device), 64)
            out = net.compress(x)
            return out, img.shape

    def dec(payload):
        (out, shape) = payload
        with torch.no_grad(), coding_context(device):
            x = net.decompress(out["strings"], out["shape"])["x_hat"]
            return tensor_to_image(x[..., : shape[0], : shape[1]])

    params = sum(p.numel() for p in net.parameters())
    return measure("bmshj2018-hyperprior (ref)", "random", device, params, enc, dec, images, repeat)


def _codec_row(codec, images, repeat: int) -> BenchRow:
    model = getattr(codec, "model", None)
    params = sum(p.numel() for p in model.parameters()) if model is not None else 0
    device = str(getattr(codec, "device", "cpu"))

    def enc(img):
        return codec.encode(img).bitstream

    return measure(codec.name, codec.weights_name, device, params, enc, codec.decode, images, repeat,
                   count_macs=model is not None)


def format_table(rows: list[BenchRow]) -> str:
    lines = ["| codec | weights | device | params | encode ms | decode ms | enc+dec vs ref | peak MB | "
             "enc kMAC/px | dec kMAC/px |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        def k(v):
            return "–" if v != v else f"{v:.1f}"
        lines.append(f"| {r.codec} | {r.weights} | {r.device} | {r.params:,} | {r.encode_ms:.1f} | "
                     f"{r.decode_ms:.1f} | {r.ratio_to_reference:.2f}× | {r.peak_mb:.0f} | "
                     f"{k(r.enc_kmac_px)} | {k(r.dec_kmac_px)} |")
    return "\n".join(lines)


def run(args, paths: list[Path]) -> int:
    """Time every codec of ``args`` and the reference on the images at ``paths``."""
    import torch

    from . import registry
    from .image import open_image
    from .learned import select_device

    if args.threads:
        torch.set_num_threads(args.threads)
    images = [open_image(p) for p in paths]
    device = str(select_device(args.device))
    names = [n for n in (args.codecs.split(",") if args.codecs else registry.codec_names()) if n]
    rows = [_reference_row(images, device, args.repeat)]
    for name in names:
        e = registry.entry(name)
        codec = registry.create(name, weights=args.weights, device=args.device) if e.learned else registry.create(name)
        rows.append(_codec_row(codec, images, args.repeat))
    ref = rows[0].encode_ms + rows[0].decode_ms
    for r in rows:
        r.ratio_to_reference = (r.encode_ms + r.decode_ms) / ref
    sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})
    threads = "coding on one torch thread" if device == "cpu" else f"torch threads {torch.get_num_threads()}"
    header = (f"{len(images)} images of {args.folder} ({', '.join(sizes)}), median of {args.repeat} runs "
              f"each, {threads}, device {device}")
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        out.with_suffix(".md").write_text(f"{header}.\n\n{table}\n")
    return 0
