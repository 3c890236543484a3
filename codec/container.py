"""The ``.lic`` container: one self-describing file per coded image.

Layout of version 2, the version written (full description, and version 1's, which is still
read, in ``docs/FORMAT.md``)::

    +-------+---------+----------+----------------------------------+
    | magic | version | codec_id | weights_id, width, height        |   varints (LEB128)
    | 4 B   | u8      | u8       |                                  |
    +-------+---------+----------+----------------------------------+
    | n_params u8 | params: name, type tag (u8), value                |
    | n_sections u8 | table: name, length (varint), crc32 u32        |
    | header_crc32 u32 (over every byte above)                        |
    +-----------------------------------------------------------------+
    | section payloads, in table order                                |
    +-----------------------------------------------------------------+

A name (and a string value) is one byte, its code in :data:`WORDS`, where it is one of the
shipped codecs' words, else a zero byte and the name spelled out. Version 1 spelled every name
and wrote every integer in eight bytes: 105 bytes of container around a Kodak-sized JPEG file,
where version 2 writes 36, and 250 bytes of header on a hybrid file, where version 2 writes
about 90; at Kodak's size and low rates that is one to two per cent of a file.

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
    "WORDS",
    "Container",
    "pack",
    "unpack",
    "peek_header",
    "section_entry_bytes",
]

MAGIC = b"LIC\x1a"
FORMAT_VERSION = 2  # written; every version from 1 up to it is read
MAX_DIMENSION = 1 << 16
MAX_PIXELS = 1 << 28
MAX_NAME = 64

# The words a version-2 file writes as one byte, code = index + 1 (0: a name spelled out):
# the shipped codecs' parameter names, choice values and section names. Append only: a code,
# once written, names its word in every file for ever.
WORDS = (
    "quality", "subsampling", "tables", "scan", "base_quality", "rate", "refine", "base_tables",
    "base_scan", "postfilter", "optimize",
    "4:4:4", "4:2:2", "4:2:0", "standard", "psnr", "baseline", "progressive", "smallest",
    "auto", "on", "off",
    "jpeg", "hyper", "anchor", "nonanchor", "check", "LL", "LH", "HL", "HH",
)
_CODE = {w: i + 1 for i, w in enumerate(WORDS)}

_PREFIX = struct.Struct("<4sBB")
_FIXED_V1 = struct.Struct("<4sBBIII")
_SECTION_V1 = struct.Struct("<II")
_CRC = struct.Struct("<I")

ParamValue = Union[int, float, str, bool]
# Type tags. Version 1: int64, float64, string, bool (+ a value byte). Version 2: zigzag-varint
# int, float64, string spelled out, false, true, a string of WORDS.
_V1_INT, _V1_FLOAT, _V1_STR, _V1_BOOL = 1, 2, 3, 4
_INT, _FLOAT, _STR, _FALSE, _TRUE, _WORD = 1, 2, 3, 4, 5, 6
_INT64 = 1 << 63
_MAX_U32 = (1 << 32) - 1
_MAX_U64 = (1 << 64) - 1


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


def _varint(n: int) -> bytes:
    """``n`` >= 0 as an unsigned LEB128 varint: seven bits a byte, low first, high bit = more."""
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _name(kind: str, name: str) -> bytes:
    code = _CODE.get(name)
    if code is not None:
        return bytes([code])
    raw = _check_name(kind, name)
    return bytes([0, len(raw)]) + raw


def section_entry_bytes(name: str, length: int) -> int:
    """Bytes a section named ``name`` of ``length`` payload bytes adds to the header's table."""
    return len(_name("section", name)) + len(_varint(length)) + _CRC.size


def _pack_value(value: ParamValue) -> bytes:
    if isinstance(value, bool):
        return bytes([_TRUE if value else _FALSE])
    if isinstance(value, int):
        if not -_INT64 <= value < _INT64:
            raise ValueError(f"integer parameter {value} outside the int64 range")
        return bytes([_INT]) + _varint(((value << 1) ^ (value >> 63)) & _MAX_U64)  # zigzag
    if isinstance(value, float):
        return bytes([_FLOAT]) + struct.pack("<d", value)
    if isinstance(value, str):
        if value in _CODE:
            return bytes([_WORD, _CODE[value]])
        raw = value.encode("utf-8")
        if len(raw) > 255:
            raise ValueError(f"string parameter too long ({len(raw)} bytes, max 255)")
        return bytes([_STR, len(raw)]) + raw
    raise TypeError(f"parameter values must be int, float, str or bool, not {type(value).__name__}")


def pack(c: Container) -> bytes:
    """Serialise a :class:`Container` to bytes (format version :data:`FORMAT_VERSION`)."""
    if not (1 <= c.width <= MAX_DIMENSION and 1 <= c.height <= MAX_DIMENSION):
        raise ValueError(f"image size {c.width}x{c.height} outside 1..{MAX_DIMENSION}")
    if not (0 <= c.codec_id <= 255 and 0 <= c.weights_id <= _MAX_U32):
        raise ValueError(f"codec id {c.codec_id} or weights id {c.weights_id} out of range")
    if len(c.params) > 255 or len(c.sections) > 255:
        raise ValueError("at most 255 parameters and 255 sections")
    out = bytearray(_PREFIX.pack(MAGIC, FORMAT_VERSION, c.codec_id))
    out += _varint(c.weights_id) + _varint(c.width) + _varint(c.height)
    out.append(len(c.params))
    for key, value in c.params.items():
        out += _name("parameter", key) + _pack_value(value)
    out.append(len(c.sections))
    for name, payload in c.sections.items():
        out += _name("section", name) + _varint(len(payload)) + _CRC.pack(zlib.crc32(payload))
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
        """A name spelled out: u8 length, ASCII."""
        n = self.u8(f"{what} name length")
        if not 0 < n <= MAX_NAME:
            raise BitstreamError(f"corrupt header: {what} name length {n} outside 1..{MAX_NAME}")
        raw = self.take(n, f"{what} name")
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise BitstreamError(f"corrupt header: {what} name is not ASCII") from None

    def word(self, what: str) -> str:
        """A version-2 name: a code of :data:`WORDS`, or 0 and the name spelled out."""
        code = self.u8(what)
        if code == 0:
            return self.name(what)
        if code > len(WORDS):
            raise BitstreamError(f"corrupt header: {what} has unknown word code {code}")
        return WORDS[code - 1]

    def varint(self, what: str, limit: int) -> int:
        """An unsigned LEB128 varint of at most ``limit``, in its shortest form."""
        value, shift = 0, 0
        while True:
            byte = self.u8(what)
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
            if value > limit:
                raise BitstreamError(f"corrupt header: {what} exceeds {limit}")
        if value > limit or (shift > 7 and byte == 0):
            raise BitstreamError(f"corrupt header: {what} is not a varint up to {limit}")
        return value


def _read_value_v1(r: _Reader, key: str) -> ParamValue:
    kind = r.u8(f"type of parameter {key!r}")
    if kind == _V1_BOOL:
        v = r.u8(f"value of parameter {key!r}")
        if v > 1:
            raise BitstreamError(f"corrupt header: boolean parameter {key!r} has value {v}")
        return bool(v)
    if kind == _V1_INT:
        return struct.unpack("<q", r.take(8, f"value of parameter {key!r}"))[0]
    if kind == _V1_FLOAT:
        return struct.unpack("<d", r.take(8, f"value of parameter {key!r}"))[0]
    if kind == _V1_STR:
        return _read_string(r, key)
    raise BitstreamError(f"corrupt header: parameter {key!r} has unknown type tag {kind}")


def _read_value(r: _Reader, key: str) -> ParamValue:
    kind = r.u8(f"type of parameter {key!r}")
    if kind in (_FALSE, _TRUE):
        return kind == _TRUE
    if kind == _INT:
        zz = r.varint(f"value of parameter {key!r}", _MAX_U64)
        return (zz >> 1) ^ -(zz & 1)
    if kind == _FLOAT:
        return struct.unpack("<d", r.take(8, f"value of parameter {key!r}"))[0]
    if kind == _STR:
        return _read_string(r, key)
    if kind == _WORD:
        return r.word(f"value of parameter {key!r}")
    raise BitstreamError(f"corrupt header: parameter {key!r} has unknown type tag {kind}")


def _read_string(r: _Reader, key: str) -> str:
    n = r.u8(f"length of parameter {key!r}")
    try:
        return r.take(n, f"value of parameter {key!r}").decode("utf-8")
    except UnicodeDecodeError:
        raise BitstreamError(f"corrupt header: parameter {key!r} is not UTF-8") from None


def _read_fixed(data: bytes) -> tuple[_Reader, tuple[int, int, int, int, int]]:
    """Check magic and version and read ids and size: the reader after them, and
    ``(version, codec_id, weights_id, width, height)``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise BitstreamError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < len(MAGIC) or data[: len(MAGIC)] != MAGIC:
        raise BitstreamError("not a .lic file (wrong magic bytes)")
    r = _Reader(data)
    _, version, codec_id = _PREFIX.unpack(r.take(_PREFIX.size, "header"))
    if version > FORMAT_VERSION:
        raise BitstreamError(
            f"file format version {version} is newer than this lic-studio reads "
            f"(up to {FORMAT_VERSION}); update lic-studio"
        )
    if version == 0:
        raise BitstreamError("corrupt header: format version 0")
    if version == 1:
        r.pos = 0
        _, _, _, weights_id, width, height = _FIXED_V1.unpack(r.take(_FIXED_V1.size, "header"))
    else:
        weights_id = r.varint("weights id", _MAX_U32)
        width = r.varint("image width", MAX_DIMENSION)
        height = r.varint("image height", MAX_DIMENSION)
    if not (1 <= width <= MAX_DIMENSION and 1 <= height <= MAX_DIMENSION) or width * height > MAX_PIXELS:
        raise BitstreamError(f"corrupt header: absurd image size {width}x{height}")
    return r, (version, codec_id, weights_id, width, height)


def peek_header(data: bytes) -> tuple[int, int, int, int, int]:
    """Check magic and version; return ``(version, codec_id, weights_id, width, height)``."""
    return _read_fixed(data)[1]


def unpack(data: bytes) -> Container:
    """Parse and verify a ``.lic`` file; raise :class:`BitstreamError` on any defect.

    Work and memory are bounded by ``len(data)``: every declared length is checked against the
    bytes actually present before anything is allocated.
    """
    r, (version, codec_id, weights_id, width, height) = _read_fixed(data)
    data = r.data
    v1 = version == 1
    params: dict[str, ParamValue] = {}
    for _ in range(r.u8("parameter count")):
        key = r.name("parameter") if v1 else r.word("parameter name")
        if key in params:
            raise BitstreamError(f"corrupt header: parameter {key!r} appears twice")
        params[key] = _read_value_v1(r, key) if v1 else _read_value(r, key)
    table: list[tuple[str, int, int]] = []
    for _ in range(r.u8("section count")):
        if v1:
            name = r.name("section")
            length, crc = _SECTION_V1.unpack(r.take(_SECTION_V1.size, f"length of section {name!r}"))
        else:
            name = r.word("section name")
            length = r.varint(f"length of section {name!r}", _MAX_U32)
            (crc,) = _CRC.unpack(r.take(_CRC.size, f"checksum of section {name!r}"))
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
