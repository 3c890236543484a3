"""The one map from codec names (and the ids written into bitstreams) to constructors.

The CLI, the GUI and training all read it. Entries name their class by import path so that
listing codecs never imports torch; the class is imported on first use.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

from . import container
from .base import Codec, CodecResult
from .errors import BitstreamError, ParameterError

__all__ = ["CodecEntry", "CODECS", "codec_names", "entry", "entry_by_id", "parse_spec", "create",
           "decode_bitstream"]


@dataclass(frozen=True)
class CodecEntry:
    """A registered codec: ``codec_id`` is the constant written into every ``.lic`` file."""

    name: str
    codec_id: int
    target: str  # "module:Class"
    title: str
    learned: bool

    def load_class(self) -> type[Codec]:
        module, _, cls = self.target.partition(":")
        klass = getattr(importlib.import_module(module), cls)
        assert klass.codec_id == self.codec_id and klass.name == self.name, self
        return klass


CODECS: dict[str, CodecEntry] = {
    e.name: e
    for e in (
        CodecEntry("jpeg", 1, "codec.jpeg:JpegCodec", "JPEG", learned=False),
        CodecEntry("hybrid", 2, "codec.hybrid:HybridCodec", "HyRES (JPEG + neural residual)", learned=True),
        CodecEntry("wavelet", 3, "codec.wavelet:WaveletCodec", "Wavelet latent (HPCM × WeConvene)", learned=True),
    )
}


def codec_names() -> list[str]:
    return list(CODECS)


def entry(name: str) -> CodecEntry:
    try:
        return CODECS[name]
    except KeyError:
        raise ParameterError(f"unknown codec {name!r}; available: {', '.join(CODECS)}") from None


def entry_by_id(codec_id: int) -> CodecEntry:
    for e in CODECS.values():
        if e.codec_id == codec_id:
            return e
    raise BitstreamError(
        f"unknown codec id {codec_id} (this lic-studio knows "
        f"{', '.join(f'{e.name}={e.codec_id}' for e in CODECS.values())})")


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"hybrid:refine=off:subsampling=4:4:4"`` → ``("hybrid", {"refine": "off", ...})``: a codec
    name and parameters held fixed (a value may itself hold ``:``, as 4:4:4 does);
    :class:`ParameterError` for a spec that is neither."""
    name, *rest = spec.strip().split(":")
    fixed: dict[str, str] = {}
    for item in rest:
        if "=" in item:
            key, value = item.split("=", 1)
            fixed[key] = value
        elif fixed:
            last = next(reversed(fixed))
            fixed[last] += ":" + item
        else:
            raise ParameterError(f"bad codec spec {spec!r}; use NAME[:PARAM=VALUE...]")
    return name, fixed


def create(name: str, **options: Any) -> Codec:
    """Construct a codec by name. Learned codecs take ``weights=`` and ``device=`` options."""
    return entry(name).load_class()(**options)


def decode_bitstream(data: bytes, verify: bool = True, **options: Any) -> CodecResult:
    """Decode any ``.lic`` file with the codec and weights its header names (``verify``: see
    :meth:`codec.base.Codec.decode`)."""
    parsed = container.unpack(data)
    e = entry_by_id(parsed.codec_id)
    klass = e.load_class()
    if e.learned:
        options.setdefault("weights_id", parsed.weights_id)
    result = klass(**options).decode(parsed, verify=verify)
    result.bitstream = bytes(data)
    return result
