"""``lic-codec bench``: encode/decode time, peak memory, parameters and kMAC/pixel.

Every codec is timed on the same images in the same run as CompressAI's
``bmshj2018-hyperprior`` (Ballé et al. 2018, quality-3 architecture: N=128, M=192, random
weights — the time of a forward pass does not depend on the weight values), and reported as
a ratio to it. The reference runs twice: as CompressAI's own tools run it (contiguous NCHW
tensors, ``ToTensor``'s layout), the ratio the targets are set against, and in channels-last,
the memory layout the learned codecs here choose for themselves on a CPU, which makes the
reference faster too: the second ratio says how the codecs compare with it run as they are.
"""

from __future__ import annotations

import gc
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
    ratio_to_channels_last_reference: float = float("nan")


class _PeakMemory:
    """Peak memory of a stretch of coding above the level at its start, in MB.

    CUDA: the allocator's peak above what was allocated at entry. CPU: resident memory. Memory
    freed by an earlier codec stays in the C heap and would be reused unseen, so the heap's free
    memory is first handed back to the system (glibc ``malloc_trim``); then, on Linux, the
    kernel's exact high-water mark (``VmHWM``, reset through ``/proc/self/clear_refs``) is read
    at exit. Elsewhere resident memory is sampled every 2 ms, which can miss short peaks.
    """

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
        gc.collect()  # garbage of an earlier run is not this run's memory
        _trim_heap()
        self.exact = _reset_high_water_mark()
        self.base = _resident_bytes()
        if not self.exact:
            self.top = self.base
            self.stop = threading.Event()

            def sample():
                while not self.stop.is_set():
                    self.top = max(self.top, _resident_bytes())
                    time.sleep(0.002)

            self.thread = threading.Thread(target=sample, daemon=True)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            self.peak = (torch.cuda.max_memory_allocated() - self.base) / 2**20
            return False
        if self.exact:
            top = _high_water_mark_bytes()
        else:
            self.stop.set()
            self.thread.join()
            top = max(self.top, _resident_bytes())
        self.peak = max(0, top - self.base) / 2**20
        return False


def _trim_heap() -> None:
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: nothing cached to hand back this way
        pass


def _reset_high_water_mark() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _high_water_mark_bytes() is not None


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def _high_water_mark_bytes() -> int | None:
    kib = _status_kib("VmHWM")
    return None if kib is None else kib * 1024


def _resident_bytes() -> int:
    import psutil

    return psutil.Process().memory_info().rss


def _macs_per_pixel(fn: Callable[[], Any], pixels: int) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops() / 2 / pixels / 1e3


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


@dataclass
class Coder:
    """What the bench runs of one codec: its encode and decode, and what the table says of it."""

    name: str
    weights: str
    device: str
    params: int
    encode: Callable[[np.ndarray], Any]
    decode: Callable[[Any], Any]
    count_macs: bool = True


def measure(coders: list[Coder], images: list[np.ndarray], repeat: int) -> list[BenchRow]:
    """Median encode/decode wall time of each coder over ``images`` × ``repeat`` after one
    warm-up run each, and the kMAC per pixel; the peak memory is left to :func:`peak_memory`.

    The coders take turns image by image rather than running one after another, so that a
    machine whose speed drifts over minutes (a shared CPU's does, by a third from hour to hour
    on the machine this was written on) slows every coder alike and leaves their ratios to the
    reference alone; each codes an image ``repeat`` times in a row, so that the median is that
    of runs after its own, as when one codec is used alone.
    """
    times: list[tuple[list[float], list[float]]] = [([], []) for _ in coders]
    for coder in coders:
        coder.decode(coder.encode(images[0]))  # warm-up: lazy init, allocator, CDF tables
    for img in images:
        for coder, (enc_t, dec_t) in zip(coders, times):
            for _ in range(repeat):
                _sync(coder.device)
                t0 = time.perf_counter()
                payload = coder.encode(img)
                _sync(coder.device)
                t1 = time.perf_counter()
                coder.decode(payload)
                _sync(coder.device)
                t2 = time.perf_counter()
                enc_t.append((t1 - t0) * 1e3)
                dec_t.append((t2 - t1) * 1e3)
    rows = []
    for coder, (enc_t, dec_t) in zip(coders, times):
        enc_k = dec_k = float("nan")
        if coder.count_macs:
            px = images[0].shape[0] * images[0].shape[1]
            payload = coder.encode(images[0])
            enc_k = _macs_per_pixel(lambda: coder.encode(images[0]), px)
            dec_k = _macs_per_pixel(lambda: coder.decode(payload), px)
        rows.append(BenchRow(coder.name, coder.weights, coder.device, coder.params,
                             statistics.median(enc_t), statistics.median(dec_t), float("nan"), enc_k, dec_k))
    return rows


#: glibc raises its mmap threshold after each large free by default, so which tensors of a run
#: come from memory kept in the heap depends on the runs before: two runs of the same bench
#: measured the wavelet codec's peak at 212 and 260 MB, and setting the threshold at run time
#: (``mallopt``) does not undo the heap's history. Fixed from a process's start, it makes the
#: peak the same within a megabyte from run to run. It also slows the learned codecs by up to 1.7×
#: (every large tensor is faulted in afresh), so only the memory pass runs with it.
FIXED_MMAP_THRESHOLD = {"MALLOC_MMAP_THRESHOLD_": str(128 * 1024)}


def peak_memory(coder: Coder, images: list[np.ndarray]) -> float:
    """The largest peak, over ``images``, of one encode and decode above the memory before it."""
    peaks = []
    for img in images:
        with _PeakMemory(coder.device) as mem:
            coder.decode(coder.encode(img))
        peaks.append(mem.peak)
    return max(peaks)


def _coders(specs: list[str], weights: str, device: str | None) -> list[Coder]:
    """The reference, then the registry's codecs ``specs``: names, each with parameters held
    fixed where given (``hybrid:postfilter=off``, as eval's)."""
    from . import registry
    from .learned import select_device

    coders = [_reference_coder(str(select_device(device)), channels_last) for channels_last in (False, True)]
    for spec in specs:
        name, fixed = registry.parse_spec(spec)
        learned = registry.entry(name).learned
        codec = registry.create(name, weights=weights, device=device) if learned else registry.create(name)
        coders.append(_codec_coder(codec, spec.strip(), codec.resolve_params(fixed)))
    return coders


def _peaks_in_a_fresh_process(names: list[str], weights: str, device: str | None,
                              paths: list[Path]) -> list[float]:
    """:func:`peak_memory` of the reference and ``names``, measured by a new Python process
    started with :data:`FIXED_MMAP_THRESHOLD`."""
    import os
    import subprocess
    import sys

    request = json.dumps({"names": names, "weights": weights, "device": device,
                          "paths": [str(p) for p in paths]})
    done = subprocess.run([sys.executable, "-m", "codec.bench"], input=request, capture_output=True,
                          text=True, env={**os.environ, **FIXED_MMAP_THRESHOLD})
    if done.returncode:
        raise RuntimeError(f"the bench's memory pass failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _memory_pass_main() -> None:
    """Child of :func:`_peaks_in_a_fresh_process`: reads its request on stdin, prints the peaks."""
    import sys

    from .image import open_image

    request = json.loads(sys.stdin.read())
    images = [open_image(p) for p in request["paths"]]
    coders = _coders(request["names"], request["weights"], request["device"])
    for c in coders:  # each codes in its own coding context, on one CPU thread
        c.decode(c.encode(images[0]))  # as the timed runs: lazy init, code pages
    print(json.dumps([peak_memory(c, images) for c in coders]))


def _reference_coder(device: str, channels_last: bool = False) -> Coder:
    """The reference, in CompressAI's layout (contiguous NCHW) or, with ``channels_last``, its
    parameters and input in channels-last (on a CPU thread oneDNN's convolutions run faster
    so: about 1.4 times at 768x512, results/kodak/bench.md)."""
    import torch
    from compressai.zoo import bmshj2018_hyperprior

    from .learned import coding_context, image_to_tensor, pad_to_multiple, tensor_to_image

    torch.manual_seed(0)
    net = bmshj2018_hyperprior(quality=3, pretrained=False).eval().to(device)
    net.update(force=True)
    layout = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=layout)

    def enc(img):
        with torch.no_grad(), coding_context(device):  # as the learned codecs code
            x = pad_to_multiple(image_to_tensor(img, device), 64).contiguous(memory_format=layout)
            out = net.compress(x)
            return out, img.shape

    def dec(payload):
        (out, shape) = payload
        with torch.no_grad(), coding_context(device):
            x = net.decompress(out["strings"], out["shape"])["x_hat"]
            return tensor_to_image(x[..., : shape[0], : shape[1]])

    params = sum(p.numel() for p in net.parameters())
    name = "bmshj2018-hyperprior (ref, channels-last)" if channels_last else "bmshj2018-hyperprior (ref)"
    return Coder(name, "random", device, params, enc, dec)


def _codec_coder(codec, label: str, params: dict[str, Any]) -> Coder:
    model = getattr(codec, "model", None)
    count = sum(p.numel() for p in model.parameters()) if model is not None else 0

    def enc(img):
        return codec.encode(img, **params).bitstream

    return Coder(label, codec.weights_name, str(getattr(codec, "device", "cpu")), count, enc,
                 codec.decode, count_macs=model is not None)


def format_table(rows: list[BenchRow]) -> str:
    lines = ["| codec | weights | device | params | encode ms | decode ms | enc+dec vs ref | "
             "vs ref channels-last | peak MB | enc kMAC/px | dec kMAC/px |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def k(v):
        return "–" if v != v else f"{v:.1f}"

    def ratio(v):
        return "–" if v != v else f"{v:.2f}×"

    for r in rows:
        lines.append(f"| {r.codec} | {r.weights} | {r.device} | {r.params:,} | {r.encode_ms:.1f} | "
                     f"{r.decode_ms:.1f} | {ratio(r.ratio_to_reference)} | "
                     f"{ratio(r.ratio_to_channels_last_reference)} | {r.peak_mb:.0f} | "
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
    coders = _coders(names, args.weights, args.device)
    rows = measure(coders, images, args.repeat)
    if device == "cpu":
        peaks = _peaks_in_a_fresh_process(names, args.weights, args.device, paths)
    else:
        peaks = [peak_memory(c, images) for c in coders]
    for row, peak in zip(rows, peaks):
        row.peak_mb = peak
    ref, ref_channels_last = (row.encode_ms + row.decode_ms for row in rows[:2])
    for r in rows:
        r.ratio_to_reference = (r.encode_ms + r.decode_ms) / ref
        r.ratio_to_channels_last_reference = (r.encode_ms + r.decode_ms) / ref_channels_last
    sizes = sorted({f"{im.shape[1]}x{im.shape[0]}" for im in images})
    threads = "coding on one thread (torch and BLAS)" if device == "cpu" else f"torch threads {torch.get_num_threads()}"
    header = (f"{len(images)} images of {args.folder} ({', '.join(sizes)}), median of {args.repeat} runs "
              f"each, the codecs taking turns image by image, {threads}, device {device}")
    table = format_table(rows)
    print(header)
    print(table)
    if args.out:
        out = Path(args.out)
        out.write_text(json.dumps([asdict(r) for r in rows], indent=2) + "\n")
        out.with_suffix(".md").write_text(f"{header}.\n\n{table}\n")
    return 0


if __name__ == "__main__":
    _memory_pass_main()
