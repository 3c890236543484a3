"""The per-image post-filter: exact integer application, the fit, the section format, and the
codecs' use of it (flag and section agree, old files decode, the encoder's choice)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from codec import container, postfilter as P
from codec.errors import BitstreamError
from codec.hybrid import Config as HybridConfig, HybridCodec
from codec.wavelet import Config as WaveletConfig, WaveletCodec

pytestmark = pytest.mark.usefixtures("one_thread")


def _direct(decoded: np.ndarray, pf: P.PostFilter) -> np.ndarray:
    """The filter written out in int64 from its definition, pixel sums and all."""
    r, f = P.RADIUS, pf.fraction_bits
    h, w = decoded.shape[:2]
    pad = np.pad(decoded.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="edge")
    out = np.empty(decoded.shape, dtype=np.int64)
    for c in range(3):
        acc = decoded[..., c].astype(np.int64) * (1 << f) + pf.taps[c, -1]
        for ci in range(3):
            taps = pf.taps[c, ci * P._PER_CHANNEL:(ci + 1) * P._PER_CHANNEL]
            centre = pad[r:r + h, r:r + w, ci]
            acc = acc + taps[0] * (centre - 128)
            for (dy, dx), t in zip(P._PAIRS, taps[1:]):
                pair = pad[r + dy:r + dy + h, r + dx:r + dx + w, ci] + pad[r - dy:r - dy + h, r - dx:r - dx + w, ci]
                acc = acc + t * (pair - 2 * centre)
        out[..., c] = np.clip((acc + (1 << (f - 1))) >> f, 0, 255)
    return out.astype(np.uint8)


@pytest.mark.parametrize("h, w, bound, block", [(1, 1, 300, 1 << 15), (7, 150, 4000, 1 << 15),
                                                (131, 67, P.MAX_TAP - 1, 1 << 15), (131, 67, 4000, 500)])
def test_apply_is_the_integer_filter_exactly(rng, monkeypatch, h, w, bound, block):
    monkeypatch.setattr(P, "_PIXELS_PER_BLOCK", block)  # 500: bands of 7 rows
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    pf = P.PostFilter(rng.integers(-bound, bound + 1, (3, P.NUM_FEATURES)), 8)
    assert np.array_equal(P.apply(image, pf), _direct(image, pf))
    # The largest sums the format allows: every tap at its bound, on the most extreme pixels.
    extreme = np.where(rng.random((h, w, 3)) < 0.5, 0, 255).astype(np.uint8)
    worst = P.PostFilter(np.full((3, P.NUM_FEATURES), -(P.MAX_TAP - 1)), P.MAX_FRACTION_BITS)
    assert np.array_equal(P.apply(extreme, worst), _direct(extreme, worst))
    identity = P.PostFilter(np.zeros((3, P.NUM_FEATURES), dtype=np.int64), 8)
    assert np.array_equal(P.apply(image, identity), image)


def test_fit_undoes_a_linear_degradation(photo, monkeypatch):
    """A blur plus a colour cast is what the filter can model: it must take most of it back."""
    x = photo.astype(np.float64)
    blurred = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    cast = blurred @ np.array([[0.9, 0.05, 0.0], [0.05, 0.95, 0.0], [0.0, 0.1, 0.85]]).T + 6
    degraded = np.clip(np.round(cast), 0, 255).astype(np.uint8)

    def psnr(a):
        return 10 * np.log10(255 ** 2 / np.mean((a.astype(np.float64) - photo) ** 2))

    taps = P.fit(photo, degraded)
    filtered = P.apply(degraded, P.quantize(taps))
    assert psnr(filtered) > psnr(degraded) + 3
    chosen = P.choose(photo, degraded, coded_bytes=20_000)
    assert chosen is not None and np.array_equal(chosen[1], filtered)
    assert P.choose(photo, photo, coded_bytes=20_000) is None  # nothing to gain
    assert P.choose(photo, photo, coded_bytes=20_000, force=True) is not None
    # The same gain does not pay for its bytes in a 40-byte file, unless forced.
    assert P.choose(photo, degraded, coded_bytes=40) is None
    assert P.choose(photo, degraded, coded_bytes=40, force=True) is not None
    monkeypatch.setattr(P, "_PIXELS_PER_BLOCK", 300)  # bands of 2 rows: the same sums
    np.testing.assert_allclose(P.fit(photo, degraded), taps, rtol=1e-9, atol=1e-9)


def test_section_round_trip_and_malformed_payloads(rng):
    pf = P.PostFilter(rng.integers(-1000, 1000, (3, P.NUM_FEATURES)), 7)
    payload = P.pack(pf)
    back = P.unpack(payload)
    assert back.fraction_bits == 7 and np.array_equal(back.taps, pf.taps)
    small = P.pack(P.PostFilter(rng.integers(-2, 3, (3, P.NUM_FEATURES)), 8))
    assert len(small) < len(payload)  # the code order follows the taps' size
    bad = {
        "truncated": payload[:-3],
        "empty": b"",
        "unknown shape": bytes([7]) + payload[1:],
        "scale": payload[:1] + bytes([0]) + payload[2:],
        "finer scale than exactness allows": payload[:1] + bytes([P.MAX_FRACTION_BITS + 1]) + payload[2:],
        "tap out of range": P.pack(P.PostFilter(np.full((3, P.NUM_FEATURES), P.MAX_TAP), 8)),
        "trailing": payload + b"\x00",
        "all ones": payload[:3] + b"\xff" * 8,
    }
    for what, data in bad.items():
        with pytest.raises(BitstreamError):
            P.unpack(data)
        assert what


@pytest.fixture(scope="module")
def codecs():
    return {"wavelet": WaveletCodec(weights="random", config=WaveletConfig.tiny(), device="cpu"),
            "hybrid": HybridCodec(weights="random", config=HybridConfig.tiny(), device="cpu")}


@pytest.mark.parametrize("name", ["wavelet", "hybrid"])
def test_codecs_flag_the_filter_and_decode_it_exactly(codecs, photo, name):
    codec = codecs[name]
    image = photo[:64, :96]
    on = codec.encode(image, postfilter="on")
    off = codec.encode(image, postfilter="off")
    auto = codec.encode(image)
    assert on.params["postfilter"] == "on" and P.SECTION in on.sections
    assert off.params["postfilter"] == "off" and P.SECTION not in off.sections
    # The picture before the filter stays visible: the hybrid's refined (or base + residual)
    # intermediate is it, the wavelet codec's gets its own name.
    before = on.intermediates["before_postfilter" if name == "wavelet" else "base_plus_residual"]
    assert np.array_equal(before, off.image)
    assert ("before_postfilter" in on.intermediates) == (name == "wavelet")
    kept = auto.params["postfilter"]
    assert auto.bitstream == {"on": on, "off": off}[kept].bitstream
    if kept == "on":  # auto keeps it only where it lowers the error
        assert ((on.image.astype(int) - image) ** 2).sum() < ((off.image.astype(int) - image) ** 2).sum()
    assert on.info["postfilter_bytes"] == len(on.sections[P.SECTION])
    for enc in (on, off):
        dec = codec.decode(enc.bitstream)
        assert np.array_equal(dec.image, enc.image) and dec.params["postfilter"] == enc.params["postfilter"]

    # Flag and section must agree, both ways.
    c = container.unpack(on.bitstream)
    stripped = dataclasses.replace(c, sections={k: v for k, v in c.sections.items() if k != P.SECTION})
    with pytest.raises(BitstreamError, match="postfilter"):
        codec.decode(container.pack(stripped))
    o = container.unpack(off.bitstream)
    grafted = dataclasses.replace(o, sections={**o.sections, P.SECTION: on.sections[P.SECTION]})
    with pytest.raises(BitstreamError, match="postfilter"):
        codec.decode(container.pack(grafted))
    # A file written before the post-filter existed (no such parameter) decodes as it did.
    old = dataclasses.replace(o, params={k: v for k, v in o.params.items() if k != "postfilter"})
    assert np.array_equal(codec.decode(container.pack(old)).image, off.image)


def test_the_ceiling_is_post_filtered_as_the_codec_would(codecs, photo):
    codec = codecs["wavelet"]
    image = photo[:64, :96]
    raw = codec.unquantized(image, postfilter="off")
    kept = codec.unquantized(image)
    assert np.array_equal(kept, P.choose(image, raw, coded_bytes=float("inf"))[1])
