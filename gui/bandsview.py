"""The Bands view: a DWT mosaic of any panel (or of its error) and a learned codec's latent bands.

Looking at where energy sits per sub-band — in the original, in a reconstruction, and in the
error — shows which frequencies a codec spends bits on and which it drops; for the wavelet
codec the latent bands themselves are shown next to the bits, quantisation step Δ and gate
value it reports for each band.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from PySide6 import QtCore, QtWidgets

from .dwt import BAND_NAMING, WAVELETS, Band, band_energies, dwt_bands, mosaic
from .panels import Panel, luma
from .pgsetup import pg
from .state import EncodeOutcome
from .views import LazyWidget, compact
from .viewsync import ViewSync, make_image_view

__all__ = ["BandsView", "source_channel", "latent_maps", "latent_table"]

CHANNELS = ("Y (BT.601 luma)", "R", "G", "B")
BACKGROUND = 24


def source_channel(panel: Panel, error: bool, channel: str) -> np.ndarray:
    """One float64 channel of a panel in 8-bit units: its pixels, or decoded − original."""
    if panel.kind == "signed":
        rgb = np.asarray(panel.data, dtype=np.float64) * 255.0
    elif error:
        rgb = panel.data.astype(np.float64) - panel.original.astype(np.float64)
    else:
        rgb = panel.data.astype(np.float64)
    if channel.startswith("Y"):
        return luma(rgb)
    return rgb[..., "RGB".index(channel)]


def latent_maps(outcome: EncodeOutcome) -> dict[str, np.ndarray]:
    """A codec's 2-D float intermediates (latent band energy maps such as ``y_LL``)."""
    if not outcome.ok:
        return {}
    return {k: v for k, v in outcome.result.intermediates.items()
            if isinstance(v, np.ndarray) and v.ndim == 2 and np.issubdtype(v.dtype, np.floating)}


def _band_of(name: str) -> str:
    return name.split("_", 1)[1] if "_" in name else name


def _per_band(value: Any, bands: list[str]) -> dict[str, Any]:
    """Spread an info value over bands: dict by name, sequence by position, scalar to all."""
    if isinstance(value, dict):
        return {b: value.get(b, value.get(f"y_{b}")) for b in bands}
    arr = np.asarray(value) if value is not None else None
    if arr is None:
        return {}
    if arr.ndim == 0:
        return {b: arr.item() for b in bands}
    if arr.ndim == 1 and len(arr) == len(bands):
        return {b: arr[i].item() for i, b in enumerate(bands)}
    return {b: arr for b in bands} if arr.size else {}


def _fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, np.ndarray):
        return f"{v.shape} mean {float(v.mean()):.4g}" if v.size > 1 else f"{float(v):.4g}"
    if isinstance(v, float):
        return "—" if not math.isfinite(v) else f"{v:.4g}"
    return str(v)


def latent_table(outcome: EncodeOutcome) -> tuple[list[str], list[list[str]]]:
    """Header and rows: per latent band its bits, share of the bitstream, Δ and gate."""
    maps = latent_maps(outcome)
    info = outcome.result.info if outcome.ok else {}
    bands: list[str] = []
    for k in maps:
        b = _band_of(k)
        if b not in bands:
            bands.append(b)
    bits = info.get("bits_per_band")
    if isinstance(bits, dict):
        for k in bits:
            b = _band_of(str(k)) if str(k) not in ("LL", "LH", "HL", "HH") else str(k)
            if b not in bands:
                bands.append(b)
    if not bands:
        return [], []
    cols = {"bits": _per_band(bits, bands), "Δ": _per_band(info.get("delta"), bands),
            "gate": _per_band(info.get("gate"), bands)}
    total = float(outcome.metrics.num_bytes * 8) if outcome.ok else math.nan
    rows = []
    for b in bands:
        nbits = cols["bits"].get(b)
        share = (f"{100 * float(nbits) / total:.1f} %" if isinstance(nbits, (int, float)) and total > 0
                 else "—")
        rows.append([b, _fmt(nbits), share, _fmt(cols["Δ"].get(b)), _fmt(cols["gate"].get(b))])
    return ["band", "bits", "of file", "Δ (step)", "gate"], rows


class BandsView(LazyWidget):
    """DWT mosaic with per-band energy, plus the wavelet codec's latent bands when present."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.panels: list[Panel] = []
        self.outcomes: dict[str, EncodeOutcome] = {}
        self.titles: dict[str, str] = {}
        self.flip = False
        self.bands: list[Band] = []
        self.sync = ViewSync(self)
        bar = QtWidgets.QHBoxLayout()
        self.source_combo = QtWidgets.QComboBox()
        self.source_combo.setObjectName("bands_source")
        compact(self.source_combo, 10)
        self.wavelet_combo = QtWidgets.QComboBox()
        self.wavelet_combo.addItems(list(WAVELETS))
        self.levels_spin = QtWidgets.QSpinBox()
        self.levels_spin.setRange(1, 6)
        self.levels_spin.setValue(3)
        self.channel_combo = compact(QtWidgets.QComboBox(), 6)
        self.channel_combo.addItems(list(CHANNELS))
        self.norm_combo = compact(QtWidgets.QComboBox(), 8)
        self.norm_combo.addItem("normalise per band", "band")
        self.norm_combo.addItem("shared scale (detail bands)", "shared")
        for w, text in ((self.source_combo, "source"), (self.wavelet_combo, "wavelet"),
                        (self.levels_spin, "levels"), (self.channel_combo, "channel"),
                        (self.norm_combo, None)):
            if text:
                bar.addWidget(QtWidgets.QLabel(text))
            bar.addWidget(w)
        bar.addStretch(1)
        for sig in (self.source_combo.currentIndexChanged, self.wavelet_combo.currentIndexChanged,
                    self.levels_spin.valueChanged, self.channel_combo.currentIndexChanged,
                    self.norm_combo.currentIndexChanged):
            sig.connect(lambda *_: self.refresh())
        naming = QtWidgets.QLabel("Naming — " + BAND_NAMING + " · layout as in JPEG 2000")
        naming.setWordWrap(True)
        naming.setStyleSheet("color: #9aa0a6; font-size: 11px;")
        self.glw = pg.GraphicsLayoutWidget()
        self.vb = make_image_view()
        self.glw.addItem(self.vb)
        self.item = pg.ImageItem(autoDownsample=True)
        self.item.setLevels((0, 255))
        self.vb.addItem(self.item)
        self.sync.add(self.vb)
        self.tile_labels: list[pg.TextItem] = []
        self.table = QtWidgets.QTableWidget(0, 5)
        self.table.setObjectName("band_energy")
        self.table.setHorizontalHeaderLabels(["band", "pywt", "size", "mean square", "energy share"])
        self.table.verticalHeader().setVisible(False)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.horizontalHeader().setStretchLastSection(True)
        # Latent bands of a learned codec.
        self.latent_box = QtWidgets.QGroupBox("codec latent bands")
        lbox = QtWidgets.QVBoxLayout(self.latent_box)
        self.latent_codec = QtWidgets.QComboBox()
        self.latent_codec.currentIndexChanged.connect(lambda *_: self.refresh())
        lbox.addWidget(self.latent_codec)
        self.latent_glw = pg.GraphicsLayoutWidget()
        self.latent_glw.setMinimumHeight(160)
        lbox.addWidget(self.latent_glw, 1)
        self.latent_tablew = QtWidgets.QTableWidget(0, 5)
        self.latent_tablew.setObjectName("latent_table")
        self.latent_tablew.verticalHeader().setVisible(False)
        self.latent_tablew.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        lbox.addWidget(self.latent_tablew)
        self.latent_box.hide()
        side = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        side.addWidget(self.table)
        side.addWidget(self.latent_box)
        for table in (self.table, self.latent_tablew):
            table.verticalHeader().setDefaultSectionSize(20)
            table.setSizeAdjustPolicy(QtWidgets.QAbstractScrollArea.SizeAdjustPolicy.AdjustToContents)
        side.setMinimumWidth(380)
        self.table.setMinimumHeight(120)
        side.setStretchFactor(0, 2)
        side.setStretchFactor(1, 3)
        side.setSizes([250, 450])
        split = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        split.addWidget(self.glw)
        split.addWidget(side)
        split.setStretchFactor(0, 3)
        split.setStretchFactor(1, 2)
        split.setSizes([600, 440])
        self.splitter = split
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(naming)
        lay.addWidget(split, 1)

    # -- data in ---------------------------------------------------------------------------------
    def set_data(self, panels: list[Panel], outcomes: dict[str, EncodeOutcome], titles: dict[str, str]) -> None:
        self.panels = list(panels)
        self.outcomes = dict(outcomes)
        self.titles = dict(titles)
        items = []
        for p in panels:
            items.append((p.title, f"{p.key}|pixels"))
            if p.is_picture and p.key != "original":
                items.append((f"error: {p.title}", f"{p.key}|error"))
        _fill_combo(self.source_combo, items)
        latent = [(titles.get(n, n), n) for n, o in outcomes.items() if latent_maps(o)]
        _fill_combo(self.latent_codec, latent)
        self.latent_box.setVisible(bool(latent))
        self.refresh()

    def set_flip(self, on: bool) -> None:
        if on != self.flip:
            self.flip = on
            self.refresh()

    def select_source(self, key: str, error: bool = False) -> None:
        i = self.source_combo.findData(f"{key}|{'error' if error else 'pixels'}")
        if i >= 0:
            self.source_combo.setCurrentIndex(i)

    def options(self) -> dict[str, Any]:
        return {"wavelet": self.wavelet_combo.currentText(), "levels": self.levels_spin.value(),
                "channel": self.channel_combo.currentText(), "normalise": self.norm_combo.currentData()}

    def set_options(self, wavelet: str | None = None, levels: int | None = None,
                    channel: str | None = None, normalise: str | None = None) -> None:
        if wavelet in WAVELETS:
            self.wavelet_combo.setCurrentText(wavelet)
        if levels:
            self.levels_spin.setValue(int(levels))
        if channel in CHANNELS:
            self.channel_combo.setCurrentText(channel)
        if normalise is not None:
            i = self.norm_combo.findData(normalise)
            if i >= 0:
                self.norm_combo.setCurrentIndex(i)

    def toggle_normalise(self) -> None:
        self.norm_combo.setCurrentIndex(1 - self.norm_combo.currentIndex())

    # -- rendering -------------------------------------------------------------------------------
    def current_source(self) -> tuple[Panel | None, bool]:
        data = self.source_combo.currentData() or ""
        key, _, what = data.partition("|")
        if self.flip:
            return next((p for p in self.panels if p.key == "original"), None), False
        return next((p for p in self.panels if p.key == key), None), what == "error"

    def render(self) -> None:
        panel, error = self.current_source()
        for t in self.tile_labels:
            self.vb.removeItem(t)
        self.tile_labels = []
        if panel is None:
            self.item.clear()
            self.table.setRowCount(0)
            self.bands = []
        else:
            opts = self.options()
            chan = source_channel(panel, error, opts["channel"])
            self.bands = dwt_bands(chan, opts["wavelet"], opts["levels"])
            mos = mosaic(self.bands, opts["normalise"])
            img = np.where(np.isnan(mos.image), BACKGROUND / 255.0, mos.image)
            self.item.setImage(np.ascontiguousarray(np.round(img * 255).astype(np.uint8)),
                               autoLevels=False, levels=(0, 255))
            h, w = mos.image.shape
            self.sync.set_extent(w, h)
            energies = band_energies(self.bands)
            for band, x, y, _w, _h in mos.tiles:
                t = pg.TextItem(band.label, color="#ffd166", anchor=(0, 0))
                t.setPos(x, y)
                self.vb.addItem(t)
                self.tile_labels.append(t)
            self.table.setRowCount(len(self.bands))
            for r, (band, (label, ms, share)) in enumerate(zip(self.bands, energies)):
                cells = [label, band.pywt_name, f"{band.coeffs.shape[1]}×{band.coeffs.shape[0]}",
                         f"{ms:.4g}", f"{100 * share:.3f} %"]
                for c, text in enumerate(cells):
                    self.table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
            self.table.resizeColumnsToContents()
        self._render_latent()

    def _render_latent(self) -> None:
        name = self.latent_codec.currentData()
        outcome = self.outcomes.get(name) if name else None
        self.latent_glw.clear()
        if outcome is None:
            self.latent_tablew.setRowCount(0)
            return
        maps = latent_maps(outcome)
        shared = self.norm_combo.currentData() == "shared"
        rows: dict[str, list[tuple[str, np.ndarray]]] = {}
        for k, v in maps.items():
            prefix = k.split("_", 1)[0] if "_" in k else ""
            rows.setdefault(prefix, []).append((k, v))
        lut = pg.colormap.get("viridis").getLookupTable(nPts=256)
        for r, (prefix, items) in enumerate(rows.items()):
            top = max((float(np.nanmax(v)) for _, v in items if v.size), default=1.0)
            for c, (k, v) in enumerate(items):
                vb = make_image_view()
                vb.setMouseEnabled(False, False)
                it = pg.ImageItem(np.ascontiguousarray(v.astype(np.float32)), lut=lut)
                lo, hi = (0.0, top) if shared else (float(np.nanmin(v)), float(np.nanmax(v)))
                it.setLevels((lo, hi if hi > lo else lo + 1))
                vb.addItem(it)
                self.latent_glw.addLabel(f"{k} ({v.shape[1]}×{v.shape[0]})", row=2 * r, col=c, size="8pt")
                self.latent_glw.addItem(vb, row=2 * r + 1, col=c)
        header, table_rows = latent_table(outcome)
        self.latent_tablew.setColumnCount(len(header))
        self.latent_tablew.setHorizontalHeaderLabels(header)
        self.latent_tablew.setRowCount(len(table_rows))
        for r, row in enumerate(table_rows):
            for c, text in enumerate(row):
                self.latent_tablew.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        self.latent_tablew.resizeColumnsToContents()


def _fill_combo(combo: QtWidgets.QComboBox, items: list[tuple[str, str]]) -> None:
    if [(combo.itemText(i), combo.itemData(i)) for i in range(combo.count())] == items:
        return
    current = combo.currentData()
    combo.blockSignals(True)
    combo.clear()
    for text, data in items:
        combo.addItem(text, data)
    i = combo.findData(current) if current is not None else -1
    combo.setCurrentIndex(max(i, 0) if items else -1)
    combo.blockSignals(False)
