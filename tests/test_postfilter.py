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


def _classes(image: np.ndarray, count: int) -> np.ndarray:
    """The activity classes from their definition, with scipy's filters and a full sort."""
    from scipy import ndimage

    luma = image.astype(np.int64) @ np.array([1, 2, 1])
    lap = sum(np.abs(ndimage.correlate1d(luma, [-1, 2, -1], axis=a, mode="nearest")) for a in (0, 1))
    act = ndimage.correlate(lap, np.ones((5, 5), dtype=np.int64), mode="nearest")
    ranked = np.sort(act.reshape(-1))
    bounds = [ranked[i * ranked.size // count] for i in range(1, count)]
    return sum((act >= b).astype(np.int64) for b in bounds) if bounds else np.zeros_like(act)


def _directions(image: np.ndarray) -> np.ndarray:
    """The directions from their definition (docs/FORMAT.md), with scipy's filters."""
    from scipy import ndimage

    luma = image.astype(np.int64) @ np.array([1, 2, 1])
    second = [np.abs(ndimage.correlate(luma, np.array(k), mode="nearest"))
              for k in ([[-1, 2, -1]], [[-1], [2], [-1]], [[-1, 0, 0], [0, 2, 0], [0, 0, -1]],
                        [[0, 0, -1], [0, 2, 0], [-1, 0, 0]])]
    h, v, d, a = (ndimage.correlate(x, np.ones((5, 5), dtype=np.int64), mode="nearest") + 1 for x in second)
    out = np.zeros(luma.shape, dtype=np.int64)
    for i, j in np.ndindex(*luma.shape):
        hv = (max(h[i, j], v[i, j]), min(h[i, j], v[i, j]))
        dg = (max(d[i, j], a[i, j]), min(d[i, j], a[i, j]))
        if hv[0] * dg[1] >= dg[0] * hv[1]:
            out[i, j] = 1 if h[i, j] > 2 * v[i, j] else 2 if v[i, j] > 2 * h[i, j] else 0
        else:
            out[i, j] = 3 if d[i, j] > 2 * a[i, j] else 4 if a[i, j] > 2 * d[i, j] else 0
    return out


def _direct(decoded: np.ndarray, pf: P.PostFilter, guides=()) -> np.ndarray:
    """The filter written out in int64 from its definition, pixel sums and all: each class's
    filter on the whole picture, each pixel taken from its class's."""
    r, f, each = pf.radius, pf.fraction_bits, P.per_channel(pf.radius)
    h, w = decoded.shape[:2]
    pad = np.pad(decoded.astype(np.int64), ((r, r), (r, r), (0, 0)), mode="edge")
    cls = _classes(decoded, pf.classes) * pf.directions + (_directions(decoded) if pf.directions > 1 else 0)
    luma = pad @ np.array([1, 2, 1])
    clipped = [np.clip(luma[r + dy:r + dy + h, r + dx:r + dx + w] - luma[r:r + h, r:r + w], -pf.clip, pf.clip)
               + np.clip(luma[r - dy:r - dy + h, r - dx:r - dx + w] - luma[r:r + h, r:r + w], -pf.clip, pf.clip)
               for dy, dx in P.pairs(r)] if pf.clip else []
    out = np.empty(decoded.shape, dtype=np.int64)
    for k, class_taps in enumerate(pf.taps):
        for c in range(3):
            acc = decoded[..., c].astype(np.int64) * (1 << f) + class_taps[c, -1]
            for ci in range(3):
                taps = class_taps[c, ci * each:(ci + 1) * each]
                centre = pad[r:r + h, r:r + w, ci]
                acc = acc + taps[0] * (centre - 128)
                for (dy, dx), t in zip(P.pairs(r), taps[1:]):
                    pair = pad[r + dy:r + dy + h, r + dx:r + dx + w, ci] + pad[r - dy:r - dy + h, r - dx:r - dx + w, ci]
                    acc = acc + t * (pair - 2 * centre)
            for j, difference in enumerate(clipped):
                acc = acc + class_taps[c, 3 * each + j] * difference
            for g, guide in enumerate(guides):
                for ci in range(3):
                    t = class_taps[c, 3 * each + len(clipped) + 3 * g + ci]
                    acc = acc + t * (guide[..., ci].astype(np.int64) - decoded[..., ci])
            out[..., c] = np.where(cls == k, np.clip((acc + (1 << (f - 1))) >> f, 0, 255), out[..., c])
    return out.astype(np.uint8)


@pytest.mark.parametrize("h, w, bound, block, classes, radius, directions",
                         [(1, 1, 300, 1 << 15, 1, P.RADIUS, 1), (7, 150, 4000, 1 << 15, 1, P.RADIUS, 1),
                          (131, 67, P.MAX_TAP - 1, 1 << 15, 1, P.RADIUS, 1), (131, 67, 4000, 500, 1, P.RADIUS, 1),
                          (1, 1, 300, 1 << 15, 3, P.RADIUS, 1), (131, 67, 4000, 500, 4, P.RADIUS, 1),
                          (40, 57, P.MAX_TAP - 1, 1 << 15, P.MAX_CLASSES, P.RADIUS, 1),
                          (40, 57, 4000, 500, 3, P.OLD_RADIUS, 1), (9, 13, 4000, 1 << 15, 2, 1, 1),
                          (40, 57, P.MAX_TAP - 1, 500, 2, P.MAX_RADIUS, 1),
                          (1, 1, 300, 1 << 15, 1, P.RADIUS, P.DIRECTIONS),
                          (40, 57, 4000, 500, 3, P.RADIUS, P.DIRECTIONS),
                          (40, 57, P.MAX_TAP - 1, 1 << 15, P.MAX_CLASSES, P.RADIUS, P.DIRECTIONS)])
@pytest.mark.parametrize("guides, clip", [(0, 0), (2, 0), (0, P.CLIP), (2, 255)])
def test_apply_is_the_integer_filter_exactly(rng, monkeypatch, h, w, bound, block, classes, radius, directions,
                                             guides, clip):
    monkeypatch.setattr(P, "_PIXELS_PER_BLOCK", block)  # 500: bands of 7 rows
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    image[: h // 2] //= 16  # a flatter half, so that the classes differ
    image[h // 2:, : w // 2, 1] = (np.arange(w // 2) % 5 * 60).astype(np.uint8)  # stripes: directions
    pictures = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(guides + 1)]  # one unused
    features = P.num_features(radius, guides, clip)
    pf = P.PostFilter(rng.integers(-bound, bound + 1, (classes * directions, 3, features)), 8, radius, guides, clip,
                      directions)
    assert np.array_equal(P.apply(image, pf, pictures), _direct(image, pf, pictures[:guides]))
    # The largest sums the format allows: every tap at its bound, on the most extreme pixels.
    extreme = np.where(rng.random((h, w, 3)) < 0.5, 0, 255).astype(np.uint8)
    opposite = [255 - extreme] * (guides + 1)
    worst = P.PostFilter(np.full((classes * directions, 3, features), -(P.MAX_TAP - 1)), P.MAX_FRACTION_BITS, radius,
                         guides, clip, directions)
    assert np.array_equal(P.apply(extreme, worst, opposite), _direct(extreme, worst, opposite[:guides]))
    identity = P.PostFilter(np.zeros((classes * directions, 3, features), dtype=np.int64), 8, radius, guides, clip,
                            directions)
    assert np.array_equal(P.apply(image, identity, pictures), image)
    if guides:
        with pytest.raises(BitstreamError, match="guide"):
            P.apply(image, pf, pictures[:guides - 1])


@pytest.mark.parametrize("fits_float32", [True, False], ids=["float32", "float64"])
def test_filters_either_side_of_float32s_limit_are_exact(rng, monkeypatch, fits_float32):
    """The filter runs in float32 where its sums cannot reach 2^24: the taps of one pattern,
    scaled to the largest whose bound is below 2^24 and to the next, run in float32 and in
    float64, and both give the integer filter's picture."""
    radius, guides, clip = P.RADIUS, 2, P.CLIP
    pattern = rng.integers(-1000, 1001, (3, 3, P.num_features(radius, guides, clip)))

    def bound(scale: int) -> float:
        pf = P.PostFilter(pattern * scale // 1000, 8, radius, guides, clip)
        return float(np.max(np.abs(P._raw_weights(pf)) @ P._largest_features(radius, guides, clip)))

    low, high = 1, 1 << 20  # bound(low) < 2^24 <= bound(high)
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (mid, high) if bound(mid) < 1 << 24 else (low, mid)
    pf = P.PostFilter(pattern * (low if fits_float32 else high) // 1000, 8, radius, guides, clip)
    dtypes = []
    real = P._bands
    monkeypatch.setattr(P, "_bands", lambda *a, **k: (dtypes.append(k.get("dtype")), real(*a, **k))[1])
    image = np.where(rng.random((40, 57, 3)) < 0.5, 0, 255).astype(np.uint8)
    opposite = [255 - image, image // 2]
    assert np.array_equal(P.apply(image, pf, opposite), _direct(image, pf, opposite))
    assert dtypes == [np.float32 if fits_float32 else np.float64]


def test_activity_classes_follow_their_definition_and_nest(photo, rng):
    flat = np.full((9, 11, 3), 77, dtype=np.uint8)
    assert len(np.unique(P.activity_classes(flat, 4))) == 1  # all tied: one class
    for image in (photo, rng.integers(0, 256, (23, 31, 3), dtype=np.uint8)):
        for count in range(1, P.MAX_CLASSES + 1):
            cls = P.activity_classes(image, count)
            assert cls.dtype == np.uint8 and np.array_equal(cls, _classes(image, count))
        sizes = np.bincount(P.activity_classes(photo, 4).reshape(-1), minlength=4)
        assert sizes.min() > 0.2 * photo.shape[0] * photo.shape[1]  # about a quarter each
        # The encoder fits every count it tries from the fine classes' sums: each count's
        # classes are unions of consecutive fine ones.
        fine = P.activity_classes(image, P._FINE_CLASSES).astype(int)
        for count in P.CLASS_COUNTS:
            assert np.array_equal(P.activity_classes(image, count), fine * count // P._FINE_CLASSES)


def test_directions_follow_their_definition(photo, rng):
    stripes = np.zeros((30, 40, 3), dtype=np.uint8)
    stripes[:, :20] = (np.arange(20) % 4 * 80)[None, :, None]  # vertical stripes: rows vary most
    stripes[:, 20:] = (np.add.outer(np.arange(30), np.arange(20)) % 4 * 80)[..., None]  # diagonal ones
    for image in (photo[:48, :64], rng.integers(0, 256, (23, 31, 3), dtype=np.uint8), stripes):
        directions = P.direction_classes(image)
        assert directions.dtype == np.uint8 and np.array_equal(directions, _directions(image))
        for classes in (1, 3):
            assert np.array_equal(P.filter_classes(image, classes, P.DIRECTIONS),
                                  P.activity_classes(image, classes) * P.DIRECTIONS + directions)
        assert np.array_equal(P.filter_classes(image, 3), P.activity_classes(image, 3))
        # The encoder fits every filter it tries from its fine classes' sums: each filter's
        # pixels are a union of fine classes.
        fine = P._fine_classes(image)
        for classes in P.CLASS_COUNTS:
            for count in (1, P.DIRECTIONS):
                pf = P.PostFilter(np.zeros((classes * count, 3, P.NUM_FEATURES)), directions=count)
                assert np.array_equal(P._coarse(fine, pf), P.filter_classes(image, classes, count))
    counts = np.bincount(P.direction_classes(stripes).reshape(-1), minlength=P.DIRECTIONS)
    assert counts[1] > 0 and counts[3] + counts[4] > 0
    # The largest sums the definition allows (alternating black and white rows) stay exact.
    extreme = np.zeros((12, 12, 3), dtype=np.uint8)
    extreme[::2] = 255
    assert np.array_equal(P.direction_classes(extreme), _directions(extreme))


def test_directions_undo_what_differs_between_orientations(monkeypatch):
    """Vertical stripes blurred across, diagonal ones sharpened across: no filter undoes both
    (the first want the rows sharpened, the second blurred), one per direction does, and the
    encoder picks directions."""
    rng = np.random.default_rng(1)
    h, w = 96, 128
    yy, xx = np.mgrid[0:h, 0:w]
    scene = np.where(xx < w // 2, np.sin(2 * np.pi * xx / 7), np.sin(2 * np.pi * (xx + yy) / 7))
    original = np.clip(np.round(128 + 60 * scene[..., None] + rng.normal(0, 3, (h, w, 3))), 0, 255).astype(np.uint8)
    x = original.astype(np.float64)
    across = np.roll(x, 1, 1) + np.roll(x, -1, 1)
    degraded = np.where((xx < w // 2)[..., None], (2 * x + across) / 4, x + 0.5 * (2 * x - across))
    degraded = np.clip(np.round(degraded), 0, 255).astype(np.uint8)

    def error(a):
        return float(np.sum((a.astype(np.float64) - original) ** 2))

    payload, picture = P.choose(original, degraded, coded_bytes=20_000)
    assert P.unpack(payload).directions == P.DIRECTIONS
    assert np.array_equal(P.apply(degraded, P.unpack(payload)), picture)
    monkeypatch.setattr(P, "DIRECTION_CLASS_COUNTS", ())
    _, undirected = P.choose(original, degraded, coded_bytes=20_000)
    assert error(picture) < 0.9 * error(undirected) < 0.1 * error(degraded)


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
    assert chosen is not None and psnr(chosen[1]) >= psnr(filtered) - 0.01
    assert np.array_equal(chosen[1], P.apply(degraded, P.unpack(chosen[0])))
    assert P.choose(photo, photo, coded_bytes=20_000) is None  # nothing to gain
    assert P.choose(photo, photo, coded_bytes=20_000, force=True) is not None
    # The same gain does not pay for its bytes in a 40-byte file, unless forced.
    assert P.choose(photo, degraded, coded_bytes=40) is None
    assert P.choose(photo, degraded, coded_bytes=40, force=True) is not None
    monkeypatch.setattr(P, "_PIXELS_PER_BLOCK", 300)  # bands of 2 rows: the same sums
    np.testing.assert_allclose(P.fit(photo, degraded), taps, rtol=1e-9, atol=1e-9)


def test_large_pictures_are_fitted_on_every_pixel_phase(rng, monkeypatch):
    """On large pictures the fit reads a quarter of the pixels, as many of each phase modulo 2
    in both directions: its sums are those of exactly these pixels, whatever the bands."""
    grid = np.array(P._FIT_GRID)
    assert sorted(grid[:, 0]) == list(range(P._FIT_STEP)) and sorted(grid[:, 1]) == list(range(P._FIT_STEP))
    assert sorted(map(tuple, grid % 2)) == [(0, 0), (0, 1), (1, 0), (1, 1)]
    h, w = 259, 263  # above the size that is sampled, and not a multiple of the step
    assert h * w >= P._FIT_SUBSAMPLE_FROM
    decoded = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    original = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    guide = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    cls = P.activity_classes(decoded, 3)
    monkeypatch.setattr(P, "_PIXELS_PER_BLOCK", 3000)  # several bands
    sums = P._sums(original, decoded, cls, 3, P.RADIUS, (guide,), P.CLIP)
    ys, xs = np.mgrid[0:h, 0:w]
    chosen = np.zeros((h, w), dtype=bool)
    for oy, ox in P._FIT_GRID:
        chosen |= (ys % P._FIT_STEP == oy) & (xs % P._FIT_STEP == ox)
    assert abs(chosen.mean() - 1 / P._FIT_STEP) < 0.01
    # Every pixel's features, row by row (the bands are whole rows), masked below.
    every = np.concatenate([a for _, a in P._bands(decoded, P.RADIUS, (guide,), P.CLIP)], axis=1).astype(np.int64)
    to_taps = P._raw_to_taps(P.RADIUS, 1, P.CLIP)
    target = (original.astype(np.int64) - decoded).reshape(-1, 3)
    # Integer sums: the fit's float64 ones must be these exactly, whatever order it sums in.
    for c in range(3):
        mask = (chosen & (cls == c)).reshape(-1)
        a = to_taps @ every[:, mask]
        np.testing.assert_array_equal(sums.gram[c], a @ a.T)
        np.testing.assert_array_equal(sums.rhs[c], a @ target[mask])
        assert sums.energy[c] == np.sum(target[mask] ** 2) and sums.count[c] == np.sum(mask)
    assert sums.share == len(P._FIT_GRID) / P._FIT_STEP ** 2  # the rest of the picture unseen by the fit


def test_predicted_error_counts_the_fits_optimism_on_unseen_pixels(rng):
    """Least squares fitted on a quarter of the pixels leave more error on the other three
    quarters, by (n + p) / (n − p) in expectation; a class with no more pixels than taps is not
    trusted at all."""
    p = P.NUM_FEATURES
    gram, rhs, energy = np.stack([4.0 * np.eye(p)] * 2), rng.normal(size=(2, p, 3)), np.array([1000.0, 1000.0])
    pf = P.quantize(P._solve(P._Sums(gram, rhs, energy, np.array([500, 500]))), 8)
    seen = P._predicted_energy(P._Sums(gram, rhs, energy, np.array([500, 500]), 1.0), pf)
    quarter = P._predicted_energy(P._Sums(gram, rhs, energy, np.array([500, 500]), 0.25), pf)
    assert 0 < seen < energy.sum() and quarter == pytest.approx(seen * (0.25 + 0.75 * (500 + p) / (500 - p)))
    assert P._predicted_energy(P._Sums(gram, rhs, energy, np.array([500, p]), 0.25), pf) == energy.sum()
    assert P._predicted_energy(P._Sums(gram, rhs, energy, np.array([500, p]), 1.0), pf) == seen


def test_classes_undo_what_differs_between_flat_and_busy_areas(photo):
    """Busy and flat areas given opposite colour casts: no single linear filter undoes both,
    one per activity class does, and the encoder picks several classes when their taps pay."""
    x = photo.astype(np.float64)
    cast = x @ np.array([[0.9, 0.05, 0.0], [0.05, 0.95, 0.0], [0.0, 0.1, 0.85]]).T + 6
    other = x @ np.array([[1.05, -0.05, 0.0], [0.0, 1.0, 0.05], [0.1, 0.0, 0.95]]).T - 8
    busy = P.activity_classes(photo, 2)[..., None] == 1
    degraded = np.clip(np.round(np.where(busy, other, cast)), 0, 255).astype(np.uint8)

    def error(a):
        return float(np.sum((a.astype(np.float64) - photo) ** 2))

    one = P.apply(degraded, P.quantize(P.fit(photo, degraded)))
    two = P.apply(degraded, P.quantize(P.fit(photo, degraded, classes=2)))
    assert error(two) < 0.5 * error(one) < 0.5 * error(degraded)
    payload, picture = P.choose(photo, degraded, coded_bytes=50_000)
    assert P.unpack(payload).classes > 1 and error(picture) <= error(two)


def test_guides_bring_back_what_the_decoder_had(photo, rng):
    """A guide holding what the decoded picture lost (here half of it) is worth its taps: the
    encoder uses as many guides as it needs, first ones first, and the decoder, given the same
    guides, makes the same picture."""
    x = photo.astype(np.float64)
    blurred = (x + np.roll(x, 1, 0) + np.roll(x, -1, 0) + np.roll(x, 1, 1) + np.roll(x, -1, 1)) / 5
    decoded = np.clip(np.round(blurred), 0, 255).astype(np.uint8)
    halfway = np.clip(np.round((x + decoded) / 2), 0, 255).astype(np.uint8)
    noise = rng.integers(0, 256, photo.shape, dtype=np.uint8)

    def error(a):
        return float(np.sum((a.astype(np.float64) - photo) ** 2))

    plain = P.choose(photo, decoded, coded_bytes=50_000)
    for guides, used in (((halfway,), 1), ((noise, halfway), 2)):
        payload, picture = P.choose(photo, decoded, coded_bytes=50_000, guides=guides)
        pf = P.unpack(payload)
        assert pf.guides == used and error(picture) < 0.2 * error(plain[1])
        assert np.array_equal(P.apply(decoded, pf, guides), picture)
    _, picture = P.choose(photo, decoded, coded_bytes=50_000, guides=(noise,))
    assert abs(error(picture) / error(plain[1]) - 1) < 0.01  # a useless guide gains nothing


def test_clipped_differences_smooth_without_blurring_edges(photo, rng, monkeypatch):
    """Noise on a photograph: a linear filter must trade the noise it removes in flat areas for
    the edges it blurs; clipped luma differences tell the two apart, so the encoder uses them and
    gets closer to the original than the best linear filter."""
    noisy = np.clip(photo + rng.normal(0, 8, photo.shape).round(), 0, 255).astype(np.uint8)

    def error(a):
        return float(np.sum((a.astype(np.float64) - photo) ** 2))

    payload, picture = P.choose(photo, noisy, coded_bytes=50_000)
    assert P.unpack(payload).clip == P.CLIP
    assert np.array_equal(P.apply(noisy, P.unpack(payload)), picture)
    monkeypatch.setattr(P, "CLIP", 0)  # the linear filters alone
    linear_payload, linear = P.choose(photo, noisy, coded_bytes=50_000)
    assert P.unpack(linear_payload).clip == 0
    assert error(picture) < 0.95 * error(linear) < 0.9 * error(noisy)


def test_section_round_trip_and_malformed_payloads(rng):
    pf = P.PostFilter(rng.integers(-1000, 1000, (3, P.NUM_FEATURES)), 7)
    payload = P.pack(pf)
    back = P.unpack(payload)
    assert back.fraction_bits == 7 and np.array_equal(back.taps, pf.taps)
    small = P.pack(P.PostFilter(rng.integers(-2, 3, (3, P.NUM_FEATURES)), 8))
    assert len(small) < len(payload)  # the code order follows the taps' size
    for taps in (pf, P.PostFilter(np.zeros((2, 3, P.NUM_FEATURES))), P.PostFilter(rng.integers(-2, 3, (3, P.NUM_FEATURES)))):
        assert P._payload_bytes(taps) == len(P.pack(taps))  # what the encoder's choice counts
    classed = P.PostFilter(rng.integers(-1000, 1000, (5, 3, P.NUM_FEATURES)), 8)
    many = P.pack(classed)
    assert many[0] == payload[0] == P.SHAPE_DIRECTIONS and payload[3] == 1
    assert many[3:8] == bytes([5, P.RADIUS, 0, 0, 1])  # classes, radius, guides, clip, directions
    assert np.array_equal(P.unpack(many).taps, classed.taps)
    directional = P.PostFilter(rng.integers(-1000, 1000, (3 * P.DIRECTIONS, 3, P.NUM_FEATURES)), 8,
                               directions=P.DIRECTIONS)
    back = P.unpack(P.pack(directional))
    assert (back.classes, back.directions, back.filters) == (3, P.DIRECTIONS, 3 * P.DIRECTIONS)
    assert np.array_equal(back.taps, directional.taps)
    guided = P.PostFilter(rng.integers(-1000, 1000, (2, 3, P.num_features(2, 3, 40))), 9, radius=2, guides=3, clip=40)
    back = P.unpack(P.pack(guided))
    assert (back.radius, back.guides, back.fraction_bits, back.clip) == (2, 3, 9, 40)
    assert np.array_equal(back.taps, guided.taps)
    # Shapes 1 and 2, written before the radius and the guides were sent: the same codes,
    # radius 2, no guides; shape 3, written before the clipped differences: no clip.
    for classes, shape, radius in ((1, P.SHAPE_ONE, P.OLD_RADIUS), (4, P.SHAPE_CLASSES, P.OLD_RADIUS),
                                   (3, P.SHAPE_LAYOUT, P.RADIUS)):
        old = P.PostFilter(rng.integers(-1000, 1000, (classes, 3, P.num_features(radius, 1 if shape == 3 else 0))),
                           8, radius, 1 if shape == P.SHAPE_LAYOUT else 0)
        new = P.pack(old)
        layout = {P.SHAPE_ONE: b"", P.SHAPE_CLASSES: bytes([classes]), P.SHAPE_LAYOUT: new[3:6]}[shape]
        back = P.unpack(bytes([shape]) + new[1:3] + layout + new[8:])
        assert (back.radius, back.guides, back.clip) == (radius, old.guides, 0) and np.array_equal(back.taps, old.taps)
    # Shape 4, written before the directions: one direction.
    old = P.PostFilter(rng.integers(-1000, 1000, (2, 3, P.num_features(P.RADIUS, 1, P.CLIP))), 8, guides=1, clip=P.CLIP)
    new = P.pack(old)
    back = P.unpack(bytes([P.SHAPE_CLIPPED]) + new[1:7] + new[8:])
    assert (back.classes, back.directions, back.guides, back.clip) == (2, 1, 1, P.CLIP)
    assert np.array_equal(back.taps, old.taps)
    shape2 = bytes([P.SHAPE_CLASSES]) + many[1:3] + bytes([5]) + many[8:]
    clipped = P.pack(P.PostFilter(rng.integers(-1000, 1000, (2, 3, P.num_features(P.RADIUS, 0, P.CLIP))), 8,
                                  clip=P.CLIP))
    bad = {
        "truncated": payload[:-3],
        "empty": b"",
        "unknown shape": bytes([7]) + payload[1:],
        "scale": payload[:1] + bytes([0]) + payload[2:],
        "finer scale than exactness allows": payload[:1] + bytes([P.MAX_FRACTION_BITS + 1]) + payload[2:],
        "tap out of range": P.pack(P.PostFilter(np.full((3, P.NUM_FEATURES), P.MAX_TAP), 8)),
        "trailing": payload + b"\x00",
        "all ones": payload[:3] + b"\xff" * 8,
        "classes cut off": many[:3],
        "radius cut off": many[:4],
        "guides cut off": many[:5],
        "clip cut off": many[:6],
        "clip where the taps have none": many[:6] + bytes([P.CLIP]) + many[7:],
        "no clip where the taps have one": clipped[:6] + bytes([0]) + clipped[7:],
        "shape 3 of clipped taps": bytes([P.SHAPE_LAYOUT]) + clipped[1:6] + clipped[8:],
        "directions cut off": many[:7],
        "no directions": many[:7] + bytes([0]) + many[8:],
        "two directions": many[:7] + bytes([2]) + many[8:],
        "directions the taps do not have": many[:7] + bytes([P.DIRECTIONS]) + many[8:],
        "no directions where the taps have them": P.pack(directional)[:7] + bytes([1]) + P.pack(directional)[8:],
        "shape 4 of directional taps": bytes([P.SHAPE_CLIPPED]) + P.pack(directional)[1:7] + P.pack(directional)[8:],
        "no classes": many[:3] + bytes([0]) + many[4:],
        "too many classes": many[:3] + bytes([P.MAX_CLASSES + 1]) + many[4:],
        "fewer classes than taps": many[:3] + bytes([4]) + many[4:],
        "more classes than taps": many[:3] + bytes([6]) + many[4:],
        "no radius": many[:4] + bytes([0]) + many[5:],
        "too large a radius": many[:4] + bytes([P.MAX_RADIUS + 1]) + many[5:],
        "smaller radius than taps": many[:4] + bytes([P.RADIUS - 1]) + many[5:],
        "too many guides": many[:5] + bytes([P.MAX_GUIDES + 1]) + many[6:],
        "more guides than taps": many[:5] + bytes([1]) + many[6:],
        "one class as shape 2": shape2[:3] + bytes([1]) + shape2[4:],
        "shape 2 of radius-3 taps": shape2,
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
    assert on.info["postfilter"] == P.describe(P.unpack(on.sections[P.SECTION])) and "postfilter" not in off.info
    for enc in (on, off):
        dec = codec.decode(enc.bitstream)
        assert np.array_equal(dec.image, enc.image) and dec.params["postfilter"] == enc.params["postfilter"]
        assert dec.info.get("postfilter") == enc.info.get("postfilter")

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
