"""The R-D plot: per-codec sweeps on the current image, live operating points, published curves.

Each codec's curve is a background sweep of its rate parameter on the image being studied,
with its other parameters as currently set; the large star is the current slider setting, and
clicking a sweep point moves that codec's controls there. Published Kodak curves (CompressAI
JSON format, ``../shared/anchors/kodak`` or a user-chosen folder) are dashed overlays — they are
dataset averages, not this image. BD-rates (Bjøntegaard, VCEG-M33; PCHIP variant from
:mod:`codec.metrics`) compare each codec's sweep with the JPEG sweep on the same image.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6 import QtCore, QtWidgets

from .cards import codec_color
from .pgsetup import pg
from .state import SweepPoint
from .views import LazyWidget

__all__ = ["Curve", "AnchorCurve", "default_anchor_dir", "load_anchor_dir", "bd_rows", "RDPlot", "METRICS"]

log = logging.getLogger(__name__)

METRICS = {"psnr": "PSNR-RGB (dB)", "ms_ssim_db": "MS-SSIM (dB)"}
_ANCHOR_COLORS = ["#bbbbbb", "#f4a261", "#e76f51", "#2a9d8f", "#a78bfa", "#f472b6", "#94a3b8",
                  "#facc15", "#60a5fa", "#fb7185", "#34d399", "#c084fc", "#fdba74", "#a3e635"]


@dataclass
class Curve:
    """A codec's sweep on the current image, filled point by point as the worker reports."""

    codec: str
    generation: int
    total: int
    points: dict[int, SweepPoint] = field(default_factory=dict)

    def sorted_points(self) -> list[SweepPoint]:
        return sorted((p for p in self.points.values() if p.error is None and math.isfinite(p.bpp)),
                      key=lambda p: p.bpp)

    def series(self, metric: str) -> tuple[list[float], list[float]]:
        pts = [p for p in self.sorted_points() if math.isfinite(getattr(p, metric))]
        return [p.bpp for p in pts], [getattr(p, metric) for p in pts]

    @property
    def done(self) -> bool:
        return self.total > 0 and len(self.points) >= self.total


@dataclass(frozen=True)
class AnchorCurve:
    name: str
    path: str
    bpp: tuple[float, ...]
    psnr: tuple[float, ...]
    ms_ssim_db: tuple[float, ...] = ()

    def series(self, metric: str) -> tuple[list[float], list[float]]:
        ys = self.psnr if metric == "psnr" else self.ms_ssim_db
        if len(ys) != len(self.bpp):
            return [], []
        return list(self.bpp), list(ys)


def default_anchor_dir() -> Path | None:
    """``../shared/anchors/kodak`` next to the repository, when it exists."""
    p = Path(__file__).resolve().parent.parent.parent / "shared" / "anchors" / "kodak"
    return p if p.is_dir() else None


def load_anchor_dir(folder: str | Path) -> tuple[list[AnchorCurve], list[str]]:
    """Every CompressAI-format JSON in ``folder``; files that are not are listed as problems."""
    from codec import metrics
    from codec.evaluate import read_curve

    curves, problems = [], []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            c = read_curve(path)
        except (ValueError, KeyError, TypeError, OSError) as err:
            problems.append(f"{path.name}: {err}")
            continue
        ssim_db = tuple(metrics.ms_ssim_db(float(v)) for v in c.ms_ssim) if c.ms_ssim else ()
        curves.append(AnchorCurve(c.name, str(path), tuple(c.bpp), tuple(c.psnr), ssim_db))
    return curves, problems


def bd_rows(curves: dict[str, tuple[list[float], list[float]]], reference: str,
            titles: dict[str, str]) -> list[tuple[str, float, float]]:
    """``(title, BD-rate %, BD-PSNR dB)`` of every curve against ``curves[reference]``."""
    from codec import metrics

    ref = curves.get(reference)
    rows = []
    for name, curve in curves.items():
        if name == reference:
            continue
        rate = psnr = math.nan
        if ref is not None and len(ref[0]) >= 2 and len(curve[0]) >= 2:
            try:
                rate = metrics.bd_rate(ref, curve)
                psnr = metrics.bd_psnr(ref, curve)
            except ValueError:
                pass
        rows.append((titles.get(name, name), rate, psnr))
    return rows


class RDPlot(LazyWidget):
    """Plot + anchor list + BD table. ``pointClicked(codec, params)`` when a sweep point is clicked."""

    pointClicked = QtCore.Signal(str, dict)
    metricChanged = QtCore.Signal(str)
    anchorFolderRequested = QtCore.Signal()

    def __init__(self, parent=None):
        super().__init__(parent)
        self.metric = "psnr"
        self.curves: dict[str, Curve] = {}
        self.current: dict[str, tuple[float, float, float]] = {}  # codec -> bpp, psnr, ms_ssim_db
        self.titles: dict[str, str] = {}
        self.order: list[str] = []
        self.anchors: list[AnchorCurve] = []
        self.checked_anchors: set[str] = set()
        self.note = ""
        self.plot = pg.PlotWidget()
        self.plot.setObjectName("rd_plot")
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.setLabel("bottom", "bits per pixel (from .lic file bytes)")
        self.plot.setLabel("left", METRICS["psnr"])
        self.legend = self.plot.addLegend(offset=(-10, -10), labelTextSize="8pt")
        self.plot.getPlotItem().setMenuEnabled(False)
        self.metric_combo = QtWidgets.QComboBox()
        for key, text in METRICS.items():
            self.metric_combo.addItem(text, key)
        self.metric_combo.currentIndexChanged.connect(lambda _i: self.set_metric(self.metric_combo.currentData()))
        self.status = QtWidgets.QLabel("")
        self.status.setStyleSheet("color: #9aa0a6;")
        self.status.setWordWrap(True)
        self.anchor_list = QtWidgets.QListWidget()
        self.anchor_list.setObjectName("anchor_list")
        self.anchor_list.itemChanged.connect(self._anchor_toggled)
        self.anchor_label = QtWidgets.QLabel("Published Kodak curves (dataset averages)")
        self.anchor_label.setWordWrap(True)
        folder_btn = QtWidgets.QPushButton("Folder…")
        folder_btn.setToolTip("Choose a folder of CompressAI-format results JSONs")
        folder_btn.clicked.connect(self.anchorFolderRequested.emit)
        self.bd_table = QtWidgets.QTableWidget(0, 3)
        self.bd_table.setObjectName("bd_table")
        self.bd_table.setHorizontalHeaderLabels(["vs JPEG (this image)", "BD-rate", "BD-PSNR"])
        self.bd_table.verticalHeader().setVisible(False)
        self.bd_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.bd_table.horizontalHeader().setStretchLastSection(True)
        side = QtWidgets.QVBoxLayout()
        row = QtWidgets.QHBoxLayout()
        row.addWidget(QtWidgets.QLabel("y axis"))
        row.addWidget(self.metric_combo, 1)
        side.addLayout(row)
        bd_label = QtWidgets.QLabel("<b>BD vs JPEG</b> — this image: codec sweeps vs the JPEG sweep; "
                                    "Kodak rows: published curves vs published JPEG. Negative rate = fewer bits.")
        bd_label.setWordWrap(True)
        side.addWidget(bd_label)
        side.addWidget(self.bd_table, 1)
        row2 = QtWidgets.QHBoxLayout()
        row2.addWidget(self.anchor_label, 1)
        row2.addWidget(folder_btn)
        side.addLayout(row2)
        side.addWidget(self.anchor_list, 2)
        side_w = QtWidgets.QWidget()
        side_w.setLayout(side)
        side_w.setMaximumWidth(330)
        top = QtWidgets.QHBoxLayout()
        left = QtWidgets.QVBoxLayout()
        left.addWidget(self.plot, 1)
        left.addWidget(self.status)
        top.addLayout(left, 1)
        top.addWidget(side_w)
        self.setLayout(top)
        self._items: list[Any] = []
        self._scatter: dict[str, pg.ScatterPlotItem] = {}

    # -- data ----------------------------------------------------------------------------------
    def set_codecs(self, order: list[str], titles: dict[str, str]) -> None:
        self.order = list(order)
        self.titles = dict(titles)
        self.refresh()

    def reset_curve(self, codec: str, generation: int, total: int) -> None:
        self.curves[codec] = Curve(codec, generation, total)
        self.refresh()

    def drop_codec(self, codec: str) -> None:
        self.curves.pop(codec, None)
        self.current.pop(codec, None)
        self.refresh()

    def add_point(self, point: SweepPoint) -> bool:
        curve = self.curves.get(point.codec)
        if curve is None or curve.generation != point.generation:
            return False  # from a superseded sweep
        curve.total = point.total
        curve.points[point.index] = point
        self.refresh()
        return True

    def set_current(self, codec: str, bpp: float, psnr: float, ms_ssim_db: float) -> None:
        self.current[codec] = (bpp, psnr, ms_ssim_db)
        self.refresh()

    def set_metric(self, metric: str) -> None:
        if metric not in METRICS:
            raise ValueError(f"metric {metric!r}; valid: {', '.join(METRICS)}")
        if metric != self.metric:
            self.metric = metric
            i = self.metric_combo.findData(metric)
            if i != self.metric_combo.currentIndex():
                self.metric_combo.setCurrentIndex(i)
            self.metricChanged.emit(metric)
            self.refresh()

    def set_anchors(self, anchors: list[AnchorCurve], checked: set[str], source: str) -> None:
        self.anchors = list(anchors)
        self.checked_anchors = set(checked)
        self.anchor_label.setText(f"Published curves from {source} (dataset averages, not this image)"
                                  if anchors else f"No published curves found ({source})")
        self.anchor_list.blockSignals(True)
        self.anchor_list.clear()
        for a in anchors:
            it = QtWidgets.QListWidgetItem(a.name)
            it.setFlags(it.flags() | QtCore.Qt.ItemFlag.ItemIsUserCheckable)
            it.setCheckState(QtCore.Qt.CheckState.Checked if a.name in checked else QtCore.Qt.CheckState.Unchecked)
            it.setToolTip(a.path)
            self.anchor_list.addItem(it)
        self.anchor_list.blockSignals(False)
        self.refresh()

    def _anchor_toggled(self, item: QtWidgets.QListWidgetItem) -> None:
        if item.checkState() == QtCore.Qt.CheckState.Checked:
            self.checked_anchors.add(item.text())
        else:
            self.checked_anchors.discard(item.text())
        self.refresh()

    def series(self) -> dict[str, tuple[list[float], list[float]]]:
        """Sweep curves of the current metric, by codec (what the BD table uses)."""
        return {c: self.curves[c].series(self.metric) for c in self.order if c in self.curves}

    def bd(self) -> list[tuple[str, float, float]]:
        """BD of each codec's sweep against the JPEG sweep on this image (current metric)."""
        return bd_rows(self.series(), "jpeg", self.titles)

    def anchor_bd(self) -> list[tuple[str, float, float]]:
        """BD of each shown published curve against the published JPEG curve (Kodak averages)."""
        shown = {a.name: a.series(self.metric) for a in self.anchors
                 if a.name in self.checked_anchors or a.name == "JPEG"}
        if "JPEG" not in shown:
            return []
        rows = bd_rows({k: v for k, v in shown.items() if v[0]}, "JPEG", {})
        return [(f"Kodak · {name}", r, d) for name, r, d in rows if name in self.checked_anchors]

    # -- drawing -------------------------------------------------------------------------------
    def render(self) -> None:
        p = self.plot
        for it in self._items:
            p.removeItem(it)
        self._items = []
        self._scatter = {}
        self.legend.clear()
        p.setLabel("left", METRICS[self.metric])
        idx = 1 if self.metric == "psnr" else 2
        xs_all: list[float] = []
        for i, a in enumerate(self.anchors):
            if a.name not in self.checked_anchors:
                continue
            x, y = a.series(self.metric)
            if not x:
                continue
            color = _ANCHOR_COLORS[i % len(_ANCHOR_COLORS)]
            item = p.plot(x, y, pen=pg.mkPen(color, width=1.2, style=QtCore.Qt.PenStyle.DashLine),
                          symbol="t", symbolSize=4, symbolBrush=color, symbolPen=None, name=f"Kodak · {a.name}")
            self._items.append(item)
        for k, codec in enumerate(self.order):
            color = codec_color(codec, k)
            title = self.titles.get(codec, codec)
            curve = self.curves.get(codec)
            if curve is not None:
                x, y = curve.series(self.metric)
                xs_all += x
                if x:
                    line = p.plot(x, y, pen=pg.mkPen(color, width=2), name=f"{title} (this image)")
                    self._items.append(line)
                    pts = [q for q in curve.sorted_points() if math.isfinite(getattr(q, self.metric))]
                    sc = pg.ScatterPlotItem(
                        x=x, y=y, data=[(codec, q.params) for q in pts], size=9, brush=color,
                        pen=pg.mkPen("#1e1f22"), hoverable=True, hoverSize=13,
                        tip=lambda x, y, data: f"{data[0]} {_fmt_params(data[1])}\n{x:.3f} bpp, {y:.2f}")
                    sc.sigClicked.connect(self._clicked)
                    p.addItem(sc)
                    self._items.append(sc)
                    self._scatter[codec] = sc
            cur = self.current.get(codec)
            if cur is not None and math.isfinite(cur[0]) and math.isfinite(cur[idx]):
                star = pg.ScatterPlotItem(x=[cur[0]], y=[cur[idx]], symbol="star", size=20, brush=color,
                                          pen=pg.mkPen("#ffffff", width=1.5))
                p.addItem(star)
                self._items.append(star)
                xs_all.append(cur[0])
        if xs_all:
            p.setXRange(0, max(xs_all) * 1.08, padding=0)
            p.enableAutoRange(axis="y")
        self._render_bd()
        done = [c for c in self.order if c in self.curves]
        parts = [f"{self.titles.get(c, c)} {len(self.curves[c].points)}/{self.curves[c].total or '?'}"
                 for c in done if not self.curves[c].done]
        self.status.setText((("sweeping: " + ", ".join(parts) + " · ") if parts else "")
                            + "click a point to move that codec's slider there; ★ = current setting"
                            + (f" · {self.note}" if self.note else ""))

    def _render_bd(self) -> None:
        rows = self.bd() + self.anchor_bd()
        unit = "PSNR" if self.metric == "psnr" else "MS-SSIM"
        self.bd_table.setHorizontalHeaderLabels(["vs JPEG", "BD-rate", f"BD-{unit}"])
        self.bd_table.setRowCount(len(rows))
        for r, (name, rate, dpsnr) in enumerate(rows):
            cells = [name, "n/a" if math.isnan(rate) else f"{rate:+.1f} %",
                     "n/a" if math.isnan(dpsnr) else f"{dpsnr:+.2f} dB"]
            for c, text in enumerate(cells):
                self.bd_table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
        self.bd_table.resizeColumnsToContents()

    def _clicked(self, _item, points, *_args) -> None:
        if len(points):
            codec, params = points[0].data()
            self.pointClicked.emit(codec, dict(params))


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())
