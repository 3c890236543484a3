"""The .lic container: round trips, and every kind of bad input fails fast with BitstreamError."""

from __future__ import annotations

import struct
import time
import zlib

import numpy as np
import pytest

from codec import container
from codec.container import Container, pack, unpack
from codec.errors import BitstreamError


def sample() -> Container:
    return Container(codec_id=2, weights_id=7, width=33, height=17,
                     params={"quality": 40, "rate": 0.25, "mode": "4:2:0", "refine": True},
                     sections={"jpeg": b"\xff\xd8abc", "hyper": b"", "y": bytes(range(200))})


def test_round_trip_keeps_everything():
    c = sample()
    back = unpack(pack(c))
    assert back == c
    assert list(back.params) == list(c.params) and list(back.sections) == list(c.sections)
    assert isinstance(back.params["refine"], bool) and isinstance(back.params["quality"], int)


def test_a_section_costs_its_table_entry_and_its_payload():
    c = sample()
    more = Container(c.codec_id, c.weights_id, c.width, c.height, c.params,
                     {**c.sections, "postfilter": b"12345"})
    assert len(pack(more)) - len(pack(c)) == container.section_entry_bytes("postfilter", 5) + 5


def test_real_jpeg_file_round_trip(photo):
    from codec import create, decode_bitstream

    res = create("jpeg").encode(photo, quality=30)
    again = decode_bitstream(res.bitstream)
    assert np.array_equal(again.image, res.image)
    assert again.params == res.params


def test_every_truncation_is_rejected(photo):
    from codec import create

    data = create("jpeg").encode(photo[:16, :16], quality=20).bitstream
    t0 = time.perf_counter()
    for n in range(len(data)):
        with pytest.raises(BitstreamError):
            unpack(data[:n])
    assert time.perf_counter() - t0 < 5


def test_trailing_bytes_rejected():
    with pytest.raises(BitstreamError, match="unexpected bytes"):
        unpack(pack(sample()) + b"\0")


def test_every_single_bit_flip_is_caught():
    data = pack(sample())
    for i in range(len(data)):
        for bit in (0, 3, 7):
            bad = bytearray(data)
            bad[i] ^= 1 << bit
            with pytest.raises(BitstreamError):
                unpack(bytes(bad))


def test_random_bytes_rejected(rng):
    for n in (0, 1, 5, 18, 64, 4096):
        blob = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
        with pytest.raises(BitstreamError):
            unpack(blob)
        with pytest.raises(BitstreamError):
            unpack(container.MAGIC + blob)


def test_wrong_magic_message():
    with pytest.raises(BitstreamError, match="not a .lic file"):
        unpack(b"\x89PNG\r\n\x1a\n" + bytes(40))


def test_newer_version_message():
    data = bytearray(pack(sample()))
    data[4] = container.FORMAT_VERSION + 1
    with pytest.raises(BitstreamError, match="newer"):
        unpack(bytes(data))


def _pack_v1(c: Container, declared: dict[str, int] | None = None) -> bytes:
    """``c`` in format version 1 (names spelled out, 8-byte integers), as files were written
    before version 2; ``declared`` overrides sections' lengths in the table."""
    def value(v):
        if isinstance(v, bool):
            return bytes([4, int(v)])
        if isinstance(v, int):
            return bytes([1]) + struct.pack("<q", v)
        if isinstance(v, float):
            return bytes([2]) + struct.pack("<d", v)
        return bytes([3, len(v.encode())]) + v.encode()

    head = bytearray(struct.pack("<4sBBIII", container.MAGIC, 1, c.codec_id, c.weights_id, c.width, c.height))
    head.append(len(c.params))
    for k, v in c.params.items():
        head += bytes([len(k)]) + k.encode() + value(v)
    head.append(len(c.sections))
    for k, payload in c.sections.items():
        head += bytes([len(k)]) + k.encode() + struct.pack("<II", (declared or {}).get(k, len(payload)),
                                                                 zlib.crc32(payload))
    head += struct.pack("<I", zlib.crc32(head))
    return bytes(head) + b"".join(c.sections.values())


def _forge(width=10, height=10, section_len=None, payload=b"xyz"):
    """A file whose header CRC is valid but whose declared values are hostile."""
    return _pack_v1(Container(1, 0, width, height, sections={"jpeg": payload}),
                    declared=None if section_len is None else {"jpeg": section_len})


def test_forged_file_is_valid_when_honest():
    assert unpack(_forge()).sections == {"jpeg": b"xyz"}


@pytest.mark.parametrize("w,h", [(0, 10), (10, 0), (1 << 17, 1), (60000, 60000)])
def test_absurd_dimensions(w, h):
    with pytest.raises(BitstreamError, match="absurd image size"):
        unpack(_forge(width=w, height=h))


def test_huge_declared_section_fails_fast_without_allocating():
    t0 = time.perf_counter()
    with pytest.raises(BitstreamError, match="truncated"):
        unpack(_forge(section_len=0xFFFF_FFFF))
    assert time.perf_counter() - t0 < 0.1


def test_section_crc_names_the_section():
    data = bytearray(pack(sample()))
    data[-1] ^= 0xFF  # last byte of the last section, "y"
    with pytest.raises(BitstreamError, match="section 'y'"):
        unpack(bytes(data))


def test_unknown_codec_id_from_registry():
    from codec import decode_bitstream

    data = pack(Container(codec_id=250, weights_id=0, width=4, height=4, sections={"x": b"1"}))
    with pytest.raises(BitstreamError, match="unknown codec id 250"):
        decode_bitstream(data)


def test_jpeg_decoder_rejects_missing_and_foreign_sections():
    from codec import decode_bitstream

    data = pack(Container(codec_id=1, weights_id=0, width=4, height=4,
                          params={"quality": 50, "subsampling": "4:2:0"}, sections={"other": b"1"}))
    with pytest.raises(BitstreamError, match="lacks section"):
        decode_bitstream(data)
    data = pack(Container(codec_id=1, weights_id=0, width=4, height=4,
                          params={"quality": 50, "subsampling": "4:2:0"}, sections={"jpeg": b"garbage"}))
    with pytest.raises(BitstreamError, match="jpeg section"):
        decode_bitstream(data)


def test_jpeg_decoder_rejects_bad_params_and_size_mismatch(photo):
    from codec import create, decode_bitstream

    res = create("jpeg").encode(photo[:8, :8], quality=50)
    good = unpack(res.bitstream)
    with pytest.raises(BitstreamError, match="parameters"):
        decode_bitstream(pack(Container(1, 0, 8, 8, {"quality": 500, "subsampling": "4:2:0"},
                                        good.sections)))
    with pytest.raises(BitstreamError, match="container says"):
        decode_bitstream(pack(Container(1, 0, 9, 8, dict(good.params), good.sections)))



def test_version_1_files_still_read(photo):
    from codec import create, decode_bitstream

    res = create("jpeg").encode(photo[:24, :40], quality=30)
    c = unpack(res.bitstream)
    assert c.version == container.FORMAT_VERSION == 2
    old = _pack_v1(c)
    back = unpack(old)
    assert back.version == 1 and back.params == c.params and back.sections == c.sections
    assert np.array_equal(decode_bitstream(old).image, res.image)
    # what the container adds to the JPEG stream: version 2 spends a third of version 1's bytes
    assert len(old) - len(c.sections["jpeg"]) == 105
    assert len(res.bitstream) - len(c.sections["jpeg"]) == 34


def test_every_word_of_the_shipped_codecs_is_one_byte():
    from codec import create
    from codec.base import PICTURE_CHECK
    from codec.postfilter import SECTION

    for name in ("jpeg", "hybrid", "wavelet"):
        codec = create(name, weights="random") if name != "jpeg" else create(name)
        words = {p.name for p in codec.params} | {c for p in codec.params for c in p.choices}
        words |= set(codec.required_sections(codec.resolve_params({}))) | {PICTURE_CHECK, SECTION}
        assert words <= set(container.WORDS), (name, words - set(container.WORDS))
    assert len(set(container.WORDS)) == len(container.WORDS) < 256


@pytest.mark.parametrize("value", [0, 1, -1, 63, -64, 64, 300, -300, 2**63 - 1, -2**63])
def test_integers_round_trip_in_the_fewest_bytes(value):
    c = Container(1, 0, 1, 1, params={"quality": value})
    assert unpack(pack(c)).params["quality"] == value
    short = Container(1, 0, 1, 1, params={"quality": 0})
    zigzag = 2 * value if value >= 0 else -2 * value - 1
    assert len(pack(c)) - len(pack(short)) == (max(zigzag.bit_length(), 1) - 1) // 7
    with pytest.raises(ValueError):
        pack(Container(1, 0, 1, 1, params={"quality": 2**63}))


def test_names_outside_the_words_are_spelled_out():
    c = Container(3, 9, 5, 6, params={"my knob": "my value", "rate": "psnr"}, sections={"extra": b"12"})
    back = unpack(pack(c))
    assert back == c and list(back.params) == ["my knob", "rate"]


def _v2_head(fields: bytes) -> bytes:
    head = struct.pack("<4sBB", container.MAGIC, 2, 1) + fields + b"\x00\x00"
    return head + struct.pack("<I", zlib.crc32(head))


def test_varints_must_be_shortest_and_in_range():
    assert unpack(_v2_head(b"\x00\x05\x05")).width == 5
    for fields in (b"\x80\x00\x05\x05",  # weights id 0 in two bytes
                   b"\x00\x85\x00\x05",  # width 5 in two bytes
                   b"\x00\x81\x80\x04\x05",  # width 65537
                   b"\x00" + b"\x80" * 40 + b"\x01\x05",  # endless continuation
                   b"\x00\x05\x00"):  # height 0
        with pytest.raises(BitstreamError, match="corrupt header"):
            unpack(_v2_head(fields))
