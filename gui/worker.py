"""Background coding: one worker thread per codec, latest request wins, an LRU of results.

Why one thread per codec: a learned codec on a CPU can take seconds per image, and JPEG must
stay live meanwhile. Within a codec, requests are slots, not queues: a new encode request
replaces the pending one (so 200 slider moves cost at most two encodes), and a result whose
request was superseded while it ran is dropped instead of shown. Sweeps and "match bpp"
searches are background work that yields to interactive encodes between steps.

Codec classes are imported and constructed *in* the worker (a learned codec imports torch and
loads weights), so the window never waits for them. Threads are daemons and never touch a
widget: they emit Qt signals on a :class:`WorkerSignals` object that lives in the GUI thread
(queued connections), and stop emitting as soon as :meth:`WorkerHub.shutdown` is called.

Data flow::

    card slider -> debounce -> WorkerHub.encode(...) -> CodecWorker slot
         ^                                                  | codec.encode, measure
         +------- EncodeOutcome (signals.encoded) <---------+  (+ MS-SSIM: signals.refined)
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterable

import numpy as np
from PySide6 import QtCore

from codec import registry
from codec.base import Codec, CodecResult
from codec.errors import LicError

from .state import (CodecSpec, CodecStatus, EncodeOutcome, MatchOutcome, Metrics, SweepPoint,
                    add_ms_ssim, measure, params_key)

__all__ = ["ResultCache", "WorkerSignals", "CodecWorker", "WorkerHub", "EncodeJob", "MatchJob",
           "SweepJob", "spec_of"]

log = logging.getLogger(__name__)

CodecFactory = Callable[[Any], Codec]

# Learned codecs import torch/compressai on first use. Two threads importing the same package
# at once can see each other's half-initialised modules (a circular import), so their
# imports and construction take turns; JPEG-like codecs do not wait for them.
_LEARNED_LOAD_LOCK = threading.Lock()


class ResultCache:
    """Thread-safe LRU of coded results, bounded by the bytes their arrays hold.

    Sweep points (numbers only) live in a separate count-bounded LRU so a background sweep on a
    large image cannot evict the results the user is looking at.
    """

    def __init__(self, max_bytes: int = 1 << 30, max_points: int = 4096):
        self.max_bytes = int(max_bytes)
        self.max_points = int(max_points)
        self._lock = threading.Lock()
        self._items: OrderedDict[tuple, tuple[CodecResult, Metrics, int]] = OrderedDict()
        self._points: OrderedDict[tuple, dict[str, float]] = OrderedDict()
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    @staticmethod
    def result_bytes(result: CodecResult) -> int:
        n = len(result.bitstream) + sum(len(p) for p in result.sections.values()) + result.image.nbytes
        seen = {id(result.image)}
        for arr in result.intermediates.values():
            if isinstance(arr, np.ndarray) and id(arr) not in seen:
                seen.add(id(arr))
                n += arr.nbytes
        return n

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    @property
    def nbytes(self) -> int:
        with self._lock:
            return self._bytes

    def get(self, key: tuple) -> tuple[CodecResult, Metrics] | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                self.misses += 1
                return None
            self._items.move_to_end(key)
            self.hits += 1
            return item[0], item[1]

    def put(self, key: tuple, result: CodecResult, metrics: Metrics) -> None:
        size = self.result_bytes(result)
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[2]
            self._items[key] = (result, metrics, size)
            self._bytes += size
            while self._bytes > self.max_bytes and self._items:
                _, (_, _, s) = self._items.popitem(last=False)
                self._bytes -= s

    def update_metrics(self, key: tuple, metrics: Metrics) -> None:
        with self._lock:
            item = self._items.get(key)
            if item is not None:
                self._items[key] = (item[0], metrics, item[2])

    def get_point(self, key: tuple) -> dict[str, float] | None:
        with self._lock:
            value = self._points.get(key)
            if value is not None:
                self._points.move_to_end(key)
            return value

    def put_point(self, key: tuple, value: dict[str, float]) -> None:
        with self._lock:
            self._points[key] = value
            self._points.move_to_end(key)
            while len(self._points) > self.max_points:
                self._points.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._points.clear()
            self._bytes = 0


class WorkerSignals(QtCore.QObject):
    """Everything workers report; lives in the GUI thread, so connections are queued."""

    spec = QtCore.Signal(object)          # CodecSpec: class imported, cards can be built
    ready = QtCore.Signal(object)         # CodecStatus: codec constructed (weights loaded)
    failed = QtCore.Signal(str, str)      # codec, message: it cannot be used at all
    encoded = QtCore.Signal(object)       # EncodeOutcome of the latest request
    refined = QtCore.Signal(object)       # the same outcome with MS-SSIM filled in
    sweep_point = QtCore.Signal(object)   # SweepPoint
    sweep_done = QtCore.Signal(str, int)  # codec, generation
    matched = QtCore.Signal(object)       # MatchOutcome
    busy = QtCore.Signal(str, bool)       # codec, whether interactive work is running


@dataclass(frozen=True)
class EncodeJob:
    request_id: int
    params: dict[str, Any]
    image: np.ndarray
    image_key: str
    preview: bool
    want_ms_ssim: bool


@dataclass(frozen=True)
class MatchJob:
    request_id: int
    target_bpp: float
    params: dict[str, Any]
    image: np.ndarray
    image_key: str


@dataclass(frozen=True)
class SweepJob:
    """Sweep the codec's own R-D path (``Codec.sweep_points``) with the user's other settings."""

    generation: int
    base_params: dict[str, Any]
    image: np.ndarray
    image_key: str
    with_ms_ssim: bool


def spec_of(klass: type[Codec], entry: Any) -> CodecSpec:
    return CodecSpec(name=entry.name, title=getattr(entry, "title", "") or klass.title or entry.name,
                     learned=bool(getattr(entry, "learned", False)), params=tuple(klass.params))


def _default_factory(entry: Any) -> Codec:
    return registry.create(entry.name)


class CodecWorker:
    """One codec, one daemon thread, three request slots (encode > match > sweep)."""

    def __init__(self, entry: Any, signals: WorkerSignals, cache: ResultCache,
                 factory: CodecFactory | None = None):
        self.entry = entry
        self.name = entry.name
        self.signals = signals
        self.cache = cache
        self.factory = factory or _default_factory
        self.codec: Codec | None = None
        self.spec: CodecSpec | None = None
        self._cv = threading.Condition()
        self._stop = False
        self._encode: EncodeJob | None = None
        self._match: MatchJob | None = None
        self._sweep: SweepJob | None = None
        self._sweep_points: list[dict[str, Any]] | None = None
        self._sweep_index = 0
        self._latest_encode = 0
        self._latest_match = 0
        self._busy = False
        self.encodes_run = 0
        self._thread = threading.Thread(target=self._run, name=f"lic-studio-{self.name}", daemon=True)

    # -- GUI-thread API ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit_encode(self, job: EncodeJob) -> None:
        with self._cv:
            self._encode = job
            self._latest_encode = job.request_id
            self._cv.notify()

    def submit_match(self, job: MatchJob) -> None:
        with self._cv:
            self._match = job
            self._latest_match = job.request_id
            self._cv.notify()

    def submit_sweep(self, job: SweepJob | None) -> None:
        with self._cv:
            self._sweep = job
            self._sweep_points = None
            self._sweep_index = 0
            self._cv.notify()

    def stop(self) -> None:
        with self._cv:
            self._stop = True
            self._encode = self._match = self._sweep = None
            self._cv.notify()

    def join(self, timeout: float) -> bool:
        if self._thread.is_alive():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- worker thread -------------------------------------------------------------------------
    def _emit(self, signal: Any, *args: Any) -> None:
        if self._stop:
            return
        try:
            signal.emit(*args)
        except RuntimeError:  # the signals object is gone: the window was closed
            self._stop = True

    def _set_busy(self, busy: bool) -> None:
        if busy != self._busy:
            self._busy = busy
            self._emit(self.signals.busy, self.name, busy)

    def _run(self) -> None:
        learned = bool(getattr(self.entry, "learned", False))
        try:
            with _LEARNED_LOAD_LOCK if learned else contextlib.nullcontext():
                if self._stop:
                    return
                klass = self.entry.load_class()
                self.spec = spec_of(klass, self.entry)
                self._emit(self.signals.spec, self.spec)
                if self._stop:
                    return
                t0 = time.perf_counter()
                self.codec = self.factory(self.entry)
            status = CodecStatus(
                name=self.name, device=str(self.codec.device_name),
                weights=str(getattr(self.codec, "weights_name", "none")),
                trained=getattr(self.codec, "trained", None) if self.spec.learned else None,
                load_ms=(time.perf_counter() - t0) * 1e3, sweep_keys=self._varied_keys())
            self._emit(self.signals.ready, status)
        except Exception as err:  # any failure here disables this codec only
            log.exception("codec %s cannot be loaded", self.name)
            self._emit(self.signals.failed, self.name, _describe(err))
            return
        while True:
            with self._cv:
                while not self._stop and self._encode is None and self._match is None and not self._sweep_left():
                    self._set_busy(False)
                    self._cv.wait()
                if self._stop:
                    return
                encode, match = self._encode, None
                self._encode = None
                if encode is None:
                    match, self._match = self._match, None
                sweep_step = None
                if encode is None and match is None:
                    sweep_step = (self._sweep, self._sweep_points, self._sweep_index)
                    self._sweep_index += 1
            try:
                if encode is not None:
                    self._set_busy(True)
                    self._do_encode(encode)
                elif match is not None:
                    self._set_busy(True)
                    self._do_match(match)
                elif sweep_step is not None and sweep_step[0] is not None and sweep_step[1] is not None:
                    self._set_busy(False)  # background work: no busy indicator for sweeps
                    self._do_sweep_step(*sweep_step)
            except Exception:  # pragma: no cover - a bug; keep the worker alive
                log.exception("worker %s failed", self.name)

    def _sweep_left(self) -> bool:
        """Whether sweep steps remain (called with the lock held, in the worker thread)."""
        if self._sweep is None:
            return False
        if self._sweep_points is None:
            try:
                self._sweep_points = self._points_for(self._sweep.base_params)
            except Exception:  # a codec without a usable sweep: nothing to plot
                log.exception("%s: no sweep points", self.name)
                self._sweep_points = []
        return self._sweep_index < len(self._sweep_points)

    def _varied_keys(self) -> tuple[str, ...]:
        """Parameters the codec's own sweep varies; the user's values are kept for the others."""
        pts = self.codec.sweep_points() if self.codec is not None else []
        return tuple(k for k in (pts[0] if pts else {}) if len({repr(p[k]) for p in pts}) > 1)

    def _points_for(self, base: dict[str, Any]) -> list[dict[str, Any]]:
        assert self.codec is not None
        varied = self._varied_keys()
        try:
            return self.codec.sweep_points({k: v for k, v in base.items() if k not in varied})
        except LicError:  # settings the codec refuses: its default sweep still draws a curve
            return self.codec.sweep_points()

    def _encode_cached(self, image: np.ndarray, key: str, params: dict[str, Any],
                       store: bool = True) -> tuple[CodecResult, Metrics, bool]:
        assert self.codec is not None
        ckey = (self.name, key, params_key(params))
        hit = self.cache.get(ckey)
        if hit is not None:
            return hit[0], hit[1], True
        result = self.codec.encode(image, **params)
        self.encodes_run += 1
        metrics = measure(image, result)
        if store:
            self.cache.put(ckey, result, metrics)
        return result, metrics, False

    def _do_encode(self, job: EncodeJob) -> None:
        try:
            params = self.codec.resolve_params(job.params)  # type: ignore[union-attr]
            result, metrics, cached = self._encode_cached(job.image, job.image_key, params)
        except LicError as err:
            if job.request_id == self._latest_encode:
                self._emit(self.signals.encoded, EncodeOutcome(
                    job.request_id, self.name, dict(job.params), job.image_key, job.preview,
                    error=str(err)))
            return
        except Exception as err:
            log.exception("%s encode failed", self.name)
            if job.request_id == self._latest_encode:
                self._emit(self.signals.encoded, EncodeOutcome(
                    job.request_id, self.name, dict(job.params), job.image_key, job.preview,
                    error=_describe(err)))
            return
        if job.request_id != self._latest_encode:
            return  # superseded while it ran: stale, dropped
        outcome = EncodeOutcome(job.request_id, self.name, params, job.image_key, job.preview,
                                result, metrics, cached=cached)
        self._emit(self.signals.encoded, outcome)
        if not job.want_ms_ssim or metrics.ms_ssim_state != "pending":
            return
        with self._cv:
            if self._encode is not None or self._stop:
                return  # newer work is waiting; MS-SSIM of this one is no longer wanted
        metrics = add_ms_ssim(metrics, job.image, result.image)
        self.cache.update_metrics((self.name, job.image_key, params_key(params)), metrics)
        if job.request_id == self._latest_encode:
            self._emit(self.signals.refined, replace(outcome, metrics=metrics))

    def _service_pending_encode(self) -> None:
        """Run a waiting interactive encode now, from inside a long background job."""
        with self._cv:
            job, self._encode = self._encode, None
        if job is not None:
            self._do_encode(job)

    def _do_match(self, job: MatchJob) -> None:
        spec = self.spec.rate_param if self.spec else None
        if spec is None:
            self._emit(self.signals.matched, MatchOutcome(job.request_id, self.name, job.target_bpp, "",
                                                          None, math.nan, "no rate parameter"))
            return
        lo = spec.minimum if spec.minimum is not None else min(spec.sweep)
        hi = spec.maximum if spec.maximum is not None else max(spec.sweep)
        visited: dict[Any, float] = {}

        def stale() -> bool:
            return self._stop or job.request_id != self._latest_match

        def bpp_at(value: Any) -> float:
            value = min(max(value, lo), hi)  # exp(log(x)) can overshoot a bound by an ulp
            if value not in visited:
                self._service_pending_encode()
                params = dict(job.params)
                params[spec.name] = value
                params = self.codec.resolve_params(params)  # type: ignore[union-attr]
                _, metrics, _ = self._encode_cached(job.image, job.image_key, params)
                visited[value] = metrics.bpp
            return visited[value]

        try:
            if spec.kind == "int":
                a, b = int(lo), int(hi)
                increasing = bpp_at(b) >= bpp_at(a)
                while b - a > 1 and not stale():
                    m = (a + b) // 2
                    if (bpp_at(m) < job.target_bpp) == increasing:
                        a = m
                    else:
                        b = m
            else:
                log_scale = lo > 0 and hi / lo >= 20
                to_u = (lambda v: math.log(v)) if log_scale else (lambda v: v)
                from_u = (lambda u: math.exp(u)) if log_scale else (lambda u: u)
                a, b = to_u(float(lo)), to_u(float(hi))
                increasing = bpp_at(from_u(b)) >= bpp_at(from_u(a))
                for _ in range(14):
                    if stale():
                        break
                    m = 0.5 * (a + b)
                    if (bpp_at(from_u(m)) < job.target_bpp) == increasing:
                        a = m
                    else:
                        b = m
        except LicError as err:
            self._emit(self.signals.matched, MatchOutcome(job.request_id, self.name, job.target_bpp,
                                                          spec.name, None, math.nan, str(err)))
            return
        if stale():
            return
        best = min(visited, key=lambda v: (abs(visited[v] - job.target_bpp), v))
        self._emit(self.signals.matched, MatchOutcome(job.request_id, self.name, job.target_bpp,
                                                      spec.name, best, visited[best]))

    def _do_sweep_step(self, job: SweepJob, points: list[dict[str, Any]], index: int) -> None:
        if index >= len(points):
            return
        params = points[index]
        pkey = (self.name, job.image_key, params_key(params))
        point = self.cache.get_point(pkey)
        error = None
        if point is None or (job.with_ms_ssim and "ms_ssim" not in point):
            try:
                result, metrics, _ = self._encode_cached(job.image, job.image_key, params, store=False)
                point = {"bpp": metrics.bpp, "psnr": metrics.psnr}
                if job.with_ms_ssim:
                    metrics = add_ms_ssim(metrics, job.image, result.image)
                    point["ms_ssim"] = metrics.ms_ssim
                    point["ms_ssim_db"] = metrics.ms_ssim_db
                self.cache.put_point(pkey, point)
            except Exception as err:
                error = _describe(err)
                point = {"bpp": math.nan, "psnr": math.nan}
        with self._cv:
            current = self._sweep is job
        if not current:
            return
        rate = self.spec.rate_param if self.spec else None
        self._emit(self.signals.sweep_point, SweepPoint(
            job.generation, self.name, index, len(points), dict(params),
            params.get(rate.name) if rate else None,
            point["bpp"], point["psnr"], point.get("ms_ssim", math.nan), point.get("ms_ssim_db", math.nan),
            error))
        if index == len(points) - 1:
            self._emit(self.signals.sweep_done, self.name, job.generation)


def _describe(err: BaseException) -> str:
    return str(err) if isinstance(err, LicError) else f"{type(err).__name__}: {err}"


class WorkerHub:
    """The GUI's handle on all codec workers: request ids, the shared cache, shutdown."""

    def __init__(self, entries: Iterable[Any], factory: CodecFactory | None = None,
                 cache_bytes: int = 1 << 30):
        self.signals = WorkerSignals()
        self.cache = ResultCache(cache_bytes)
        self.workers: dict[str, CodecWorker] = {
            e.name: CodecWorker(e, self.signals, self.cache, factory) for e in entries}
        self._ids = itertools.count(1)
        self._closed = False

    def start(self) -> None:
        for w in self.workers.values():
            w.start()

    def next_id(self) -> int:
        return next(self._ids)

    def encode(self, codec: str, params: dict[str, Any], image: np.ndarray, key: str,
               preview: bool = False, want_ms_ssim: bool = True) -> int:
        rid = self.next_id()
        self.workers[codec].submit_encode(EncodeJob(rid, dict(params), image, key, preview, want_ms_ssim))
        return rid

    def match(self, codec: str, target_bpp: float, params: dict[str, Any], image: np.ndarray,
              key: str) -> int:
        rid = self.next_id()
        self.workers[codec].submit_match(MatchJob(rid, float(target_bpp), dict(params), image, key))
        return rid

    def sweep(self, codec: str, base_params: dict[str, Any], image: np.ndarray, key: str,
              with_ms_ssim: bool) -> int:
        """Start a background sweep; points are reported with this generation number."""
        gen = self.next_id()
        self.workers[codec].submit_sweep(SweepJob(gen, dict(base_params), image, key, with_ms_ssim))
        return gen

    def cancel_sweep(self, codec: str) -> None:
        self.workers[codec].submit_sweep(None)

    def shutdown(self, timeout: float = 5.0) -> bool:
        """Stop every worker; True when all threads ended within ``timeout`` seconds.

        Threads still inside a long encode are daemons: they finish on their own and emit
        nothing, so closing the window never waits longer than ``timeout``.
        """
        self._closed = True
        for w in self.workers.values():
            w.stop()
        deadline = time.monotonic() + timeout
        ok = True
        for w in self.workers.values():
            ok &= w.join(max(0.0, deadline - time.monotonic()))
        return ok

    @property
    def closed(self) -> bool:
        return self._closed
