"""open_image: every supported mode becomes RGB uint8; bad files raise ImageError naming the file."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from codec.errors import ImageError
from codec.image import ImageWarning, open_image


def encode(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def test_rgb_png_from_path_and_bytes(tmp_path, photo):
    path = tmp_path / "a.png"
    Image.fromarray(photo).save(path)
    a = open_image(path)
    b = open_image(path.read_bytes())
    assert a.dtype == np.uint8 and a.shape == photo.shape and a.flags.c_contiguous
    assert np.array_equal(a, photo) and np.array_equal(b, photo)


def test_grayscale_and_palette(photo):
    gray = Image.fromarray(photo).convert("L")
    out = open_image(encode(gray))
    assert out.shape == photo.shape and np.array_equal(out[..., 0], np.asarray(gray))
    pal = Image.fromarray(photo).convert("P", palette=Image.ADAPTIVE, colors=16)
    out = open_image(encode(pal))
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))


def test_rgba_drops_alpha_with_warning(photo):
    rgba = np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])
    with pytest.warns(ImageWarning, match="alpha"):
        out = open_image(encode(Image.fromarray(rgba, "RGBA")))
    assert np.array_equal(out, photo)


def test_16bit_grayscale_scaled_to_8bit():
    ramp = (np.arange(64 * 8, dtype=np.uint16).reshape(8, 64) * 128)
    im = Image.fromarray(ramp)
    with pytest.warns(ImageWarning, match="8 bits"):
        out = open_image(encode(im))
    expect = np.round(ramp.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(out[..., 1], expect)


def test_cmyk_jpeg(photo):
    data = encode(Image.fromarray(photo).convert("CMYK"), "JPEG", quality=95)
    out = open_image(data)
    assert out.shape == photo.shape
    assert np.abs(out.astype(int) - photo.astype(int)).mean() < 12


def test_exif_orientation_applied(photo):
    im = Image.fromarray(photo)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    out = open_image(encode(im, "JPEG", quality=95, exif=exif.tobytes()))
    assert out.shape == (photo.shape[1], photo.shape[0], 3)


@pytest.mark.parametrize("blob,reason", [
    (b"", "empty"),
    (b"hello, not an image", "not a recognised"),
    (b"\x89PNG\r\n\x1a\n" + b"\0" * 30, "decode|recognised"),
])
def test_bad_bytes(blob, reason):
    with pytest.raises(ImageError, match=reason):
        open_image(blob)


def test_truncated_file_names_the_file(tmp_path, photo):
    data = encode(Image.fromarray(photo))
    path = tmp_path / "cut.png"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageError) as info:
        open_image(path)
    assert "cut.png" in str(info.value)


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        open_image(tmp_path / "nope.png")
    with pytest.raises(ImageError, match="directory"):
        open_image(tmp_path)


def test_pixel_limit_checked_before_decoding():
    big = encode(Image.new("RGB", (300, 200)))
    with pytest.raises(ImageError, match="above the limit"):
        open_image(big, max_pixels=50_000)
    assert open_image(big, max_pixels=60_000).shape == (200, 300, 3)


def test_one_pixel_image():
    out = open_image(encode(Image.new("RGB", (1, 1), (10, 20, 30))))
    assert out.shape == (1, 1, 3) and tuple(out[0, 0]) == (10, 20, 30)


def test_plain_rgb_raises_no_warning(photo):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        open_image(encode(Image.fromarray(photo)))
