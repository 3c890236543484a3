"""Shared machinery of the learned codecs: weights resolution, device, padding, tensors.

A learned codec pairs a ``torch.nn.Module`` model, built from one frozen dataclass config,
with this class. Weights are resolved in one place so that every codec refuses the same bad
inputs the same way:

* ``weights="default"``: the manifest's default entry for the codec, or, when none has been
  shipped yet, a deterministic random initialisation of the default config;
* ``weights="random"`` (or ``None``): deterministic random initialisation of ``config``;
* any other string: a manifest entry name or a path to a ``.pt`` weights file;
* ``weights_id=N`` (set when decoding a bitstream): exactly the weights the file was coded with.
"""

from __future__ import annotations

import abc
import contextlib
import dataclasses
import logging
import math
import time
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from . import postfilter
from . import weights as W
from .base import PICTURE_CHECK, PICTURE_CHECK_BYTES, Codec, CodecResult, ParamSpec, picture_check
from .errors import BitstreamError, WeightsError
from .metrics import squared_error

__all__ = ["LearnedCodec", "POSTFILTER_PARAM", "select_device", "image_to_tensor", "tensor_to_image",
           "pad_to_multiple"]

log = logging.getLogger(__name__)
RANDOM_INIT_SEED = 20261122


@contextlib.contextmanager
def one_cpu_thread():
    """Torch's CPU kernels and numpy's BLAS (the post-filter's sums and taps) on one thread of
    the calling thread, restored after.

    A kernel splits its sums by the thread count, so the same network on another count differs
    in the last bits: enough for the entropy model's scales to pick other tables in a decoder
    than in its encoder (a hybrid file encoded on one thread decoded to garbage on two), and
    for a pixel of the synthesis to round the other way. BLAS threads change no result of
    ours (the post-filter's arithmetic is exact), but OpenBLAS's threads wait for each other
    by spinning: with another process on the second core a 58 × 58 solve took 7 ms instead of
    27 µs, and the encoder solves about a hundred. One thread also makes "coding on one thread"
    true of the whole codec, as the bench says it is.
    """
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    if before != 1:  # the bench, eval's workers and training already run on one thread
        torch.set_num_threads(1)
    try:
        with threadpool_limits(1, user_api="blas"):
            yield
    finally:
        if before != 1:
            torch.set_num_threads(before)


def coding_context(device: Any):
    """The context the learned codecs encode and decode in on ``device``: one CPU thread
    (:func:`one_cpu_thread`); nothing on a GPU."""
    import torch

    return one_cpu_thread() if torch.device(device).type == "cpu" else contextlib.nullcontext()


def select_device(device: Any = None):
    """``device`` as a torch.device; CUDA when present and nothing was asked for."""
    import torch

    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def image_to_tensor(image: np.ndarray, device) -> "torch.Tensor":
    """``(H, W, 3)`` uint8 → ``(1, 3, H, W)`` float32 in [0, 1]."""
    import torch

    # A copy: arrays from decoders or the GUI may be read-only, which torch warns about.
    # The batch dimension before the permute: unsqueezed after it, its stride is 3, which
    # torch.cat reads as not channels-last and answers with a (slower) NCHW tensor.
    t = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True)).unsqueeze(0).permute(0, 3, 1, 2)
    return t.to(device=device, dtype=torch.float32) / 255.0


def tensor_to_image(x) -> np.ndarray:
    """``(1, 3, H, W)`` float in [0, 1] → ``(H, W, 3)`` uint8, rounded to nearest."""
    arr = (x.detach().clamp(0, 1) * 255.0).round().to("cpu").squeeze(0).permute(1, 2, 0)
    return np.ascontiguousarray(arr.numpy().astype(np.uint8))


def pad_to_multiple(x, multiple: int):
    """Replicate-pad ``(N, C, H, W)`` on the bottom/right to multiples of ``multiple``."""
    import torch.nn.functional as F

    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph == 0 and pw == 0:
        return x
    return F.pad(x, (0, pw, 0, ph), mode="replicate")


POSTFILTER_PARAM = ParamSpec(
    "postfilter", "choice", "auto",
    "per-image Wiener post-filter, its taps sent in the file: on, off, or auto (the encoder keeps "
    "it where its gain pays for its bytes; the file says which)", choices=("auto", "on", "off"))


def _show_filtered(result: CodecResult, filtered: np.ndarray) -> None:
    """The post-filtered picture becomes the output; the model's own stays as an intermediate
    (under its own name where no other intermediate shows it already, as the hybrid's do)."""
    if not any(v is result.image for k, v in result.intermediates.items() if k != "reconstruction"):
        result.intermediates["before_postfilter"] = result.image
    result.image = filtered
    if "reconstruction" in result.intermediates:
        result.intermediates["reconstruction"] = filtered


class LearnedCodec(Codec):
    """Base of the registry's learned codecs.

    Subclasses set ``config_class`` (a frozen dataclass with defaults for every field) and
    ``model_class`` (called as ``model_class(config)``; must provide ``update(force=True)`` to
    build its entropy-coder tables, as CompressAI models do).
    """

    config_class: ClassVar[type]
    model_class: ClassVar[type]

    def __init__(self, weights: str | Path | None = "default", *, weights_id: int | None = None,
                 device: Any = None, config: Any = None):
        import torch

        self.device = select_device(device)
        if self.device.type == "cuda":
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        state, cfg, self.weights_id, self.weights_name, self.weights_record = self._resolve(
            weights, weights_id, config)
        self.config = cfg
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(RANDOM_INIT_SEED)
            model = self.model_class(cfg)
        if state is not None:
            try:
                model.load_state_dict(state)
            except (RuntimeError, KeyError, ValueError) as err:
                raise WeightsError(
                    f"weights {self.weights_name!r} do not fit the {self.name} model: {err}") from None
        model.eval().to(self.device)
        model.update(force=True)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model

    def unquantized(self, image: np.ndarray, **params: Any) -> np.ndarray:
        """The picture the transforms give with the latent left unquantized (cropped, 8-bit),
        post-filtered as ``postfilter`` says (its bytes cost nothing at an infinite rate).

        No rate can do better: set beside the R-D curve, it tells whether the transforms or the
        entropy model limit the codec at high rates.
        """
        params = self.resolve_params(params)
        finals = []
        for picture, guides in self._unquantized(image, params):
            chosen = None
            if params["postfilter"] != "off":
                chosen = postfilter.choose(image, picture, coded_bytes=math.inf,
                                           force=params["postfilter"] == "on", guides=guides)
            finals.append(chosen[1] if chosen is not None else picture)
        return min(finals, key=lambda final: squared_error(final, image))

    @abc.abstractmethod
    def _unquantized(self, image: np.ndarray,
                     params: dict[str, Any]) -> list[tuple[np.ndarray, tuple[np.ndarray, ...]]]:
        """:meth:`unquantized` before the post-filter, ``params`` resolved: the pictures the
        encoder would choose between (the closest after the post-filter is kept), each with the
        post-filter's guides (:meth:`_postfilter_guides`) on the way to it."""

    def channel_bits(self, image: np.ndarray, **params: Any) -> np.ndarray:
        """``(M,)`` float64: the bits each latent channel of ``y`` costs on ``image`` at
        ``params`` (Σ −log2 p over its rounded symbols, as the entropy coder spends them up to
        its table rounding; the hyper latent not included).

        How many channels carry the bits says whether the latent's width limits the codec: a
        model that spends bits on every channel, at every rate, could use more of them.
        """
        import torch

        with torch.no_grad():
            bits = self._channel_bits(image, self.resolve_params(params))
        return bits.double().cpu().numpy()

    @abc.abstractmethod
    def _channel_bits(self, image: np.ndarray, params: dict[str, Any]) -> "torch.Tensor":
        """:meth:`channel_bits` with ``params`` resolved, as a tensor."""

    def _coding(self):
        """On the CPU, coding runs on one thread (:func:`one_cpu_thread`), so that a file decodes
        bit for bit whatever torch's thread setting of the encoding and the decoding process."""
        return coding_context(self.device)

    # -- the post-filter (codec.postfilter) -----------------------------------------------------
    def _finish_encode(self, result: CodecResult, original: np.ndarray) -> None:
        """Fit the post-filter to ``result`` (the model's output, sections without it), keep it
        as ``params["postfilter"]`` says, add the picture check of the final picture and write
        the final bitstream into ``result``.

        ``result.params`` ends with ``postfilter`` as ``on`` / ``off``: what the file holds.
        """
        params = result.params
        t0 = time.perf_counter()
        chosen = None
        if params["postfilter"] != "off":
            header = self._header_params({**params, "postfilter": "on"})
            sized = {**result.sections, PICTURE_CHECK: bytes(PICTURE_CHECK_BYTES)}  # only its size counts
            coded = len(self._container(result.width, result.height, header, sized))
            chosen = postfilter.choose(original, result.image, coded, force=params["postfilter"] == "on",
                                       guides=self._postfilter_guides(result))
        if chosen is not None:
            payload, filtered = chosen
            result.sections[postfilter.SECTION] = payload
            result.info["postfilter"] = postfilter.describe(postfilter.unpack(payload))
            _show_filtered(result, filtered)
        params["postfilter"] = "on" if chosen is not None else "off"
        result.info["postfilter_bytes"] = len(result.sections.get(postfilter.SECTION, b""))
        result.sections[PICTURE_CHECK] = picture_check(result.image)
        result.bitstream = self._container(result.width, result.height, self._header_params(params),
                                           result.sections)
        result.encode_ms += (time.perf_counter() - t0) * 1e3

    def _postfilter_guides(self, result: CodecResult) -> tuple[np.ndarray, ...]:
        """The pictures, besides the decoded one, that the post-filter may mix in
        (:mod:`codec.postfilter`): ``(H, W, 3)`` uint8, made by the decoder on its way to
        ``result.image`` (before the post-filter), the same in encoder and decoder, most useful
        first. None by default."""
        return ()

    def _header_params(self, params: dict[str, Any]) -> dict[str, Any]:
        """The parameters as the file stores them: switches the encoder decided as booleans."""
        return {**params, "postfilter": params["postfilter"] == "on"}

    def _postfilter_decode(self, result: CodecResult, sections: dict[str, bytes]) -> None:
        """Apply the file's post-filter, if it has one, to the decoded ``result``."""
        on = result.params["postfilter"] == "on"
        if on != (postfilter.SECTION in sections):
            raise BitstreamError("corrupt file: the postfilter flag and the postfilter section disagree")
        result.info["postfilter_bytes"] = len(sections.get(postfilter.SECTION, b""))
        if not on:
            return
        t0 = time.perf_counter()
        pf = postfilter.unpack(sections[postfilter.SECTION])
        result.info["postfilter"] = postfilter.describe(pf)
        _show_filtered(result, postfilter.apply(result.image, pf, self._postfilter_guides(result)))
        result.decode_ms += (time.perf_counter() - t0) * 1e3

    # -- weights ------------------------------------------------------------------------------
    def _config_from(self, data: dict | None) -> Any:
        if data is None:
            return self.config_class()
        names = {f.name for f in dataclasses.fields(self.config_class)}
        unknown = set(data) - names
        if unknown:
            raise WeightsError(f"{self.name} config has no field(s) {sorted(unknown)}; valid: {sorted(names)}")
        return self.config_class(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in data.items()})

    def _resolve(self, weights, weights_id, config):
        if weights_id is not None and not weights_id & W.RANDOM_INIT_BIT:
            entry = W.entry_by_id(weights_id)
            if entry is None:
                retired = W.retired_by_id(weights_id)
                if retired is not None:
                    raise BitstreamError(
                        f"bitstream was coded with the {retired.get('name')!r} weights (id {weights_id}), "
                        f"retired from this install on {retired.get('retired', '?')}; restore "
                        f"weights/{retired.get('file')} and its manifest entry from the git history "
                        f"(git log -- weights/{retired.get('file')}) to decode it")
                raise BitstreamError(
                    f"bitstream needs {self.name} weights id {weights_id}, which this install's "
                    f"manifest ({W.weights_dir() / W.MANIFEST_NAME}) does not list")
            if entry.codec != self.name:
                raise BitstreamError(
                    f"bitstream names weights id {weights_id} ({entry.name!r}), which belong to "
                    f"codec {entry.codec!r}, not {self.name!r}")
            weights = entry.name
        if weights == "default" and weights_id is None:
            entry = W.default_entry(self.name)
            weights = entry.name if entry is not None else "random"
        if weights is None or weights == "random" or (weights_id is not None and weights_id & W.RANDOM_INIT_BIT):
            cfg = config if config is not None else self.config_class()
            rid = W.random_init_id(self.name, dataclasses.asdict(cfg))
            if weights_id is not None and weights_id != rid:
                raise BitstreamError(
                    f"bitstream was coded with an untrained {self.name} model of another "
                    f"configuration (weights id {weights_id:#x}, this one is {rid:#x})")
            return None, cfg, rid, "random-init", {}
        path = Path(weights)
        if path.suffix == ".pt" and path.exists():
            doc = W.read_weights_file(path, codec=self.name)
            cfg = self._config_from(doc["config"])
            wid = int(doc.get("weights_id", 0))
            return doc["state_dict"], cfg, wid, path.stem, {}
        entry = W.find_entry(str(weights), codec=self.name)
        doc = W.read_weights_file(entry.path(), expected_sha256=entry.sha256, codec=self.name)
        cfg = self._config_from(doc["config"])
        return doc["state_dict"], cfg, entry.weights_id, entry.name, entry.record

    @property
    def device_name(self) -> str:
        import torch

        if self.device.type == "cuda":
            return torch.cuda.get_device_name(self.device)
        return "CPU"

    @property
    def trained(self) -> bool:
        return self.weights_name != "random-init"
