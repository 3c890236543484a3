"""Content-adaptive post-filter: a per-image Wiener filter whose taps the encoder sends.

A learned decoder is trained to be right on average over its training crops; on one image its
output still carries a linear, image-specific error (a colour cast, too much or too little
sharpening, ringing of one orientation). The encoder sees both the original and the decoded
picture, so it solves for the cross-channel linear filter of a small window that minimises the
squared error, quantises its taps and writes them into the file; the decoder applies them. It
is the adaptive loop filter of VVC in its simplest form, for one image rather than per block.

Every output channel c is the decoded channel plus a correction::

    out_c = dec_c + Σ_c' a[c, c'] · (dec_c' − 128) + Σ_{c', k} w[c, c', k] · D_k(dec_c')
                  + Σ_k u[c, k] · C_k(Y) + Σ_{g, c'} v[c, g, c'] · (guide_g,c' − dec_c') + b_c

a colour matrix on the centred pixel and, for each point-symmetric pair of offsets {d, −d} of a
diamond |dy| + |dx| ≤ r (r = 3, 25 pixels: VVC's luma filter is a diamond of radius 3, too), a
tap on the second difference
``D_k(x)(p) = x(p+d) + x(p−d) − 2 x(p)``, which is zero wherever the picture is flat or linear.
Coding the filter in these terms rather than as raw window taps spans the same filters but keeps
their quantisation error off smooth areas (a raw tap's rounding error multiplies the pixel value
itself). ``C_k(Y)(p) = clip(Y(p+d) − Y(p)) + clip(Y(p−d) − Y(p))``, the pair's differences of
luma Y = R + 2G + B clipped to ±c, is VVC's non-linear loop filter: a neighbour across an edge
counts no more than one a little brighter, so the filter can smooth noise and ringing without
blurring the edges they sit on, which no linear filter can. Guides are other pictures the decoder
has made on its way to ``dec``, which the codec names (the hybrid's JPEG base and, where the
refinement filter ran, its picture before it): a tap on each guide's difference from the decoded
picture lets the encoder take back, per image and per channel, part of what the decoder's last
stages did (the refinement filter too strong or too weak on this picture, say). As in VVC, a
pixel takes the filter of its class, which the decoded picture alone decides: its rank by local
activity among the picture's pixels and, where the file asks for it, its direction (which of
the horizontal, vertical and diagonal second differences dominate around it), so that flat,
busy and oriented areas each get the filter they need. The taps are
integers at a scale of 2^F; the decoder applies them to the 8-bit decoded image with floating-point
arithmetic on integer values, where every product and partial sum is an integer small enough to be
exact, hence exact in any order of summation: the filtered picture is identical wherever it is
decoded. The sum of each tap's magnitude times its feature's largest bounds every partial sum; where
it is below 2^24 (every filter the encoder chose on Kodak: at most 2^21.3) the filter runs in
float32, about twice as fast, and otherwise in float64, exact for every filter the format allows
(below 2^53). Both give the same picture, so the choice is not written in the file.

Section payload (``postfilter``): ``shape u8 | F u8 | k u8``, with shape 5 ``classes u8 |
radius u8 | guides u8 | clip u8 | directions u8`` more (shape 4: no ``directions``, one; shape
3: no ``clip`` either, none; shape 2: ``classes u8``, radius 2, no guides; shape 1: one class,
radius 2, no guides; all written before shape 5 existed), then for each activity class, each
direction and each output channel ``num_features(radius, guides, clip)``
Exp-Golomb-k codes of zigzag-mapped integers (per input channel its colour tap and its pair
taps, then where ``clip`` (not 0) one tap per pair on the clipped luma differences, then per
guide its three channels' taps, then the offset), zero-padded to a byte.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import numpy as np
from scipy.linalg.blas import dsyrk

from . import container
from .errors import BitstreamError
from .metrics import squared_error

__all__ = ["SECTION", "PostFilter", "rate_cost_db", "activity_classes", "direction_classes", "filter_classes", "pairs",
           "num_features", "fit", "apply", "pack", "unpack", "choose", "describe"]

SECTION = "postfilter"
SHAPE_ONE = 1  # one filter for the whole picture, radius 2 (read, no longer written)
SHAPE_CLASSES = 2  # one filter per activity class, radius 2 (read, no longer written)
SHAPE_LAYOUT = 3  # shape 4 without its clipped differences (read, no longer written)
SHAPE_CLIPPED = 4  # shape 5 with one direction (read, no longer written)
SHAPE_DIRECTIONS = 5  # one filter per activity class and direction; radius, guides, clip, directions given
OLD_RADIUS = 2  # the radius of shapes 1 and 2
MAX_GUIDES = 4
# The clip of the encoder's clipped luma differences (after VVC's non-linear adaptive loop
# filter): a neighbour whose luma R + 2G + B differs from the pixel's by more than this is
# across an edge and counts no more than one that differs by this much. On Kodak pictures of
# both codecs 32 gains about 0.07 to 0.09 dB net of the taps' bytes over linear taps alone (16
# and 64 a little less); clipped differences of each colour channel gain about as much for
# three times the taps and the work.
CLIP = 32
MAX_CLASSES = 16
# The class counts the encoder tries. All divide _FINE_CLASSES, so every one of them is a union
# of consecutive fine classes and one pass of sums over the fine classes fits them all.
CLASS_COUNTS = (1, 2, 3, 4, 6)
_FINE_CLASSES = 12
# Besides its activity class a pixel may have a direction (:func:`direction_classes`, after
# VVC's adaptive loop filter): none, or which of the horizontal, vertical and two diagonal
# second differences dominate around it, each with a filter of its own. On 6 training images
# (scripts/postfilter_directions.py, results/tuning/postfilter-directions.json) they add
# 0.093 dB net of their bytes to the hybrid's files, 0.013 dB to the wavelet codec's; their
# taps pay where edges and textures of one orientation dominate (a building's facade) and not
# elsewhere, so the encoder tries filters with and without them. A direction dominates
# where its sum is more than DOMINANCE times the one across it (VVC's first threshold; 1.5
# and 3 gained a little less, as did telling weak from strong).
DIRECTIONS = 5
DIRECTION_CLASS_COUNTS = (1, 2, 3, 4)  # the activity class counts tried with directions
DOMINANCE = 2
ACTIVITY_WINDOW = 5
# The encoder's diamond: 25 pixels, 12 point-symmetric pairs around the centre. On Kodak
# pictures of both codecs it gains about 0.04 dB more than radius 2 net of its taps' bytes at
# every rate; radius 4 gains no more than it costs.
RADIUS = 3
MAX_RADIUS = 4
FRACTION_BITS = 8
# The taps' scales the encoder tries: finer taps cost more bytes; on Kodak pictures 2^8 is
# best most often, 2^7 on small files, 2^9 on large ones.
FRACTION_CHOICES = (7, 8, 9)
MAX_TAP = 1 << 20  # far beyond any useful tap; bounds every sum of a filter below 2^53
MAX_FRACTION_BITS = 16
RIDGE = 1e-6
# The rate a post-filter must pay for: the codecs here gain about 2 to 3 dB per doubling of
# the rate, so a filter is kept when its gain exceeds 3 dB per doubling of what it adds.
DB_PER_DOUBLING = 3.0


@functools.cache
def pairs(radius: int) -> tuple[tuple[int, int], ...]:
    """One offset d of each point-symmetric pair {d, -d} of the diamond |dy| + |dx| <= radius."""
    return tuple((dy, dx) for dy in range(-radius, radius + 1) for dx in range(-radius, radius + 1)
                 if (dy, dx) > (0, 0) and abs(dy) + abs(dx) <= radius)


def per_channel(radius: int) -> int:
    """Features per input channel: the centred pixel and one second difference per pair."""
    return 1 + len(pairs(radius))


def num_features(radius: int, guides: int = 0, clip: int = 0) -> int:
    """Features per output channel: three input channels', where ``clip`` one clipped luma
    difference per pair, three per guide, and the offset, last."""
    return 3 * per_channel(radius) + (len(pairs(radius)) if clip else 0) + 3 * guides + 1


NUM_FEATURES = num_features(RADIUS)


@dataclass(frozen=True)
class _Layout:
    """Where each group of features sits in a filter's feature vector (the raw features of
    :func:`_bands` and the taps' alike): per input channel c its centred pixel at
    ``centre(c)`` and its pairs at ``pairs(c)``, then the clipped luma differences, then the
    guides' three channels each, then the offset, last."""

    radius: int
    guides: int
    clip: int

    @property
    def each(self) -> int:
        return per_channel(self.radius)

    @property
    def count(self) -> int:
        return num_features(self.radius, self.guides, self.clip)

    def centre(self, c: int) -> int:
        return c * self.each

    def pairs(self, c: int) -> slice:
        return slice(c * self.each + 1, (c + 1) * self.each)

    @property
    def clipped(self) -> slice:
        start = 3 * self.each
        return slice(start, start + (len(pairs(self.radius)) if self.clip else 0))

    def guide(self, g: int) -> slice:
        start = self.clipped.stop + 3 * g
        return slice(start, start + 3)


# Design matrices are built a band of rows at a time, about this many pixels each (5 MB of
# features, which runs faster than twice or half that), whatever the image size.
_PIXELS_PER_BLOCK = 1 << 14
# On large images the fit reads a quarter of the pixels: in each 4×4 cell, one pixel of each
# row, at column offsets (0, 2, 1, 3), so that every pixel phase modulo 2 in both directions is
# read as often. Decoded pictures differ by phase (4:2:0 chroma, strided transforms): every
# other row and column, a quarter as well, fits the hybrid's pictures of Kodak 0.09 dB worse
# than all pixels; this grid 0.006 dB worse. Small images have too few pixels to spare.
_FIT_STEP = 4
_FIT_GRID = ((0, 0), (1, 2), (2, 1), (3, 3))
_FIT_SUBSAMPLE_FROM = 256 * 256


@dataclass(frozen=True)
class PostFilter:
    """Integer taps ``(classes · directions, 3, num_features(radius, guides, clip))`` at the
    scale ``2 ** fraction_bits`` (a ``(3, F)`` array is one filter), the filter of activity
    class a and direction d at ``a · directions + d``; ``clip`` 0: no clipped differences;
    ``directions`` 1 (none told apart) or :data:`DIRECTIONS`."""

    taps: np.ndarray
    fraction_bits: int = FRACTION_BITS
    radius: int = RADIUS
    guides: int = 0
    clip: int = 0
    directions: int = 1

    def __post_init__(self) -> None:
        taps = np.asarray(self.taps, dtype=np.int64)
        count = num_features(self.radius, self.guides, self.clip)
        if taps.shape[-1] != count:
            raise ValueError(f"a post-filter of radius {self.radius} with {self.guides} guides and clip "
                             f"{self.clip} has {count} taps a channel, not {taps.shape[-1]}")
        taps = taps.reshape(-1, 3, count)
        if self.directions not in (1, DIRECTIONS) or taps.shape[0] % self.directions:
            raise ValueError(f"{taps.shape[0]} filters do not make activity classes of {self.directions} "
                             f"directions (1 or {DIRECTIONS})")
        object.__setattr__(self, "taps", taps)

    @property
    def filters(self) -> int:
        return self.taps.shape[0]

    @property
    def classes(self) -> int:
        """The activity classes (each with ``directions`` filters)."""
        return self.taps.shape[0] // self.directions


def describe(pf: PostFilter) -> str:
    """The filter's shape in words, as ``lic-codec info`` and the studio show it."""
    def count(n: int, noun: str) -> str:
        return f"{n} {noun}" + ("" if n == 1 else "es" if noun.endswith("s") else "s")

    directions = f" x {pf.directions} directions" if pf.directions > 1 else ""
    taps = f"luma differences clipped to {pf.clip}" if pf.clip else "linear"
    return (f"{count(pf.classes, 'activity class')}{directions}, diamond of radius {pf.radius}, "
            f"{count(pf.guides, 'guide')}, {taps}")


def _second_differences(image: np.ndarray, diagonals: bool = False) -> list[np.ndarray]:
    """uint16 |2Y(p) − Y(p−d) − Y(p+d)| (at most 2040) of the luma Y = R + 2G + B for d a step
    right, down and, where ``diagonals``, down-right and down-left (the border repeated)."""
    luma = image[..., 0].astype(np.int16) + 2 * image[..., 1].astype(np.int16) + image[..., 2]
    p = np.pad(luma, 1, mode="edge")
    centre = 2 * p[1:-1, 1:-1]
    steps = [(p[1:-1, :-2], p[1:-1, 2:]), (p[:-2, 1:-1], p[2:, 1:-1])]
    if diagonals:
        steps += [(p[:-2, :-2], p[2:, 2:]), (p[:-2, 2:], p[2:, :-2])]
    return [np.abs(centre - before - after).view(np.uint16) for before, after in steps]


def _window_sum(values: np.ndarray) -> np.ndarray:
    """The sum over the 5×5 window (``ACTIVITY_WINDOW``) around each pixel, the border repeated,
    in the dtype of ``values`` (the caller's to choose wide enough)."""
    r = ACTIVITY_WINDOW // 2
    h, w = values.shape
    q = np.pad(values, r, mode="edge")
    rows = q[:, :w].copy()
    for dx in range(1, ACTIVITY_WINDOW):
        rows += q[:, dx:dx + w]
    out = rows[:h].copy()
    for dy in range(1, ACTIVITY_WINDOW):
        out += rows[dy:dy + h]
    return out


def activity(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` int32: the local activity of ``image``, the sum over a 5×5 window of the
    absolute horizontal and vertical second differences of its luma R + 2G + B (the border
    repeated); integers, so encoder and decoder compute the same values."""
    along_rows, along_columns = _second_differences(image)
    return _window_sum((along_rows + along_columns).astype(np.int32))


def activity_classes(image: np.ndarray, classes: int, act: np.ndarray | None = None) -> np.ndarray:
    """``(H, W)`` uint8: each pixel's class among ``classes`` of equal size by activity rank.
    The bounds are the activities at ranks ``i·n // classes``; a pixel's class is the number of
    bounds at or below its activity, so ties stay together. ``act``: the picture's
    :func:`activity`, where the caller has it."""
    if classes == 1:
        return np.zeros(image.shape[:2], dtype=np.uint8)
    act = activity(image) if act is None else act
    # The activity at rank r is the least value v with more than r activities at or below it:
    # a histogram finds every bound at once, faster than a partial sort.
    at_or_below = np.cumsum(np.bincount(act.reshape(-1)))
    ranks = [i * act.size // classes for i in range(1, classes)]
    bounds = np.searchsorted(at_or_below, ranks, side="right")
    # Each activity value's class, looked up: five times faster than a search per pixel.
    class_of = np.searchsorted(bounds, np.arange(at_or_below.size), side="right").astype(np.uint8)
    return class_of[act]


def _direction_sums(image: np.ndarray) -> list[np.ndarray]:
    """uint16 H, V, D and A of :func:`direction_classes` (without the one added there): the sums
    over each pixel's 5×5 window of its four absolute second differences, each below 2^16."""
    return [_window_sum(x) for x in _second_differences(image, diagonals=True)]


def direction_classes(image: np.ndarray, sums: Sequence[np.ndarray] | None = None) -> np.ndarray:
    """``(H, W)`` uint8: each pixel's direction, from the sums over its 5×5 window of the luma's
    absolute second differences (:func:`_second_differences`) plus one, H (along rows), V
    (along columns), D (down-right) and A (down-left): where max(H, V) / min(H, V) is at least
    max(D, A) / min(D, A), 1 if H > DOMINANCE · V, 2 if V > DOMINANCE · H, else 0; otherwise 3
    if D > DOMINANCE · A, 4 if A > DOMINANCE · D, else 0. In integers (each sum below 2^16,
    the ratios compared by cross products below 2^32), so encoder and decoder compute the same
    classes. ``sums``: the four uint16 sums, where the caller has them."""
    h, v, d, a = (x + 1 for x in (_direction_sums(image) if sums is None else sums))
    hv_high, hv_low = np.maximum(h, v), np.minimum(h, v)
    diag_high, diag_low = np.maximum(d, a), np.minimum(d, a)
    product = functools.partial(np.multiply, dtype=np.uint32)
    rows_or_columns = product(hv_high, diag_low) >= product(diag_high, hv_low)
    high, low, first = (np.where(rows_or_columns, x, y) for x, y in ((hv_high, diag_high), (hv_low, diag_low), (h, d)))
    dominant = high > product(low, DOMINANCE)
    # 1 or 3 where the first of the pair (H or D) dominates, 2 or 4 where the second does.
    out = np.where(first == high, np.uint8(1), np.uint8(2))
    out += np.where(rows_or_columns, np.uint8(0), np.uint8(2))
    out *= dominant
    return out


def filter_classes(image: np.ndarray, classes: int, directions: int = 1) -> np.ndarray:
    """``(H, W)`` uint8: the filter of each pixel, activity class · ``directions`` + direction."""
    if directions == 1:
        return activity_classes(image, classes)
    sums = _direction_sums(image)
    cls = activity_classes(image, classes, sums[0].astype(np.int32) + sums[1])  # activity(image), exactly
    return cls * np.uint8(directions) + direction_classes(image, sums)


def _bands(image: np.ndarray, r: int, guides: Sequence[np.ndarray] = (), clip: int = 0, dtype=np.float64,
           step: int = 1, grid: Sequence[tuple[int, int]] = ((0, 0),)
           ) -> Iterator[tuple[tuple[slice, slice], np.ndarray]]:
    """``(index, features)`` for bands of ``image`` read at every ``step``-th row and column from
    each offset ``(row, column)`` of ``grid``: the pixels ``image[index]`` and the ``dtype``
    ``(num_features(r, len(guides), clip), pixels)`` matrix of their raw features of the diamond
    of radius ``r``, one feature a row (written in place: stacking columns cost as much as the
    filtering). Raw features are, per input channel, the centred pixel x − 128 and each pair's
    centred sum x(p+d) + x(p−d) − 256, then where ``clip`` each pair's clipped luma differences
    clip(Y(p+d) − Y(p)) + clip(Y(p−d) − Y(p)) (:func:`_luma`), then each guide's difference from
    ``image`` per channel, then 1; :func:`_raw_to_taps` maps them to the taps' features. Summing a
    pair is one pass where its second difference would be two."""
    layout, n_pairs = _Layout(r, len(guides), clip), len(pairs(r))
    h, w = image.shape[:2]
    # Features are made in int16, a band at a time, and converted to ``dtype`` in one copy a
    # group: two to three times faster than ufuncs that convert as they go. The planes are
    # centred once, so that a pair's sum is its centred sum.
    padded = np.ascontiguousarray(np.pad(image, ((r, r), (r, r), (0, 0)), mode="edge").transpose(2, 0, 1))
    padded = padded.astype(np.int16)
    padded -= 128
    luma = _luma(padded) if clip else None  # once: the fit's grid reads each band four times
    rows = max(1, _PIXELS_PER_BLOCK * step * step // (w * len(grid))) // step * step or step
    for y0, (oy, ox) in ((y0, offset) for y0 in range(0, h, rows) for offset in grid):
        y1 = min(h, y0 + rows)
        band = padded[:, y0:y1 + 2 * r]

        def shifted(planes: np.ndarray, dy: int, dx: int) -> np.ndarray:
            return planes[..., r + dy + oy:r + dy + y1 - y0:step, r + dx + ox:r + dx + w:step]

        centre = shifted(band, 0, 0)
        shape = centre.shape[1:]
        if 0 in shape:
            continue
        index = (slice(y0 + oy, y1, step), slice(ox, None, step))
        features = np.empty((layout.count, shape[0] * shape[1]), dtype=dtype)
        rows_of = features.reshape(layout.count, *shape)
        work = np.empty((2, n_pairs, 3) + shape, dtype=np.int16)
        for k, (dy, dx) in enumerate(pairs(r)):
            np.add(shifted(band, dy, dx), shifted(band, -dy, -dx), out=work[0, k])
        for c in range(3):
            rows_of[layout.centre(c)] = centre[c]
            rows_of[layout.pairs(c)] = work[0, :, c]
        if clip:
            band_luma = luma[y0:y1 + 2 * r]
            middle = shifted(band_luma, 0, 0)
            ahead, behind = work[:, :, 0]
            for k, (dy, dx) in enumerate(pairs(r)):
                np.subtract(shifted(band_luma, dy, dx), middle, out=ahead[k])
                np.subtract(shifted(band_luma, -dy, -dx), middle, out=behind[k])
            np.clip(work[:, :, 0], -clip, clip, out=work[:, :, 0])
            np.add(ahead, behind, out=ahead)
            rows_of[layout.clipped] = ahead
        for g, guide in enumerate(guides):
            for c in range(3):
                np.subtract(guide[index + (c,)], image[index + (c,)], out=work[1, 0, c], dtype=np.int16)
            rows_of[layout.guide(g)] = work[1, 0]
        features[-1] = 1
        yield index, features


def _luma(planes: np.ndarray) -> np.ndarray:
    """int16 R + 2G + B of ``(3, H, W)`` int16 planes (centred: only its differences are used)."""
    luma = planes[1] << 1
    luma += planes[0]
    luma += planes[2]
    return luma


@functools.cache
def _raw_to_taps(r: int, guides: int, clip: int = 0) -> np.ndarray:
    """``(F, F)`` int64 ``T`` with taps' features = ``T`` @ raw features (:func:`_bands`): a pair's
    second difference x(p+d) + x(p−d) − 2x(p) is its centred sum − 2(x − 128) (the clipped luma
    differences, the guides' and the offset are the same in both)."""
    layout = _Layout(r, guides, clip)
    t = np.eye(layout.count, dtype=np.int64)
    for c in range(3):
        t[layout.pairs(c), layout.centre(c)] = -2
    t.setflags(write=False)
    return t


@dataclass
class _Sums:
    """Least-squares sums per class: ``gram`` (C, F, F), ``rhs`` (C, F, 3), the error energy
    ``energy`` (C,) before filtering and the pixels summed ``count`` (C,), which are the share
    ``share`` of the picture's pixels (the rest like them, unseen by the fit)."""

    gram: np.ndarray
    rhs: np.ndarray
    energy: np.ndarray
    count: np.ndarray
    share: float = 1.0

    def merged(self, classes: int, directions: int) -> "_Sums":
        """From the sums of the encoder's fine classes (:func:`_fine_classes`), those of the
        filters of ``classes`` activity classes, each a union of consecutive fine ones (the
        classes :func:`activity_classes` gives with that count: the ranks of its bounds are
        ranks of the fine bounds), with ``directions`` (1 or :data:`DIRECTIONS`)."""
        def merge(a: np.ndarray) -> np.ndarray:
            a = a.reshape((classes, -1, DIRECTIONS) + a.shape[1:]).sum(axis=1)
            return a.reshape((-1,) + a.shape[2:]) if directions > 1 else a.sum(axis=1)

        return _Sums(merge(self.gram), merge(self.rhs), merge(self.energy), merge(self.count), self.share)

    def features(self, keep: np.ndarray) -> "_Sums":
        """The sums of the features ``keep`` alone (a filter without some guides)."""
        return _Sums(self.gram[:, keep][:, :, keep], self.rhs[:, keep], self.energy, self.count, self.share)


def _fine_classes(image: np.ndarray) -> np.ndarray:
    """The encoder's fine classes of ``image``: ``_FINE_CLASSES`` activity classes, each split by
    direction, at activity class · :data:`DIRECTIONS` + direction."""
    return filter_classes(image, _FINE_CLASSES, DIRECTIONS)


def _coarse(fine: np.ndarray, pf: "PostFilter") -> np.ndarray:
    """The map of ``pf``'s filters (:func:`filter_classes`) from the fine classes' map."""
    activity_class = (fine // DIRECTIONS) * pf.classes // _FINE_CLASSES
    if pf.directions == 1:
        return activity_class.astype(np.uint8)
    return (activity_class * pf.directions + fine % DIRECTIONS).astype(np.uint8)


def _sums(original: np.ndarray, decoded: np.ndarray, cls: np.ndarray, fine: int, radius: int,
          guides: Sequence[np.ndarray] = (), clip: int = 0) -> _Sums:
    """The sums over the ``fine`` classes of the class map ``cls``, for the diamond of ``radius``,
    the ``guides`` and the clipped differences at ``clip`` (none where 0). The features are
    integers, so every sum is an integer far below 2^53: exact in float64, in any order."""
    sampled = decoded.shape[0] * decoded.shape[1] >= _FIT_SUBSAMPLE_FROM
    step, grid = (_FIT_STEP, _FIT_GRID) if sampled else (1, ((0, 0),))
    count = num_features(radius, len(guides), clip)
    gram = np.zeros((fine, count, count))
    rhs = np.zeros((fine, count, 3))
    # All the fitted pixels at once, in int16, then in class order, so that each class's are one
    # slice: a few large products instead of one per class and band, and the features gathered
    # and converted to float64 once, not per class.
    bands = list(_bands(decoded, radius, guides, clip, dtype=np.int16, step=step, grid=grid))
    flat_cls = np.concatenate([cls[index].reshape(-1) for index, _ in bands])
    target = np.concatenate([(original[index].astype(np.float64) - decoded[index]).reshape(-1, 3)
                             for index, _ in bands])
    energy = np.bincount(flat_cls, np.einsum("ij,ij->i", target, target), minlength=fine).astype(np.float64)
    order = np.argsort(flat_cls, kind="stable")
    features = np.concatenate([a for _, a in bands], axis=1)[:, order]
    target = target[order]
    del bands
    count = np.bincount(flat_cls, minlength=fine)
    start = 0
    for c, end in enumerate(np.cumsum(count).tolist()):
        if end > start:
            part = features[:, start:end].astype(np.float64)
            # Of A·Aᵀ the upper triangle alone (half the work); the lower is filled below.
            gram[c] = dsyrk(1.0, part.T, trans=1)
            rhs[c] = part @ target[start:end]
        start = end
    gram = np.triu(gram) + np.triu(gram, 1).transpose(0, 2, 1)
    # From the raw features' sums to the taps' (exact up to float64 rounding: the least
    # squares are then solved and quantised in the basis the taps are sent in).
    to_taps = _raw_to_taps(radius, len(guides), clip).astype(np.float64)
    share = len(grid) / step ** 2
    return _Sums(to_taps @ gram @ to_taps.T, to_taps @ rhs, energy, count, share)


def _solve(sums: _Sums) -> np.ndarray:
    """Least-squares taps ``(classes, 3, features)`` of ``sums``."""
    # A ridge relative to each feature's own energy, with a floor for features that are zero
    # in a class (a flat picture, an empty class), keeps each system solvable without
    # shrinking the taps.
    diag = np.diagonal(sums.gram, axis1=1, axis2=2)
    floor = diag.max(axis=1, keepdims=True)
    ridge = RIDGE * diag + 1e-9 * np.where(floor > 0, floor, 1.0)
    regular = sums.gram + ridge[:, :, None] * np.eye(diag.shape[1])
    return np.linalg.solve(regular, sums.rhs).transpose(0, 2, 1)


def _predicted_energy(sums: _Sums, pf: "PostFilter") -> float:
    """The error energy the quantised filter would leave on the picture, as the sums predict it
    (in the fitted pixels' units, without the final rounding and clipping). On the fitted pixels
    it is what the sums say; but a least-squares filter fits part of their noise too, and on the
    pixels the fit did not see (three quarters of a large picture) it leaves more error, in
    expectation by the factor (n + p) / (n − p) for n fitted pixels of its class and p taps a
    channel; a class with no more fitted pixels than taps counts as no gain at all. Without
    this the encoder favoured many filters of few pixels each, whose gain on the fitted quarter
    was partly its noise."""
    w = pf.taps.transpose(0, 2, 1) / (1 << pf.fraction_bits)  # (filters, F, 3)
    fitted = sums.energy - 2 * np.sum(w * sums.rhs, axis=(1, 2)) + np.sum((sums.gram @ w) * w, axis=(1, 2))
    if sums.share < 1:
        n, p = sums.count.astype(np.float64), w.shape[1]
        if np.any(n[n > 0] <= p):
            return float(np.sum(sums.energy))
        unseen = np.divide(n + p, n - p, out=np.ones_like(n), where=n > 0)
        fitted = fitted * (sums.share + (1 - sums.share) * unseen)
    return max(float(np.sum(fitted)), 0.0)


def fit(original: np.ndarray, decoded: np.ndarray, classes: int = 1, radius: int = RADIUS,
        guides: Sequence[np.ndarray] = (), clip: int = 0, directions: int = 1) -> np.ndarray:
    """Least-squares taps (float, ``(classes · directions, 3, num_features(radius, len(guides),
    clip))``) taking ``decoded`` towards ``original``, one filter per activity class and direction."""
    filters = filter_classes(decoded, classes, directions)
    return _solve(_sums(original, decoded, filters, classes * directions, radius, guides, clip))


def quantize(taps: np.ndarray, fraction_bits: int = FRACTION_BITS, radius: int = RADIUS,
             guides: int = 0, clip: int = 0, directions: int = 1) -> PostFilter:
    q = np.clip(np.round(taps * (1 << fraction_bits)), -MAX_TAP + 1, MAX_TAP - 1).astype(np.int64)
    return PostFilter(q, fraction_bits, radius, guides, clip, directions)


def apply(decoded: np.ndarray, pf: PostFilter, guides: Sequence[np.ndarray] = ()) -> np.ndarray:
    """The filtered 8-bit image: exact integer arithmetic, identical on every machine.
    ``guides``: the codec's guide pictures, of which the filter uses the first ``pf.guides``
    (:class:`BitstreamError` where the codec has fewer)."""
    return _apply(decoded, pf, filter_classes(decoded, pf.classes, pf.directions), guides)


def _apply(decoded: np.ndarray, pf: PostFilter, cls: np.ndarray,
           guides: Sequence[np.ndarray] = ()) -> np.ndarray:
    """:func:`apply` with the picture's map of filters ``cls`` given."""
    if len(guides) < pf.guides:
        raise BitstreamError(f"the postfilter section uses {pf.guides} guide pictures; this codec has "
                             f"{len(guides)} here")
    guides = guides[:pf.guides]
    for guide in guides:
        if guide.shape != decoded.shape or guide.dtype != np.uint8:
            raise ValueError(f"a guide picture must be {decoded.shape} uint8, not {guide.shape} {guide.dtype}")
    weights = _raw_weights(pf)
    # Exact in float32 where no sum can reach 2^24 (see the module's docstring).
    largest = float(np.max(np.abs(weights) @ _largest_features(pf.radius, pf.guides, pf.clip)))
    dtype = np.float32 if largest < 1 << 24 else np.float64
    weights = weights.reshape(-1, weights.shape[-1]).astype(dtype)
    scale = dtype(1.0 / (1 << pf.fraction_bits))
    out = np.empty_like(decoded)
    for index, a in _bands(decoded, pf.radius, guides, pf.clip, dtype=dtype):
        # (pixels, 3): each pixel's outputs side by side, as the image stores them.
        acc = a.T @ weights.T
        if pf.filters > 1:
            # Every filter on every pixel, then each pixel's own: faster than gathering each
            # filter's pixels (the gathers cost more than the sums; measured up to 20 filters).
            own = cls[index].reshape(-1).astype(np.intp)
            acc = acc.reshape(-1, pf.filters, 3)[np.arange(own.size), own]
        acc *= scale  # exact: a power of two
        # Clipped to [0, 255], the cast's truncation is the floor.
        np.clip(acc, 0, 255, out=acc)
        out[index] = acc.reshape(out[index].shape)
    return out


def _raw_weights(pf: PostFilter) -> np.ndarray:
    """``(classes, 3, F)`` float64: the integer weights of the raw features (:func:`_bands`) that
    give each output channel times ``2^F`` plus ``2^(F-1)``, the decoded channel's own value
    included: ``2^F`` more on its centred pixel (x − 128) and ``128 · 2^F + 2^(F-1)`` more on the
    offset. Integers below 2^25 (``MAX_TAP`` times 25 on a centred pixel)."""
    f = pf.fraction_bits
    weights = (pf.taps @ _raw_to_taps(pf.radius, pf.guides, pf.clip)).astype(np.float64)
    layout = _Layout(pf.radius, pf.guides, pf.clip)
    for c in range(3):
        weights[:, c, layout.centre(c)] += 1 << f
    weights[:, :, -1] += 128 * (1 << f) + (1 << (f - 1))
    return weights


@functools.cache
def _largest_features(r: int, guides: int, clip: int) -> np.ndarray:
    """``(F,)`` float64: the largest magnitude each raw feature (:func:`_bands`) can take."""
    layout = _Layout(r, guides, clip)
    largest = np.ones(layout.count)
    for c in range(3):
        largest[layout.centre(c)] = 128  # x − 128
        largest[layout.pairs(c)] = 256  # x(p+d) + x(p−d) − 256
    largest[layout.clipped] = 2 * clip
    largest[layout.guide(0).start:layout.guide(guides).start] = 255  # a guide's difference from the picture
    largest.setflags(write=False)
    return largest


# -- the section ------------------------------------------------------------------------------
def _zigzag(v: np.ndarray) -> np.ndarray:
    return np.where(v >= 0, 2 * v, -2 * v - 1)


_ORDERS = np.arange(16)


def _shortest_code(values: np.ndarray) -> tuple[int, int]:
    """``(k, bits)``: the Exp-Golomb order that codes ``values`` (zigzag-mapped) in the fewest
    bits, and that count; all orders at once, over the distinct values (a filter's taps repeat
    few values)."""
    distinct, counts = np.unique(_zigzag(values), return_counts=True)
    # Order k codes u = v + 2^k in 2·floor(log2 u) + 1 − k bits; frexp's exponent is
    # floor(log2 u) + 1, exactly.
    _, exponents = np.frexp((distinct[None, :] + (1 << _ORDERS)[:, None]).astype(np.float64))
    bits = 2 * ((exponents - 1) @ counts) + values.size * (1 - _ORDERS)
    k = int(np.argmin(bits))
    return k, int(bits[k])


def _header(pf: PostFilter, k: int) -> bytes:
    """The payload's bytes before the codes (shape 5), ``k`` the codes' Exp-Golomb order."""
    return bytes([SHAPE_DIRECTIONS, pf.fraction_bits, k, pf.classes, pf.radius, pf.guides, pf.clip, pf.directions])


def _payload_bytes(pf: PostFilter) -> int:
    """``len(pack(pf))``, without writing the codes."""
    k, bits = _shortest_code(pf.taps.reshape(-1))
    return len(_header(pf, k)) + (bits + 7) // 8


def pack(pf: PostFilter) -> bytes:
    """The section payload, with the Exp-Golomb order that makes it shortest."""
    flat = pf.taps.reshape(-1)
    k, _ = _shortest_code(flat)
    bits: list[str] = []
    for u in (_zigzag(flat) + (1 << k)).tolist():
        n = u.bit_length()
        bits.append("0" * (n - 1 - k) + format(u, "b"))
    stream = "".join(bits)
    stream += "0" * (-len(stream) % 8)
    body = int(stream, 2).to_bytes(len(stream) // 8, "big") if stream else b""
    return _header(pf, k) + body


def unpack(payload: bytes) -> PostFilter:
    """Parse a section payload; :class:`BitstreamError` for anything malformed."""
    if len(payload) < 3:
        raise BitstreamError("postfilter section is truncated")
    shape, f, k = payload[0], payload[1], payload[2]
    if shape not in (SHAPE_ONE, SHAPE_CLASSES, SHAPE_LAYOUT, SHAPE_CLIPPED, SHAPE_DIRECTIONS):
        raise BitstreamError(f"postfilter section has unknown shape {shape} (this build knows "
                             f"{SHAPE_ONE} to {SHAPE_DIRECTIONS})")
    if not 1 <= f <= MAX_FRACTION_BITS or k > 15:
        raise BitstreamError(f"postfilter section has invalid scale 2^{f} or code order {k}")
    classes, radius, guides, clip, directions, start = 1, OLD_RADIUS, 0, 0, 1, 3
    if shape == SHAPE_CLASSES:
        if len(payload) < 4 or not 2 <= payload[3] <= MAX_CLASSES:
            raise BitstreamError(f"postfilter section needs 2 to {MAX_CLASSES} classes, has "
                                 f"{payload[3] if len(payload) > 3 else 'none'}")
        classes, start = payload[3], 4
    elif shape in (SHAPE_LAYOUT, SHAPE_CLIPPED, SHAPE_DIRECTIONS):
        start = {SHAPE_LAYOUT: 6, SHAPE_CLIPPED: 7, SHAPE_DIRECTIONS: 8}[shape]
        if len(payload) < start:
            raise BitstreamError("postfilter section is truncated")
        classes, radius, guides = payload[3], payload[4], payload[5]
        clip = payload[6] if shape != SHAPE_LAYOUT else 0
        if shape == SHAPE_DIRECTIONS:
            directions = payload[7]
            if directions not in (1, DIRECTIONS):
                raise BitstreamError(f"postfilter section has {directions} directions (1 or {DIRECTIONS})")
        if not 1 <= classes <= MAX_CLASSES or not 1 <= radius <= MAX_RADIUS or guides > MAX_GUIDES:
            raise BitstreamError(f"postfilter section needs 1 to {MAX_CLASSES} classes, a radius of 1 to "
                                 f"{MAX_RADIUS} and at most {MAX_GUIDES} guides, has {classes}, {radius} "
                                 f"and {guides}")
    count = num_features(radius, guides, clip)
    bits = "".join(format(b, "08b") for b in payload[start:])
    pos, values = 0, []
    for _ in range(classes * directions * 3 * count):
        zeros = 0
        while pos < len(bits) and bits[pos] == "0":
            zeros += 1
            pos += 1
        n = zeros + 1 + k
        if zeros > 40 or pos + n > len(bits):
            raise BitstreamError("postfilter section is truncated or corrupt")
        u = int(bits[pos:pos + n], 2) - (1 << k)
        pos += n
        values.append(u // 2 if u % 2 == 0 else -(u + 1) // 2)
    if len(bits) - pos >= 8 or "1" in bits[pos:]:
        raise BitstreamError("postfilter section has bytes after its taps")
    taps = np.array(values, dtype=np.int64).reshape(classes * directions, 3, count)
    if np.abs(taps).max() >= MAX_TAP:
        raise BitstreamError("postfilter section has out-of-range taps")
    return PostFilter(taps, f, radius, guides, clip, directions)


def rate_cost_db(added_bytes: float, coded_bytes: float) -> float:
    """What ``added_bytes`` more (or, negative, fewer) are worth in dB of PSNR in a file of
    ``coded_bytes``, at ``DB_PER_DOUBLING``: the rule by which an encoder weighs a gain against
    the bytes it costs."""
    return DB_PER_DOUBLING * math.log2(1 + added_bytes / max(coded_bytes, 1))


def _cost_db(payload_bytes: int, coded_bytes: float) -> float:
    """What the section's bytes are worth in dB at the file's rate (:func:`rate_cost_db`)."""
    return rate_cost_db(payload_bytes + container.section_entry_bytes(SECTION, payload_bytes), coded_bytes)


def _subset(radius: int, guides: int, clip: int, used: int, used_clip: int) -> np.ndarray:
    """The indices, among the features of ``num_features(radius, guides, clip)``, of those of a
    filter with the first ``used`` guides and clipped luma differences where ``used_clip`` (then
    at ``clip``), in that filter's order."""
    layout = _Layout(radius, guides, clip)
    return np.r_[0:layout.clipped.stop if used_clip else layout.clipped.start,
                 layout.guide(0).start:layout.guide(used).start, layout.count - 1]


def choose(original: np.ndarray, decoded: np.ndarray, coded_bytes: float, force: bool = False,
           guides: Sequence[np.ndarray] = ()) -> tuple[bytes, np.ndarray] | None:
    """Fit, quantise and measure the filter: its payload and the filtered image; None when it
    does not lower the error or its gain does not pay for its bytes (``coded_bytes``: the
    file's size without it), unless ``force``. ``guides``: the codec's guide pictures, of which
    the filter may use the first few.

    Of the activity class counts ``CLASS_COUNTS`` (and ``DIRECTION_CLASS_COUNTS`` with a filter
    per direction in each), the scales ``FRACTION_CHOICES``, the numbers of guides and the filters
    with and without clipped differences (at ``CLIP``), the filter kept is the one whose
    predicted gain (from the least-squares sums) pays best for its taps' bytes; the final
    picture is then measured.
    """
    guides = tuple(guides[:MAX_GUIDES])
    fine = _fine_classes(decoded)
    every = _sums(original, decoded, fine, _FINE_CLASSES * DIRECTIONS, RADIUS, guides, CLIP)
    before_fit = float(np.sum(every.energy))
    shapes = [(classes, 1) for classes in CLASS_COUNTS] + [(classes, DIRECTIONS) for classes in DIRECTION_CLASS_COUNTS]
    best = None
    for classes, by_direction in shapes:
        merged = every.merged(classes, by_direction)
        for clip, used in itertools.product((0, CLIP), range(len(guides) + 1)):
            sums = merged.features(_subset(RADIUS, len(guides), CLIP, used, clip))
            taps = _solve(sums)
            for fraction_bits in FRACTION_CHOICES:
                pf = quantize(taps, fraction_bits, RADIUS, used, clip, by_direction)
                after = _predicted_energy(sums, pf)
                gain = 10 * math.log10(before_fit / after) if 0 < after < before_fit else 0.0
                net = gain - _cost_db(_payload_bytes(pf), coded_bytes)
                if best is None or net > best[0]:
                    best = (net, pf)
    _, pf = best
    payload = pack(pf)
    filtered = _apply(decoded, pf, _coarse(fine, pf), guides)
    before, after = squared_error(original, decoded), squared_error(original, filtered)
    if not force:
        if after >= before:
            return None
        gain_db = 10 * math.log10(before / after) if after > 0 else math.inf
        if gain_db <= _cost_db(len(payload), coded_bytes):
            return None
    return payload, filtered
