"""The ``.lic`` container: one self-describing file per coded image.

Layout (all integers little-endian; full description in ``docs/FORMAT.md``)::

    +-------+---------+----------+------------+-------+--------+
    | magic | version | codec_id | weights_id | width | height |   fixed header, 18 bytes
    | 4 B   | u8      | u8       | u32        | u32   | u32    |
    +-------+---------+----------+------------+-------+--------+
    | n_params u8 | params: key(u8 len + ASCII), type(u8), value  |
    | n_sections u8 | table: name(u8 len + ASCII), length u32, crc32 u32 |
    | header_crc32 u32 (over every byte above)                     |
    +--------------------------------------------------------------+
    | section payloads, in table order                             |
    +--------------------------------------------------------------+

Codec and weights ids are explicit constants (see :mod:`codec.registry` and
``weights/manifest.json``), never positions in a list, so adding a codec or a weights file
never renumbers old files. Parameter values are typed scalars; nothing is ever unpickled.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field
from typing import Mapping, Union

from .errors import BitstreamError

__all__ = [
    "MAGIC",
    "FORMAT_VERSION",
    "MAX_DIMENSION",
    "MAX_PIXELS",
    "Container",
    "pack",
    "unpack",
    "peek_header",
    "section_entry_bytes",
]

MAGIC = b"LIC\x1a"
FORMAT_VERSION = 1
MAX_DIMENSION = 1 << 16
MAX_PIXELS = 1 << 28
MAX_SECTION_BYTES = 1 << 30
MAX_NAME = 64

_FIXED = struct.Struct("<4sBBIII")
_SECTION = struct.Struct("<II")
_CRC = struct.Struct("<I")

ParamValue = Union[int, float, str, bool]
_TYPE_INT, _TYPE_FLOAT, _TYPE_STR, _TYPE_BOOL = 1, 2, 3, 4


@dataclass(frozen=True)
class Container:
    """The parsed content of a ``.lic`` file."""

    codec_id: int
    weights_id: int
    width: int
    height: int
    params: Mapping[str, ParamValue] = field(default_factory=dict)
    sections: Mapping[str, bytes] = field(default_factory=dict)
    version: int = FORMAT_VERSION


def _check_name(kind: str, name: str) -> bytes:
    raw = name.encode("ascii", errors="strict")
    if not 0 < len(raw) <= MAX_NAME:
        raise ValueError(f"{kind} name {name!r} must be 1..{MAX_NAME} ASCII characters")
    return raw


def section_entry_bytes(name: str) -> int:
    """Bytes a section named ``name`` adds to the header's table (its payload aside)."""
    return 1 + len(_check_name("section", name)) + _SECTION.size


def _pack_value(value: ParamValue) -> bytes:
    if isinstance(value, bool):
        return bytes([_TYPE_BOOL, int(value)])
    if isinstance(value, int):
        return bytes([_TYPE_INT]) + struct.pack("<q", value)
    if isinstance(value, float):
        return bytes([_TYPE_FLOAT]) + struct.pack("<d", value)
    if isinstance(value, str):
        raw = value.encode("utf-8")
        if len(raw) > 255:
            raise ValueError(f"string parameter too long ({len(raw)} bytes, max 255)")
        return bytes([_TYPE_STR, len(raw)]) + raw
    raise TypeError(f"parameter values must be int, float, str or bool, not {type(value).__name__}")


def pack(c: Container) -> bytes:
    """Serialise a :class:`Container` to bytes."""
    if not (1 <= c.width <= MAX_DIMENSION and 1 <= c.height <= MAX_DIMENSION):
        raise ValueError(f"image size {c.width}x{c.height} outside 1..{MAX_DIMENSION}")
    if len(c.params) > 255 or len(c.sections) > 255:
        raise ValueError("at most 255 parameters and 255 sections")
    out = bytearray(_FIXED.pack(MAGIC, FORMAT_VERSION, c.codec_id, c.weights_id, c.width, c.height))
    out.append(len(c.params))
    for key, value in c.params.items():
        raw = _check_name("parameter", key)
        out += bytes([len(raw)]) + raw + _pack_value(value)
    out.append(len(c.sections))
    for name, payload in c.sections.items():
        raw = _check_name("section", name)
        out += bytes([len(raw)]) + raw + _SECTION.pack(len(payload), zlib.crc32(payload))
    out += _CRC.pack(zlib.crc32(out))
    for payload in c.sections.values():
        out += payload
    return bytes(out)


class _Reader:
    """Bounds-checked cursor over untrusted bytes."""

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        if self.pos + n > len(self.data):
            raise BitstreamError(
                f"truncated file: {what} needs {n} bytes at offset {self.pos}, "
                f"only {len(self.data) - self.pos} left"
            )
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def u8(self, what: str) -> int:
        return self.take(1, what)[0]

    def name(self, what: str) -> str:
        n = self.u8(f"{what} name length")
        if not 0 < n <= MAX_NAME:
            raise BitstreamError(f"corrupt header: {what} name length {n} outside 1..{MAX_NAME}")
        raw = self.take(n, f"{what} name")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupt header: {what} name is not ASCII") from None


def _read_value(r: _Reader, key: str) -> ParamValue:
    kind = r.u8(f"type of parameter {key!r}")
    if kind == _TYPE_BOOL:
        v = r.u8(f"value of parameter {key!r}")
        if v > 1:
            raise BitstreamError(f"corrupt header: boolean parameter {key!r} has value {v}")
        return bool(v)
    if kind == _TYPE_INT:
        return struct.unpack("<q", r.take(8, f"value of parameter {key!r}"))[0]
    if kind == _TYPE_FLOAT:
        return struct.unpack("<d", r.take(8, f"value of parameter {key!r}"))[0]
    if kind == _TYPE_STR:
        n = r.u8(f"length of parameter {key!r}")
        try:
            return r.take(n, f"value of parameter {key!r}").decode("utf-8")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupt header: parameter {key!r} is not UTF-8") from None
    raise BitstreamError(f"corrupt header: parameter {key!r} has unknown type tag {kind}")


def peek_header(data: bytes) -> tuple[int, int, int, int, int]:
    """Check magic and version; return ``(version, codec_id, weights_id, width, height)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a .lic file (wrong magic bytes)")
    if len(data) < _FIXED.size:
        raise BitstreamError(f"truncated file: {len(data)} bytes is shorter than the {_FIXED.size}-byte header")
    _, version, codec_id, weights_id, width, height = _FIXED.unpack_from(data)
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"file format version {version} is newer than this lic-studio reads "
            f"(up to {FORMAT_VERSION}); update lic-studio"
        )
    if version == 0:
        raise BitstreamError("corrupt header: format version 0")
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION) or width * height > MAX_PIXELS:
        raise BitstreamError(f"corrupt header: absurd image size {width}x{height}")
    return version, codec_id, weights_id, width, height


def unpack(data: bytes) -> Container:
    """Parse and verify a ``.lic`` file; raise :class:`BitstreamError` on any defect.

    Work and memory are bounded by ``len(data)``: every declared length is checked against the
    bytes actually present before anything is allocated.
    """
    version, codec_id, weights_id, width, height = peek_header(data)
    data = bytes(data)
    r = _Reader(data)
    r.pos = _FIXED.size
    params: dict[str, ParamValue] = {}
    for _ in range(r.u8("parameter count")):
        key = r.name("parameter")
        if key in params:
            raise BitstreamError(f"corrupt header: parameter {key!r} appears twice")
        params[key] = _read_value(r, key)
    table: list[tuple[str, int, int]] = []
    for _ in range(r.u8("section count")):
        name = r.name("section")
        length, crc = _SECTION.unpack(r.take(_SECTION.size, f"length of section {name!r}"))
        if any(name == t[0] for t in table):
            raise BitstreamError(f"corrupt header: section {name!r} appears twice")
        table.append((name, length, crc))
    header_end = r.pos
    (header_crc,) = _CRC.unpack(r.take(_CRC.size, "header checksum"))
    if zlib.crc32(data[:header_end]) != header_crc:
        raise BitstreamError("corrupt file: header checksum mismatch")
    declared = sum(length for _, length, _ in table)
    present = len(data) - r.pos
    if declared > present:
        raise BitstreamError(f"truncated file: sections declare {declared} bytes, only {present} present")
    if declared < present:
        raise BitstreamError(f"corrupt file: {present - declared} unexpected bytes after the last section")
    sections: dict[str, bytes] = {}
    for name, length, crc in table:
        payload = r.take(length, f"section {name!r}")
        if zlib.crc32(payload) != crc:
            raise BitstreamError(f"corrupt file: checksum mismatch in section {name!r}")
        sections[name] = payload
    return Container(codec_id=codec_id, weights_id=weights_id, width=width, height=height,
                     params=params, sections=sections, version=version)
