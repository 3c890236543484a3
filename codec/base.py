"""The contract every codec in the registry fulfils, and the result type they all return.

A codec turns an RGB uint8 image plus a few named parameters into a ``.lic`` bitstream and
back. Encoding also returns the encoder-side reconstruction, which ``decode`` of the same
bytes reproduces bit for bit on the same device, and named intermediate images for the app.
"""

from __future__ import annotations

import abc
import contextlib
import math
import struct
import zlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Iterable, Mapping, Sequence

import numpy as np

from . import container
from .errors import BitstreamError, ParameterError, PictureMismatchError

__all__ = ["ParamSpec", "CodecResult", "Codec", "rate_knob"]


_ON_WORDS = ("1", "true", "yes", "on")
_OFF_WORDS = ("0", "false", "no", "off")


def _switch_word(value: Any) -> str:
    """A switch's value as ``on``/``off`` (from a bool or its usual spellings); others unchanged.

    A switch that grew more choices than on and off (``auto``) still reads files, command lines
    and scripts written when it was a bool.
    """
    if isinstance(value, bool):
        return "on" if value else "off"
    text = str(value)
    if text.lower() in _ON_WORDS:
        return "on"
    if text.lower() in _OFF_WORDS:
        return "off"
    return text


@dataclass(frozen=True)
class ParamSpec:
    """One user-facing codec parameter (a CLI option, a GUI control).

    ``kind`` is ``"int"``, ``"float"``, ``"bool"`` or ``"choice"``. ``rate_knob`` marks the
    parameter that sets the rate (one per codec: the GUI's slider, what R-D sweeps vary);
    ``sweep`` lists the values an R-D sweep of it visits (``lic-codec eval``), unless the codec
    walks a path of several parameters instead (:meth:`Codec.sweep_path`).
    """

    name: str
    kind: str
    default: Any
    help: str = ""
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    sweep: tuple[Any, ...] = ()
    rate_knob: bool = False
    #: What a file written before this parameter existed was coded with, where that is not the
    #: default (None: the default); :meth:`Codec.decode` reads such files with it.
    unrecorded: Any = None

    def coerce(self, value: Any) -> Any:
        """Return ``value`` converted to this parameter's type, or raise :class:`ParameterError`."""
        try:
            if self.kind == "int":
                if isinstance(value, float) and not value.is_integer():
                    raise ValueError
                v: Any = int(value)
            elif self.kind == "float":
                v = float(value)
                if not math.isfinite(v):
                    raise ValueError
            elif self.kind == "bool":
                if isinstance(value, str):
                    if value.lower() not in _ON_WORDS + _OFF_WORDS:
                        raise ValueError
                    v = value.lower() in _ON_WORDS
                else:
                    v = bool(value)
            elif self.kind == "choice":
                v = _switch_word(value) if {"on", "off"} <= set(self.choices) else str(value)
                if v not in self.choices:
                    raise ParameterError(
                        f"{self.name}={value!r} is not one of {', '.join(self.choices)}")
            else:  # pragma: no cover - a programming error in a codec's spec
                raise AssertionError(f"unknown parameter kind {self.kind}")
        except (TypeError, ValueError) as err:
            if isinstance(err, ParameterError):
                raise
            raise ParameterError(f"{self.name}={value!r} is not a valid {self.kind}") from None
        if self.kind in ("int", "float"):
            if (self.minimum is not None and v < self.minimum) or (
                    self.maximum is not None and v > self.maximum):
                raise ParameterError(
                    f"{self.name}={v} is outside its range {self.minimum}..{self.maximum}")
        return v


def rate_knob(params: Iterable[ParamSpec]) -> ParamSpec | None:
    """The parameter of ``params`` marked ``rate_knob``, or None."""
    return next((p for p in params if p.rate_knob), None)


#: Name of the optional section holding the CRC-32 of the picture the encoder made (the decoded
#: 8-bit RGB pixels, row by row). A learned decoder recomputes its entropy model from what it
#: has decoded, so another device's or torch build's last bits can turn a well-formed file
#: into another picture, or into garbage, without any other sign; with the check the decoder
#: says so instead. The learned codecs write it (4 bytes of payload, 18 with its table entry).
PICTURE_CHECK = "check"
_PICTURE_CHECK_FORMAT = "<I"  # CRC-32, little-endian
PICTURE_CHECK_BYTES = struct.calcsize(_PICTURE_CHECK_FORMAT)


def picture_check(image: np.ndarray) -> bytes:
    """The :data:`PICTURE_CHECK` payload of ``image``: CRC-32 of its uint8 pixels, little-endian."""
    return struct.pack(_PICTURE_CHECK_FORMAT, zlib.crc32(np.ascontiguousarray(image, dtype=np.uint8)))


@dataclass
class CodecResult:
    """What encoding (or decoding) one image produced.

    Attributes:
        codec: registry name of the codec.
        params: the parameters the image was coded with (coerced, defaults filled in).
        bitstream: the complete ``.lic`` file.
        sections: payload bytes per named section (``bitstream`` holds these plus the header).
        image: the decoded RGB uint8 image at the original size.
        width, height: the original image size.
        intermediates: named images for display, e.g. ``"jpeg_base"``, ``"residual"``. RGB
            uint8 ``(H, W, 3)`` arrays are pictures; float arrays are signed or per-channel data
            (documented by the codec).
        info: named scalars and small arrays (per-band step sizes, gate values, weights name).
        encode_ms, decode_ms: wall-clock times. In a decoder's result, decode_ms is the whole
            decode. In an encoder's result, encode_ms is the encoder's own work and decode_ms the
            decoder-side reconstruction it computes on the way (for the learned codecs their
            synthesis, and the hybrid's refinement; not the entropy decoding, which their
            encoders need not repeat, nor the post-filter, which is timed as encoding).
    """

    codec: str
    params: dict[str, Any]
    bitstream: bytes
    sections: dict[str, bytes]
    image: np.ndarray
    width: int
    height: int
    intermediates: dict[str, np.ndarray] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    encode_ms: float = float("nan")
    decode_ms: float = float("nan")

    @property
    def num_pixels(self) -> int:
        return self.width * self.height

    @property
    def num_bytes(self) -> int:
        return len(self.bitstream)

    @property
    def bpp(self) -> float:
        """Bits per pixel of the whole ``.lic`` file, container overhead included."""
        return 8.0 * len(self.bitstream) / self.num_pixels

    @property
    def section_bpp(self) -> dict[str, float]:
        """Bits per pixel of each section's payload, plus ``"container"`` for the header and,
        as the header's checksums are, the picture check."""
        payloads = {name: p for name, p in self.sections.items() if name != PICTURE_CHECK}
        out = {name: 8.0 * len(p) / self.num_pixels for name, p in payloads.items()}
        overhead = len(self.bitstream) - sum(len(p) for p in payloads.values())
        out["container"] = 8.0 * overhead / self.num_pixels
        return out


class Codec(abc.ABC):
    """Base class of registry codecs.

    Subclasses set ``name``, ``codec_id`` (the explicit constant written into every file),
    ``params`` and implement :meth:`_encode` / :meth:`_decode`. Learned codecs also set
    ``weights_id`` / ``weights_name`` from the weights they loaded.
    """

    name: ClassVar[str]
    codec_id: ClassVar[int]
    title: ClassVar[str] = ""
    params: ClassVar[Sequence[ParamSpec]] = ()
    weights_id: int = 0
    weights_name: str = "none"

    # -- parameters -------------------------------------------------------------------------
    def param_spec(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise ParameterError(
            f"{self.name} has no parameter {name!r}; valid: {', '.join(p.name for p in self.params)}")

    def resolve_params(self, given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """Fill defaults and coerce/validate every given parameter."""
        given = dict(given or {})
        out = {}
        for p in self.params:
            out[p.name] = p.coerce(given.pop(p.name)) if p.name in given else p.default
        if given:
            raise ParameterError(
                f"{self.name} has no parameter(s) {', '.join(map(repr, given))}; "
                f"valid: {', '.join(p.name for p in self.params)}")
        return out

    @property
    def rate_param(self) -> ParamSpec:
        """The parameter that sets the rate."""
        knob = rate_knob(self.params)
        if knob is None:  # pragma: no cover - a programming error in a codec's spec
            raise AssertionError(f"{self.name} declares no rate knob")
        return knob

    def sweep_path(self, settings: dict[str, Any]) -> list[dict[str, Any]]:
        """The values an R-D sweep varies, from low to high rate, for the resolved ``settings``
        of everything else (a codec whose best path depends on them, e.g. the hybrid's JPEG
        tables, picks it here). By default the rate knob's ``sweep``."""
        knob = self.rate_param
        assert knob.sweep, f"{self.name}: a rate knob without a sweep needs its own sweep_path"
        return [{knob.name: v} for v in knob.sweep]

    def sweep_points(self, fixed: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        """Parameter sets visited by an R-D sweep, from low to high rate, with ``fixed`` held:
        its values replace the path's, so a fixed rate knob leaves fewer points, not copies."""
        fixed = dict(fixed or {})
        points: list[dict[str, Any]] = []
        for step in self.sweep_path(self.resolve_params(fixed)):
            point = self.resolve_params({**step, **fixed})
            if point not in points:
                points.append(point)
        return points

    @property
    def device_name(self) -> str:
        return "CPU"

    # -- coding -------------------------------------------------------------------------------
    def encode(self, image: np.ndarray, **params: Any) -> CodecResult:
        """Encode an ``(H, W, 3)`` uint8 RGB image; the result holds the bitstream and reconstruction."""
        if not (isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3
                and image.shape[2] == 3 and image.shape[0] >= 1 and image.shape[1] >= 1):
            raise ParameterError(
                f"expected an (H, W, 3) uint8 RGB array, got "
                f"{getattr(image, 'shape', None)} {getattr(image, 'dtype', type(image).__name__)}")
        h, w = image.shape[:2]
        if w > container.MAX_DIMENSION or h > container.MAX_DIMENSION:
            raise ParameterError(f"image {w}x{h} is larger than {container.MAX_DIMENSION} on a side")
        params = self.resolve_params(params)
        with self._coding():
            return self._encode(np.ascontiguousarray(image), params)

    def decode(self, data: bytes | container.Container, verify: bool = True) -> CodecResult:
        """Decode a ``.lic`` bitstream written by this codec (with the same weights).

        A file with a picture check (:data:`PICTURE_CHECK`) that the decoded picture fails
        raises :class:`PictureMismatchError`, or, with ``verify=False``, is returned with
        ``info["picture_check"] == "mismatch"`` ("match" when it passes, "none" without one).
        """
        c = data if isinstance(data, container.Container) else container.unpack(data)
        raw = data if isinstance(data, (bytes, bytearray)) else None
        if c.codec_id != self.codec_id:
            raise BitstreamError(
                f"bitstream was written by codec id {c.codec_id}, not {self.name} ({self.codec_id})")
        if c.weights_id != self.weights_id:
            raise BitstreamError(
                f"bitstream needs weights id {c.weights_id}, but {self.name} has "
                f"{self.weights_name!r} (id {self.weights_id}) loaded")
        given = dict(c.params)
        for p in self.params:
            if p.name not in given and p.unrecorded is not None:
                given[p.name] = p.unrecorded
        try:
            params = self.resolve_params(given)
        except ParameterError as err:
            raise BitstreamError(f"corrupt parameters in bitstream: {err}") from None
        missing = [s for s in self.required_sections(params) if s not in c.sections]
        if missing:
            raise BitstreamError(f"bitstream lacks section(s) {', '.join(missing)} needed by {self.name}")
        check = c.sections.get(PICTURE_CHECK)
        if check is not None and len(check) != PICTURE_CHECK_BYTES:
            raise BitstreamError(f"corrupt file: section {PICTURE_CHECK!r} is {len(check)} bytes, "
                                 f"not {PICTURE_CHECK_BYTES}")
        with self._coding():
            result = self._decode(c, params)
        result.bitstream = bytes(raw) if raw is not None else container.pack(c)
        if check is None:
            result.info["picture_check"] = "none"
        elif picture_check(result.image) == check:
            result.info["picture_check"] = "match"
        else:
            result.info["picture_check"] = "mismatch"
            if verify:
                raise PictureMismatchError(
                    f"the file decodes to another picture than its encoder made (its {PICTURE_CHECK} "
                    f"section's CRC-32 differs): a learned codec decodes exactly only on the kind of "
                    f"device and torch build that encoded the file, so it was probably encoded on "
                    f"another machine; decode it there (or keep this picture anyway: lic-codec decode "
                    f"--no-verify)", result)
        return result

    def _coding(self) -> contextlib.AbstractContextManager:
        """The context every encode and decode runs in: one in which the encoder's and the
        decoder's arithmetic give the same numbers."""
        return contextlib.nullcontext()

    def required_sections(self, params: Mapping[str, Any]) -> Sequence[str]:
        """Names of the sections a bitstream with these parameters must hold."""
        return ()

    def _container(self, width: int, height: int, params: Mapping[str, Any],
                   sections: Mapping[str, bytes]) -> bytes:
        return container.pack(container.Container(
            codec_id=self.codec_id, weights_id=self.weights_id, width=width, height=height,
            params=dict(params), sections=dict(sections)))

    @abc.abstractmethod
    def _encode(self, image: np.ndarray, params: dict[str, Any]) -> CodecResult: ...

    @abc.abstractmethod
    def _decode(self, c: container.Container, params: dict[str, Any]) -> CodecResult: ...
