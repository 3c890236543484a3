"""lic-train pack: a smaller copy of a training set for a GPU machine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from codec.errors import ParameterError
from training.cli import main as train_main
from training.pack import PACK_INFO, pack_images


def _write(path, w, h, seed):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)


def test_pack_shrinks_large_images_and_keeps_layout(tmp_path):
    src = tmp_path / "train"
    _write(src / "big" / "a.png", 900, 600, 0)
    _write(src / "small" / "b.png", 300, 200, 1)
    summary = pack_images(src, tmp_path / "pack", max_side=450, quality=90)
    with Image.open(tmp_path / "pack" / "big" / "a.jpg") as a, \
            Image.open(tmp_path / "pack" / "small" / "b.jpg") as b:
        assert (a.format, a.size) == ("JPEG", (450, 300))
        assert b.size == (300, 200)
    assert summary["images"] == 2 and summary["downscaled"] == 1
    assert summary["megapixels"] == pytest.approx((450 * 300 + 300 * 200) / 1e6, abs=0.01)
    assert json.loads((tmp_path / "pack" / PACK_INFO).read_text()) == summary


def test_pack_refuses_bad_settings(tmp_path):
    src = tmp_path / "train"
    _write(src / "a.png", 64, 64, 0)
    with pytest.raises(ParameterError, match="outside"):
        pack_images(src, src / "pack")
    with pytest.raises(ParameterError, match="quality"):
        pack_images(src, tmp_path / "pack", quality=0)
    with pytest.raises(ParameterError, match="no images"):
        pack_images(_empty(tmp_path), tmp_path / "out")


def _empty(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    return d


def test_pack_command(tmp_path, capsys):
    _write(tmp_path / "train" / "a.png", 128, 96, 0)
    assert train_main(["pack", str(tmp_path / "train"), str(tmp_path / "pack"), "--max-side", "64"]) == 0
    assert json.loads(capsys.readouterr().out)["downscaled"] == 1
    with Image.open(tmp_path / "pack" / "a.jpg") as im:
        assert im.size == (64, 48)
