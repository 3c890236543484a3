"""lic-studio's window, offscreen (pytest-qt): input, cards, worker, views, R-D plot, export.

Fast by construction: the 96×128 photo crop and the JPEG codec (plus JPEG-derived fakes where a
second or a slow codec is needed); the learned codecs are exercised once, when registered.
"""

from __future__ import annotations

import csv
import json
import math
import os
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
pytest.importorskip("pytestqt")

from PIL import Image  # noqa: E402
from PySide6 import QtCore, QtGui, QtWidgets  # noqa: E402

from codec import metrics, registry  # noqa: E402
from codec.base import CodecResult, ParamSpec  # noqa: E402
from codec.jpeg import JpegCodec  # noqa: E402
from gui.app import main as app_main  # noqa: E402
from gui.bandsview import latent_table  # noqa: E402
from gui.cards import CodecCard  # noqa: E402
from gui.mainwindow import MainWindow  # noqa: E402
from gui.params import BoolControl, ChoiceControl, FloatControl, IntControl  # noqa: E402
from gui.settings import Settings  # noqa: E402
from gui.state import CodecSpec, EncodeOutcome, measure  # noqa: E402
from gui.worker import ResultCache  # noqa: E402

JPEG = registry.CODECS["jpeg"]
TIMEOUT_MS = 20_000


# -- fakes: codecs derived from JPEG, so they are fast and exact -----------------------------------
class Jpeg444(JpegCodec):
    """A second registry-style codec (JPEG 4:4:4 by default) to compare against JPEG 4:2:0."""

    name = "jpeg444"
    codec_id = 98
    title = "JPEG 4:4:4"
    params = (JpegCodec.params[0], ParamSpec("subsampling", "choice", "4:4:4", "chroma",
                                             choices=("4:2:0", "4:4:4")), *JpegCodec.params[2:])


class SlowJpeg(JpegCodec):
    name = "slow"
    codec_id = 97
    title = "Slow JPEG"
    started = threading.Event()

    def _encode(self, image, params):
        SlowJpeg.started.set()
        time.sleep(0.4)
        return super()._encode(image, params)


@dataclass(frozen=True)
class FakeEntry:
    name: str
    title: str
    klass: type
    learned: bool = False

    def load_class(self):
        return self.klass


def fake_factory(entry):
    return entry.load_class()() if isinstance(entry, FakeEntry) else registry.create(entry.name)


# -- fixtures ----------------------------------------------------------------------------------------
@pytest.fixture
def settings(tmp_path):
    return Settings.at(str(tmp_path / "settings.ini"))


@pytest.fixture
def make_window(qtbot, settings):
    made = []

    def make(entries=(JPEG,), image=None, settings_=None, **kw):
        win = MainWindow(settings=settings_ or settings, entries=list(entries), factory=fake_factory, **kw)
        qtbot.addWidget(win)
        win.resize(1100, 750)
        win.show()
        if image is not None:
            win.set_image(image, "photo")
        made.append(win)
        return win

    yield make
    for w in made:
        w.close()
    for w in made:  # no worker may outlive its test (a daemon thread in torch code at exit aborts)
        for worker in w.hub.workers.values():
            assert worker.join(120), f"{worker.name} worker did not stop"


def settle(qtbot, win, timeout=TIMEOUT_MS):
    qtbot.waitUntil(win.settled, timeout=timeout)


def jpeg(photo, **params):
    return JpegCodec().encode(photo, **{"quality": 75, "subsampling": "4:2:0", **params})


# -- input ------------------------------------------------------------------------------------------
def test_drop_file_fills_panels_and_metrics(make_window, qtbot, photo, tmp_path):
    path = tmp_path / "dropped.png"
    Image.fromarray(photo).save(path)
    win = make_window()
    mime = QtCore.QMimeData()
    mime.setUrls([QtCore.QUrl.fromLocalFile(str(path))])
    with warnings.catch_warnings():  # PySide marks this Qt 6 constructor deprecated; it is the only one
        warnings.simplefilter("ignore", DeprecationWarning)
        enter = QtGui.QDragEnterEvent(QtCore.QPoint(20, 20), QtCore.Qt.DropAction.CopyAction, mime,
                                      QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    win.dragEnterEvent(enter)
    assert enter.isAccepted()
    drop = QtGui.QDropEvent(QtCore.QPointF(20, 20), QtCore.Qt.DropAction.CopyAction, mime,
                            QtCore.Qt.MouseButton.LeftButton, QtCore.Qt.KeyboardModifier.NoModifier)
    win.dropEvent(drop)
    settle(qtbot, win)
    assert win.source.name == "dropped.png"
    assert np.array_equal(win.source.full, photo)
    assert {"original", "jpeg"} <= set(win.grid.slots)
    direct = jpeg(photo)
    out = win.outcomes["jpeg"]
    assert out.result.bitstream == direct.bitstream
    assert out.metrics.psnr == pytest.approx(metrics.psnr(photo, direct.image))
    card = win.cards["jpeg"]
    assert f"{direct.bpp:.4f} bpp" in card.metric_labels["size"].text()
    assert f"{metrics.psnr(photo, direct.image):.2f} dB" in card.metric_labels["psnr"].text()
    assert "n/a" in card.metric_labels["msssim"].text()  # 96 px side < 161: MS-SSIM undefined
    assert np.array_equal(win.grid.slots["jpeg"].item.image, direct.image)


def test_bad_file_shows_message_and_keeps_image(make_window, qtbot, photo, tmp_path):
    win = make_window(image=photo)
    settle(qtbot, win)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"this is not an image")
    assert not win.load_path(bad)
    assert win.banner.isVisible()
    assert "broken.png" in win.banner.text() and "not a recognised image format" in win.banner.text()
    assert np.array_equal(win.source.full, photo)
    assert not win.load_path(tmp_path / "missing.jpg")
    assert "no such file" in win.banner.text()
    win.set_image(photo, "photo again")
    assert not win.banner.isVisible()


def test_paste_image_from_clipboard(make_window, qtbot, photo):
    win = make_window()
    h, w = photo.shape[:2]
    qimg = QtGui.QImage(photo.tobytes(), w, h, 3 * w, QtGui.QImage.Format.Format_RGB888).copy()
    QtWidgets.QApplication.clipboard().setImage(qimg)
    win.paste()
    settle(qtbot, win)
    assert win.source.name == "pasted image"
    assert np.array_equal(win.source.full, photo)


# -- cards and the worker -----------------------------------------------------------------------------
def test_slider_change_updates_metrics_like_the_codec(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    card = win.cards["jpeg"]
    card.control("quality").slider.setValue(40)
    card.control("subsampling").combo.setCurrentText("4:4:4")
    qtbot.waitUntil(lambda: win.outcomes["jpeg"].params == {"quality": 40, "subsampling": "4:4:4", "tables": "standard",
                                                                  "scan": "baseline"},
                    timeout=TIMEOUT_MS)
    direct = jpeg(photo, quality=40, subsampling="4:4:4")
    out = win.outcomes["jpeg"]
    assert out.result.bitstream == direct.bitstream
    assert out.metrics.bpp == pytest.approx(direct.bpp)
    assert f"{direct.num_bytes:,} B" in card.metric_labels["size"].text()
    assert np.array_equal(win.grid.slots["jpeg"].item.image, direct.image)
    assert card.bar.sections[0][0] == "jpeg"


def test_200_rapid_slider_moves_end_on_the_last_value(make_window, qtbot, photo, rng):
    win = make_window(image=photo)
    settle(qtbot, win)
    slider = win.cards["jpeg"].control("quality").slider
    worker = win.hub.workers["jpeg"]
    before = worker.encodes_run
    values = rng.integers(1, 101, size=200)
    for i, v in enumerate(values):
        slider.setValue(int(v))
        if i % 7 == 0:
            QtWidgets.QApplication.processEvents()
    final = int(values[-1])
    settle(qtbot, win)
    assert win.outcomes["jpeg"].params["quality"] == final
    assert np.array_equal(win.grid.slots["jpeg"].item.image, jpeg(photo, quality=final).image)
    assert f"{jpeg(photo, quality=final).bpp:.4f}" in win.cards["jpeg"].metric_labels["size"].text()
    assert worker.encodes_run - before < 200 + 12  # coalesced: not one encode per move (+ sweep)


def test_preview_while_dragging_full_resolution_on_release(make_window, qtbot, photo):
    win = make_window(image=photo, preview_side=64)
    assert win.source.has_preview
    settle(qtbot, win)
    slider = win.cards["jpeg"].control("quality").slider
    slider.setSliderDown(True)
    slider.setValue(20)
    qtbot.waitUntil(lambda: win.outcomes["jpeg"].params["quality"] == 20, timeout=TIMEOUT_MS)
    out = win.outcomes["jpeg"]
    assert out.preview and out.result.image.shape[:2] == win.source.preview.shape[:2]
    rect = win.grid.slots["jpeg"].item.mapRectToParent(win.grid.slots["jpeg"].item.boundingRect())
    assert (rect.width(), rect.height()) == pytest.approx((photo.shape[1], photo.shape[0]))
    slider.setSliderDown(False)  # emits sliderReleased
    settle(qtbot, win)
    out = win.outcomes["jpeg"]
    assert not out.preview and out.result.bitstream == jpeg(photo, quality=20).bitstream


def test_match_bpp_finds_the_closest_setting(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    target = 1.5
    win.match_bpp(target)
    qtbot.waitUntil(lambda: "jpeg" in win.match_results, timeout=TIMEOUT_MS)
    settle(qtbot, win)
    achieved = win.outcomes["jpeg"].metrics.bpp
    best = min(abs(jpeg(photo, quality=q).bpp - target) for q in range(1, 101))
    assert abs(achieved - target) <= best + 0.05
    assert win.cards["jpeg"].params()["quality"] == win.match_results["jpeg"].value
    assert "quality=" in win.match_label.text()
    # The button uses the typed target (its clicked(bool) argument must not become the target).
    win.match_spin.setValue(0.8)
    qtbot.mouseClick(win.side.match_button, QtCore.Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "jpeg" in win.match_results and win.match_results["jpeg"].target_bpp == 0.8,
                    timeout=TIMEOUT_MS)


def test_controls_are_generated_for_every_param_kind(qtbot):
    spec = CodecSpec("fake", "Fake", True, (
        ParamSpec("q", "int", 5, "an int", 1, 9, sweep=(1, 5, 9), rate_knob=True),
        ParamSpec("lam", "float", 0.01, "log-scaled float", 0.0001, 0.1),
        ParamSpec("gain", "float", 0.5, "linear float", 0.0, 1.0),
        ParamSpec("refine", "bool", True, "a switch"),
        ParamSpec("mode", "choice", "b", "a choice", choices=("a", "b")),
    ))
    card = CodecCard("fake", "Fake", "#ffffff")
    qtbot.addWidget(card)
    card.set_spec(spec, {"q": 7, "mode": "a", "gain": "not a number"})
    kinds = {n: type(c) for n, c in card.controls.items()}
    assert kinds == {"q": IntControl, "lam": FloatControl, "gain": FloatControl, "refine": BoolControl,
                     "mode": ChoiceControl}
    assert card.params() == {"q": 7, "lam": pytest.approx(0.01), "gain": 0.5, "refine": True, "mode": "a"}
    lam = card.control("lam")
    assert lam.log_scale and not card.control("gain").log_scale
    with qtbot.waitSignal(card.paramsChanged) as blocker:
        lam.slider.setValue(500)  # the middle of a log scale is the geometric mean
    assert blocker.args[1]["lam"] == pytest.approx(math.sqrt(0.0001 * 0.1), rel=1e-3)
    for p in spec.params:
        p.coerce(card.params()[p.name])  # every value a control yields is valid for the codec


def test_result_cache_is_bounded_by_bytes(photo):
    r = jpeg(photo)
    m = measure(photo, r)
    size = ResultCache.result_bytes(r)
    cache = ResultCache(max_bytes=int(size * 2.5))
    for i in range(5):
        cache.put(("jpeg", "k", i), r, m)
    assert len(cache) == 2 and cache.nbytes <= cache.max_bytes
    assert cache.get(("jpeg", "k", 0)) is None and cache.get(("jpeg", "k", 4)) is not None


# -- views ------------------------------------------------------------------------------------------
def test_wipe_flip_and_zoom_stay_in_sync(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    h, w = photo.shape[:2]
    direct = jpeg(photo).image
    # Zoom: 200 % in the grid, then a user pan in one panel moves the others.
    win.sync.set_zoom(2.0, center=(40.0, 30.0))
    QtWidgets.QApplication.processEvents()
    views = [s.vb for s in win.grid.slots.values()]
    for vb in views:
        assert vb.width() / vb.viewRect().width() == pytest.approx(2.0, rel=1e-3)
        assert (vb.viewRect().center().x(), vb.viewRect().center().y()) == pytest.approx((40.0, 30.0), abs=1e-3)
    views[0].translateBy(x=10, y=5)
    views[0].sigRangeChangedManually.emit([True, True])
    for vb in views[1:]:
        assert vb.viewRect().center().x() == pytest.approx(50.0, abs=1e-3)
        assert vb.viewRect().center().y() == pytest.approx(35.0, abs=1e-3)
    # The wipe view shows the same place at the same zoom when opened.
    qtbot.keyClick(win, QtCore.Qt.Key.Key_W)
    if win.current_view() != "wipe":  # shortcuts need an active window on some platforms
        win.show_view("wipe")
    QtWidgets.QApplication.processEvents()
    vb = win.wipe.vb
    assert vb.width() / vb.viewRect().width() == pytest.approx(2.0, rel=1e-3)
    assert vb.viewRect().center().x() == pytest.approx(50.0, abs=1e-3)
    # Wipe: any two panels, split snapped with J / K / L.
    win.wipe.select("original", "jpeg")
    QtWidgets.QApplication.processEvents()
    assert np.array_equal(win.wipe.left_item.image, photo)
    assert np.array_equal(win.wipe.right_item.image, direct)
    for key, frac in ((QtCore.Qt.Key.Key_J, 0.0), (QtCore.Qt.Key.Key_L, 1.0), (QtCore.Qt.Key.Key_K, 0.5)):
        win.actions[{0.0: "wipe_left", 1.0: "wipe_right", 0.5: "wipe_middle"}[frac]].trigger()
        assert win.wipe.split == frac
        assert win.wipe.clip.rect().width() == pytest.approx(frac * w)
        assert win.wipe.line.value() == pytest.approx(frac * w)
    win.wipe.line.setValue(0.25 * w)  # dragging the line
    assert win.wipe.clip.rect().width() == pytest.approx(0.25 * w)
    # Flip: holding Space shows the original everywhere; releasing restores.
    win.show_view("grid")
    QtWidgets.QApplication.processEvents()
    qtbot.keyPress(win.grid, QtCore.Qt.Key.Key_Space)
    assert win.flip
    assert np.array_equal(win.grid.slots["jpeg"].item.image, photo)
    qtbot.keyRelease(win.grid, QtCore.Qt.Key.Key_Space)
    assert not win.flip
    assert np.array_equal(win.grid.slots["jpeg"].item.image, direct)
    win.sync.fit()
    assert win.zoom_label.text() == "fit"


def test_pin_compares_a_codec_with_itself(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    card = win.cards["jpeg"]
    card.pin_button.click()
    assert card.pin_button.isChecked() and "jpeg@pin" in {p.key for p in win.panels()}
    card.control("quality").slider.setValue(20)
    settle(qtbot, win)
    win.show_view("wipe")
    QtWidgets.QApplication.processEvents()
    left, right = win.wipe.sides()
    assert (left.key, right.key) == ("jpeg@pin", "jpeg")
    assert "quality=75" in left.title
    assert np.array_equal(win.wipe.left_item.image, jpeg(photo, quality=75).image)
    assert np.array_equal(win.wipe.right_item.image, jpeg(photo, quality=20).image)
    card.pin_button.click()
    assert "jpeg@pin" not in {p.key for p in win.panels()}


def test_error_view_levels_and_values(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    win.show_view("error")
    QtWidgets.QApplication.processEvents()
    ev = win.error_view
    ev.select("jpeg")
    ev.set_gain(4)
    direct = jpeg(photo).image
    expected = (direct.astype(np.float32) - photo.astype(np.float32)).mean(axis=2)
    assert np.allclose(ev.error, expected)
    assert ev.levels() == (-32.0, 32.0)
    assert tuple(ev.item.levels) == pytest.approx((-32.0, 32.0))
    ev.toggle_mode()
    d = direct.astype(np.float32) - photo.astype(np.float32)
    assert np.allclose(ev.error, np.sqrt((d * d).mean(axis=2)), atol=1e-4)
    assert ev.levels() == (0.0, 32.0)
    assert f"PSNR-RGB {metrics.psnr(photo, direct):.2f} dB" in ev.stats.text()


def test_band_view_values_match_pywavelets(make_window, qtbot, photo):
    pywt = pytest.importorskip("pywt")
    win = make_window(image=photo)
    settle(qtbot, win)
    win.show_view("bands")
    bands = win.bands
    bands.set_options(wavelet="db2", levels=2, channel="R", normalise="band")
    bands.select_source("original")
    QtWidgets.QApplication.processEvents()
    ca, (ch2, cv2, cd2), (ch1, cv1, cd1) = pywt.wavedec2(photo[..., 0].astype(np.float64), "db2",
                                                          mode="periodization", level=2)
    got = {b.label: b.coeffs for b in bands.bands}
    for label, ref in (("LL2", ca), ("LH2", ch2), ("HL2", cv2), ("HH2", cd2),
                       ("LH1", ch1), ("HL1", cv1), ("HH1", cd1)):
        assert np.allclose(got[label], ref), label
    total = sum(float(np.sum(c * c)) for c in (ca, ch2, cv2, cd2, ch1, cv1, cd1))
    rows = {bands.table.item(r, 0).text(): bands.table.item(r, 4).text() for r in range(bands.table.rowCount())}
    assert rows["HH1"] == f"{100 * float(np.sum(cd1 * cd1)) / total:.3f} %"
    assert rows["LL2"] == f"{100 * float(np.sum(ca * ca)) / total:.3f} %"
    assert float(np.sum(photo[..., 0].astype(np.float64) ** 2)) == pytest.approx(total, rel=1e-9)  # orthogonal
    # The error of a reconstruction, too.
    bands.select_source("jpeg", error=True)
    QtWidgets.QApplication.processEvents()
    err = jpeg(photo).image[..., 0].astype(np.float64) - photo[..., 0].astype(np.float64)
    assert np.allclose({b.label: b.coeffs for b in bands.bands}["HH1"],
                       pywt.wavedec2(err, "db2", mode="periodization", level=2)[2][2])


def test_latent_band_table_reads_codec_info(photo):
    r = jpeg(photo)
    res = CodecResult("wl", {}, r.bitstream, r.sections, r.image, r.width, r.height,
                      intermediates={"y_LL": np.ones((6, 8), np.float32), "y_HH": np.zeros((6, 8), np.float32)},
                      info={"bits_per_band": {"LL": 400, "HH": 40}, "delta": {"LL": 0.5, "HH": 2.0},
                            "gate": {"HH": 0.25}})
    header, rows = latent_table(EncodeOutcome(1, "wl", {}, "k", False, res, measure(photo, res)))
    assert header[:2] == ["band", "bits"]
    assert rows == [["LL", "400", f"{100 * 400 / (8 * r.num_bytes):.1f} %", "0.5", "—"],
                    ["HH", "40", f"{100 * 40 / (8 * r.num_bytes):.1f} %", "2", "0.25"]]


def test_pixel_readout(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    panel = next(p for p in win.panels() if p.key == "jpeg")
    win._hovered(panel, 10.5, 20.2)
    o, d = photo[20, 10], jpeg(photo).image[20, 10]
    text = win.readout.text()
    assert text.startswith("x 10  y 20") and f"original ({o[0]}, {o[1]}, {o[2]})" in text
    assert f"({d[0]}, {d[1]}, {d[2]})" in text


# -- R-D plot -----------------------------------------------------------------------------------------
def test_sweep_walks_the_path_of_the_users_settings():
    """The plot's curve holds the user's settings but the ones the sweep varies, and walks
    the path the codec picks for them (the hybrid's hull for the chosen JPEG tables)."""
    from codec.hybrid import Config, HybridCodec
    from codec.hybrid.codec import SWEEPS
    from gui.worker import CodecWorker

    codec = HybridCodec(weights="random", config=Config.tiny(), device="cpu")
    worker = CodecWorker(FakeEntry("hybrid", "Hybrid", HybridCodec), signals=None, cache=ResultCache(),
                         factory=lambda entry: codec)
    worker.codec = codec
    user = codec.resolve_params({"base_quality": 33, "rate": 0.1, "base_tables": "standard", "refine": "off"})
    points = worker._points_for(user)
    assert [(p["base_quality"], p["rate"]) for p in points] == list(SWEEPS["standard"])
    assert all(p["refine"] == "off" and p["base_tables"] == "standard" for p in points)


def test_rd_sweeps_click_bd_and_anchors(make_window, qtbot, photo, tmp_path):
    e444 = FakeEntry("jpeg444", "JPEG 4:4:4", Jpeg444)
    win = make_window(entries=(JPEG, e444), image=photo)
    settle(qtbot, win)
    curve = win.rd.curves["jpeg"]
    assert len(curve.points) == len(JpegCodec.params[0].sweep)
    p3 = sorted(curve.points.values(), key=lambda p: p.index)[3]
    direct = jpeg(photo, quality=p3.params["quality"])
    assert p3.bpp == pytest.approx(direct.bpp) and p3.psnr == pytest.approx(metrics.psnr(photo, direct.image))
    # Clicking a sweep point moves the codec's controls there.
    win.rd.pointClicked.emit("jpeg", dict(p3.params))
    qtbot.waitUntil(lambda: win.outcomes["jpeg"].params == p3.params, timeout=TIMEOUT_MS)
    assert win.cards["jpeg"].control("quality").slider.value() == p3.params["quality"]
    # BD-rate of the second codec against JPEG on this image, as codec.metrics computes it.
    c444 = win.rd.curves["jpeg444"]
    ref = curve.series("psnr")
    test = c444.series("psnr")
    (name, rate, dpsnr), = win.rd.bd()
    assert name == "JPEG 4:4:4"
    win.show_view("rd")
    QtWidgets.QApplication.processEvents()
    assert rate == pytest.approx(metrics.bd_rate(ref, test))
    assert win.rd.bd_table.item(0, 1).text() == f"{rate:+.1f} %"
    # ΔPSNR vs JPEG at the same bpp on the 4:4:4 card.
    assert math.isfinite(win.cards["jpeg444"].delta_psnr)
    # Published curves from a user folder; a bad file is skipped.
    folder = tmp_path / "anchors"
    folder.mkdir()
    (folder / "a.json").write_text(json.dumps({"name": "CodecA", "results": {
        "bpp": [0.25, 0.5, 1.0], "psnr-rgb": [28.0, 31.0, 34.0], "ms-ssim-rgb": [0.9, 0.95, 0.98]}}))
    (folder / "junk.json").write_text("{not json")
    win.load_anchors(folder, {"CodecA"})
    assert [a.name for a in win.rd.anchors] == ["CodecA"]
    assert win.rd.anchors[0].ms_ssim_db[0] == pytest.approx(10.0)
    QtWidgets.QApplication.processEvents()
    names = [item.name() for item in win.rd.plot.getPlotItem().listDataItems()]
    assert "Kodak · CodecA" in names and "JPEG (this image)" in names


def test_ms_ssim_axis_resweeps_with_ms_ssim(make_window, qtbot):
    from skimage import data

    img = np.ascontiguousarray(data.astronaut()[150:312, 150:312])  # 162 px: MS-SSIM is defined
    win = make_window(image=img)
    settle(qtbot, win, timeout=60_000)
    m = win.outcomes["jpeg"].metrics
    expected = metrics.ms_ssim(img, np.array(jpeg(img).image))  # writable: torch warns otherwise
    assert m.ms_ssim_state == "done" and m.ms_ssim == pytest.approx(expected)
    assert f"{expected:.4f}" in win.cards["jpeg"].metric_labels["msssim"].text()
    assert win.rd.curves["jpeg"].series("ms_ssim_db") == ([], [])  # PSNR-only sweep so far
    win.rd.set_metric("ms_ssim_db")
    qtbot.waitUntil(lambda: not win.settled(), timeout=2_000)
    settle(qtbot, win, timeout=60_000)
    x, y = win.rd.curves["jpeg"].series("ms_ssim_db")
    assert len(x) == len(JpegCodec.params[0].sweep) and all(math.isfinite(v) for v in y)
    q40 = next(p for p in win.rd.curves["jpeg"].points.values() if p.params["quality"] == 40)
    q40_image = np.array(jpeg(img, quality=40).image)
    assert q40.ms_ssim_db == pytest.approx(metrics.ms_ssim_db(metrics.ms_ssim(img, q40_image)))


# -- export, settings, shutdown, CLI --------------------------------------------------------------------
def test_export_pngs_bitstreams_metrics_and_view(make_window, qtbot, photo, tmp_path):
    win = make_window(image=photo)
    settle(qtbot, win)
    direct = jpeg(photo)
    pngs = win.export_panels(tmp_path / "png")
    assert {p.name for p in pngs} == {"original.png", "jpeg.png"}
    assert np.array_equal(np.asarray(Image.open(tmp_path / "png" / "jpeg.png")), direct.image)
    lic, = win.export_bitstreams(tmp_path / "lic")
    assert np.array_equal(registry.decode_bitstream(lic.read_bytes()).image, direct.image)
    js, cs = win.export_metrics(tmp_path / "out" / "metrics.json")
    doc = json.loads(js.read_text())
    current = [r for r in doc["rows"] if r["kind"] == "current"]
    assert current[0]["codec"] == "jpeg" and current[0]["bytes"] == direct.num_bytes
    assert len([r for r in doc["rows"] if r["kind"] == "sweep"]) == len(JpegCodec.params[0].sweep)
    with cs.open() as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["bpp"]) == pytest.approx(direct.bpp)
    view = win.export_view(tmp_path / "view.png")
    assert view.exists() and Image.open(view).size[0] > 100


def test_settings_persist_between_runs(make_window, qtbot, photo, tmp_path):
    s = Settings.at(str(tmp_path / "persist.ini"))
    win = make_window(image=photo, settings_=s)
    settle(qtbot, win)
    win.cards["jpeg"].set_params({"quality": 33, "subsampling": "4:4:4"})
    win.show_view("error")
    win.error_view.set_gain(16)
    win.close()
    again = make_window(image=photo, settings_=Settings.at(str(tmp_path / "persist.ini")))
    settle(qtbot, again)
    assert again.cards["jpeg"].params() == {"quality": 33, "subsampling": "4:4:4", "tables": "standard",
                                            "scan": "baseline"}
    assert again.outcomes["jpeg"].params["quality"] == 33
    assert again.current_view() == "error" and again.error_view.gain == 16


def test_close_during_work_exits_cleanly(make_window, qtbot, photo):
    SlowJpeg.started.clear()
    win = make_window(entries=(FakeEntry("slow", "Slow JPEG", SlowJpeg),), image=photo)
    qtbot.waitUntil(SlowJpeg.started.is_set, timeout=TIMEOUT_MS)
    late = []
    win.hub.signals.encoded.connect(late.append)
    t0 = time.monotonic()
    win.close()
    assert time.monotonic() - t0 < 3.0
    worker = win.hub.workers["slow"]
    assert worker.join(3.0), "worker thread still running after close"
    qtbot.wait(100)
    assert late == []  # nothing is emitted once the window is closing


def test_signal_emits_do_not_exhaust_true():
    """PySide6 6.12 drops a reference to True per Python emit; gui.qtcompat guards against it."""
    import gc
    import sys

    import gui  # noqa: F401  (installs the guard)

    class Probe(QtCore.QObject):
        ping = QtCore.Signal(int)

    probe = Probe()
    start = sys.getrefcount(True)
    for _ in range(20_000):  # far more than True's few hundred ordinary references
        probe.ping.emit(1)
    gc.collect()
    assert sys.getrefcount(True) > 0 and (start - sys.getrefcount(True)) < start


def test_every_shortcut_has_a_working_action(make_window, qtbot, photo):
    win = make_window(image=photo)
    settle(qtbot, win)
    for key, view in (("view_wipe", "wipe"), ("view_error", "error"), ("view_bands", "bands"),
                      ("view_rd", "rd"), ("view_grid", "grid")):
        win.actions[key].trigger()
        assert win.current_view() == view
    win.actions["zoom_200"].trigger()
    assert win.sync.current_zoom() == 2.0
    win.actions["zoom_in"].trigger()
    assert win.sync.current_zoom() == 4.0
    win.actions["help"].trigger()
    assert win.help.isVisible()
    win.actions["help"].trigger()
    assert not win.help.isVisible()


def test_screenshot_cli(qtbot, photo, tmp_path):
    img = tmp_path / "in.png"
    Image.fromarray(photo).save(img)
    out = tmp_path / "shot.png"
    assert app_main(["--screenshot", str(out), str(img), "--codecs", "jpeg", "--size", "1200x750",
                     "--timeout", "30", "--png-colors", "64", "--view", "rd"]) == 0
    shot = Image.open(out)
    assert shot.size == (1200, 750) and shot.mode == "P" and len(shot.getcolors(256)) <= 64
    with pytest.raises(SystemExit) as exc:
        app_main(["--codecs", "jpeg,nosuchcodec"])
    assert exc.value.code == 2


def test_cli_bad_image_falls_back_to_the_sample(qtbot, tmp_path, monkeypatch):
    shown = []
    original = MainWindow.show_message

    def record(self, text, error=True):
        shown.append(text)
        original(self, text, error)

    monkeypatch.setattr(MainWindow, "show_message", record)
    out = tmp_path / "shot.png"
    assert app_main(["--screenshot", str(out), str(tmp_path / "missing.png"), "--codecs", "jpeg",
                     "--size", "1200x750", "--timeout", "30"]) == 0
    assert out.exists()
    assert any("missing.png" in m and "no such file" in m and "bundled sample" in m for m in shown)


@pytest.mark.slow
@pytest.mark.skipif(not {"hybrid", "wavelet"} & set(registry.CODECS), reason="no learned codec registered")
def test_learned_codecs_show_intermediates(make_window, qtbot, photo):
    entries = [registry.CODECS[n] for n in ("jpeg", "hybrid", "wavelet") if n in registry.CODECS]
    win = make_window(entries=entries, image=photo)
    names = [e.name for e in entries]
    qtbot.waitUntil(lambda: all(n in win.outcomes or n in win.failures for n in names), timeout=120_000)
    keys = {p.key for p in win.panels()}
    if "hybrid" in win.outcomes:
        assert win.outcomes["hybrid"].ok, win.outcomes["hybrid"].error
        assert {"hybrid", "hybrid:jpeg_base", "hybrid:residual", "hybrid:residual_decoded"} <= keys
        assert len(win.cards["hybrid"].bar.sections) >= 2  # JPEG base + residual sections
    if "wavelet" in win.outcomes:
        assert win.outcomes["wavelet"].ok, win.outcomes["wavelet"].error
        win.show_view("bands")
        QtWidgets.QApplication.processEvents()
        assert win.bands.latent_box.isVisible() and win.bands.latent_tablew.rowCount() >= 4
    assert "device:" in win.device_label.text()


def test_card_says_what_the_encoder_chose(qtbot, photo):
    from gui.cards import encoder_choices

    r = jpeg(photo)
    res = CodecResult("hy", {"refine": "on", "rate": 0.5}, r.bitstream, r.sections, r.image, r.width, r.height)
    chose = EncodeOutcome(1, "hy", {"refine": "auto", "rate": 0.5}, "k", False, res, measure(photo, res))
    assert encoder_choices(chose) == "refine=on"
    card = CodecCard("hy", "Hybrid", "#ffffff")
    qtbot.addWidget(card)
    card.show_outcome(chose)
    assert "encoder chose refine=on" in card.legend.text()
    assert "post-filter" not in card.legend.text()
    card.show_outcome(EncodeOutcome(2, "hy", {"refine": "on", "rate": 0.5}, "k", False, res, measure(photo, res)))
    assert "chose" not in card.legend.text()
    res.info["postfilter"] = "3 activity classes x 5 directions"  # what a learned codec's result carries
    card.show_outcome(EncodeOutcome(3, "hy", {"refine": "on", "rate": 0.5}, "k", False, res, measure(photo, res)))
    assert "post-filter: 3 activity classes x 5 directions" in card.legend.text()
