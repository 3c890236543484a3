"""Grid, wipe and error views over the shared :class:`~gui.panels.Panel` catalogue.

All three put every image on the full-resolution pixel grid (a preview coded while dragging is
stretched with ``ImageItem.setRect``), register their ViewBoxes with one :class:`ViewSync`,
report the pixel under the mouse (``hovered``), and show the original in place of everything
while the flip key is held (tev's reference flip). Views render lazily: a hidden tab only
remembers that it is out of date.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PySide6 import QtCore, QtGui, QtWidgets

from .panels import Panel, abs_error, signed_error, signed_to_rgb
from .pgsetup import pg
from .viewsync import ViewSync, connect_hover, make_image_item, make_image_view

__all__ = ["compact", "LazyWidget", "PanelView", "GridView", "WipeView", "ErrorView", "ERROR_GAINS", "grid_columns"]

ERROR_GAINS = (1, 2, 4, 8, 16, 32, 64)


def compact(combo: QtWidgets.QComboBox, chars: int = 12) -> QtWidgets.QComboBox:
    """Let a combo box shrink to ``chars`` characters so narrow windows still lay out."""
    combo.setSizeAdjustPolicy(QtWidgets.QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
    combo.setMinimumContentsLength(chars)
    return combo


def _place(item: "pg.ImageItem", panel: Panel, data: np.ndarray) -> None:
    item.setImage(data, autoLevels=False, levels=(0, 255))
    item.setRect(QtCore.QRectF(0, 0, panel.extent[0], panel.extent[1]))


def _display(panel: Panel, gain: float) -> np.ndarray:
    return signed_to_rgb(panel.data, gain) if panel.kind == "signed" else panel.data


def grid_columns(n: int, width: float, height: float, aspect: float, label_h: float = 22) -> int:
    """Columns that make ``n`` cells of image aspect ``aspect`` (w/h) as large as possible."""
    best, best_scale = 1, -1.0
    for cols in range(1, max(1, n) + 1):
        rows = math.ceil(n / cols)
        cw, ch = width / cols, height / rows - label_h
        scale = min(cw / aspect, ch) if ch > 0 else 0
        if scale > best_scale + 1e-9:
            best, best_scale = cols, scale
    return best


class LazyWidget(QtWidgets.QWidget):
    """A widget that draws only when visible: while hidden, ``refresh`` just marks it stale,
    so dragging a slider never pays for tabs nobody is looking at."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self._dirty = True

    def refresh(self) -> None:
        self._dirty = True
        if self.isVisible():
            self._dirty = False
            self.render()

    def showEvent(self, event: QtGui.QShowEvent) -> None:
        super().showEvent(event)
        if self._dirty:
            self._dirty = False
            self.render()

    def render(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class PanelView(LazyWidget):
    """Base of the image views: panel list, flip and hover plumbing."""

    hovered = QtCore.Signal(object, float, float)  # Panel, x, y in full-resolution pixels

    def __init__(self, sync: ViewSync, parent=None):
        super().__init__(parent)
        self.sync = sync
        self.panels: list[Panel] = []
        self.flip = False

    def panel(self, key: str) -> Panel | None:
        return next((p for p in self.panels if p.key == key), None)

    @property
    def original(self) -> Panel | None:
        return self.panel("original")

    def set_panels(self, panels: list[Panel]) -> None:
        self.panels = list(panels)
        self.refresh()

    def set_flip(self, on: bool) -> None:
        if on != self.flip:
            self.flip = on
            self.refresh()



@dataclass
class _Slot:
    label: "pg.LabelItem"
    vb: "pg.ViewBox"
    item: "pg.ImageItem"
    panel: Panel | None = None
    shown: object = None  # identity of the array last given to the item


class GridView(PanelView):
    """Every panel side by side (original, each codec and its intermediates)."""

    def __init__(self, sync: ViewSync, parent=None):
        super().__init__(sync, parent)
        self.hidden: set[str] = set()
        self.gain = 4.0
        self.glw = pg.GraphicsLayoutWidget()
        self.glw.ci.layout.setSpacing(4)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addWidget(self.glw)
        self.slots: dict[str, _Slot] = {}
        self._layout_key: tuple = ()
        self._hover = connect_hover(self.glw, lambda: [(s.vb, s.panel) for s in self.slots.values()],
                                    lambda p, x, y: self.hovered.emit(p, x, y) if p else None)

    def visible_panels(self) -> list[Panel]:
        return [p for p in self.panels if p.key not in self.hidden]

    def set_hidden(self, keys: set[str]) -> None:
        self.hidden = set(keys)
        self.refresh()

    def set_gain(self, gain: float) -> None:
        self.gain = float(gain)
        for s in self.slots.values():
            s.shown = None
        self.refresh()

    def resizeEvent(self, event: QtGui.QResizeEvent) -> None:
        super().resizeEvent(event)
        self.refresh()

    def render(self) -> None:
        panels = self.visible_panels()
        if not panels:
            self._rebuild([], 1)
            return
        w, h = panels[0].extent
        cols = grid_columns(len(panels), max(self.width(), 1), max(self.height(), 1), w / max(h, 1))
        key = (tuple(p.key for p in panels), cols)
        if key != self._layout_key:
            self._rebuild(panels, cols)
            self._layout_key = key
        original = self.original
        for p in panels:
            s = self.slots[p.key]
            s.panel = p
            shown = original if (self.flip and original is not None) else p
            data = shown.data if shown is original else _display(p, self.gain)
            ident = (id(shown.data), self.flip, self.gain if p.kind == "signed" else None)
            if s.shown != ident:
                _place(s.item, shown, data)
                s.shown = ident
            title = "Original (flip)" if self.flip else p.title
            sub = "" if self.flip else p.subtitle
            s.label.setText(f"<b>{title}</b>" + (f"&nbsp;&nbsp;<span style='color:#9aa0a6'>{sub}</span>"
                                                 if sub else ""), size="9pt")
            s.label.setMinimumWidth(0)  # equal columns: a long title must not widen its column

    def _rebuild(self, panels: list[Panel], cols: int) -> None:
        for s in self.slots.values():
            self.sync.remove(s.vb)
        self.glw.clear()
        self.slots = {}
        for i, p in enumerate(panels):
            r, c = divmod(i, cols)
            label = pg.LabelItem(justify="left")
            label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
            self.glw.addItem(label, row=2 * r, col=c)
            vb = make_image_view()
            item = make_image_item()
            vb.addItem(item)
            self.glw.addItem(vb, row=2 * r + 1, col=c)
            self.slots[p.key] = _Slot(label, vb, item, p)
        grid = self.glw.ci.layout
        for c in range(cols):
            grid.setColumnStretchFactor(c, 1)
            grid.setColumnPreferredWidth(c, 10)
        for r in range(math.ceil(len(panels) / cols) if panels else 0):
            grid.setRowStretchFactor(2 * r, 0)
            grid.setRowStretchFactor(2 * r + 1, 1)
        for s in self.slots.values():
            self.sync.add(s.vb)


class WipeView(PanelView):
    """Two panels split by a draggable line (Squoosh's view, with any pair of panels)."""

    def __init__(self, sync: ViewSync, parent=None):
        super().__init__(sync, parent)
        self.split = 0.5
        self.gain = 4.0
        bar = QtWidgets.QHBoxLayout()
        self.left_combo = QtWidgets.QComboBox()
        self.right_combo = QtWidgets.QComboBox()
        self.left_combo.setObjectName("wipe_left")
        self.right_combo.setObjectName("wipe_right")
        self._chosen = False  # True once the user picked a side: then never auto-select
        for combo in (self.left_combo, self.right_combo):
            compact(combo, 16)
            combo.currentIndexChanged.connect(lambda _i: self.refresh())
            combo.activated.connect(lambda _i: setattr(self, "_chosen", True))
        bar.addWidget(QtWidgets.QLabel("left"))
        bar.addWidget(self.left_combo)
        bar.addStretch(1)
        self.hint = QtWidgets.QLabel("drag the line · J / K / L snap it")
        self.hint.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        self.hint.setStyleSheet("color: #9aa0a6;")
        bar.addWidget(self.hint)
        bar.addStretch(1)
        bar.addWidget(QtWidgets.QLabel("right"))
        bar.addWidget(self.right_combo)
        self.glw = pg.GraphicsLayoutWidget()
        self.vb = make_image_view()
        self.glw.addItem(self.vb)
        self.right_item = make_image_item()
        self.vb.addItem(self.right_item)
        self.clip = QtWidgets.QGraphicsRectItem()
        self.clip.setFlag(QtWidgets.QGraphicsItem.GraphicsItemFlag.ItemClipsChildrenToShape, True)
        self.clip.setPen(QtGui.QPen(QtCore.Qt.PenStyle.NoPen))
        self.clip.setZValue(1)
        self.vb.addItem(self.clip)
        self.left_item = make_image_item()
        self.left_item.setParentItem(self.clip)
        self.line = pg.InfiniteLine(angle=90, movable=True, pen=pg.mkPen("#ffffff", width=2),
                                    hoverPen=pg.mkPen("#E69F00", width=3))
        self.line.setZValue(10)
        self.vb.addItem(self.line)
        self.line.sigPositionChanged.connect(self._line_moved)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.glw)
        self.sync.add(self.vb)
        self._hover = connect_hover(self.glw, lambda: [(self.vb, None)], self._hover_at)
        self._shown: dict[str, object] = {}

    def sides(self) -> tuple[Panel | None, Panel | None]:
        return self.panel(self.left_combo.currentData() or ""), self.panel(self.right_combo.currentData() or "")

    def select(self, left: str | None = None, right: str | None = None) -> None:
        for combo, key in ((self.left_combo, left), (self.right_combo, right)):
            if key is not None:
                i = combo.findData(key)
                if i >= 0:
                    combo.setCurrentIndex(i)
                    self._chosen = True

    def set_panels(self, panels: list[Panel]) -> None:
        self.panels = list(panels)
        keys = [p.key for p in panels]
        for combo, fallback in ((self.left_combo, 0), (self.right_combo, 1)):
            current = combo.currentData()
            if [combo.itemData(i) for i in range(combo.count())] != keys:
                combo.blockSignals(True)
                combo.clear()
                for p in panels:
                    combo.addItem(p.title, p.key)
                i = combo.findData(current) if current is not None else -1
                if i < 0 or (not self._chosen and fallback == 1 and current == "original"):
                    i = min(fallback, combo.count() - 1)  # until the user chooses: original | first codec
                combo.setCurrentIndex(i)
                combo.blockSignals(False)
        self.refresh()

    def snap(self, fraction: float) -> None:
        self.split = min(max(fraction, 0.0), 1.0)
        self.refresh()

    def _line_moved(self) -> None:
        w = self.panels[0].extent[0] if self.panels else 1
        x = min(max(self.line.value(), 0.0), float(w))
        self.split = x / w
        self._update_clip()

    def _update_clip(self) -> None:
        if not self.panels:
            return
        w, h = self.panels[0].extent
        self.clip.setRect(QtCore.QRectF(0, 0, self.split * w, h))

    def render(self) -> None:
        left, right = self.sides()
        original = self.original
        for item, panel, side in ((self.left_item, left, "l"), (self.right_item, right, "r")):
            if panel is None:
                item.clear()
                self._shown[side] = None
                continue
            shown = original if (self.flip and original is not None) else panel
            ident = (id(shown.data), self.gain if shown.kind == "signed" else None)
            if self._shown.get(side) != ident:
                _place(item, shown, _display(shown, self.gain))
                self._shown[side] = ident
        if self.panels:
            w = self.panels[0].extent[0]
            self.line.blockSignals(True)
            self.line.setValue(self.split * w)
            self.line.setBounds((0, w))
            self.line.blockSignals(False)
            self._update_clip()

    def _hover_at(self, _tag, x: float, y: float) -> None:
        left, right = self.sides()
        w = self.panels[0].extent[0] if self.panels else 1
        panel = left if x < self.split * w else right
        if panel is not None:
            self.hovered.emit(panel, x, y)


class ErrorView(PanelView):
    """Signed error on a diverging map with symmetric levels, or an |error| heat map."""

    def __init__(self, sync: ViewSync, parent=None):
        super().__init__(sync, parent)
        self.mode = "signed"
        self.gain = 8
        bar = QtWidgets.QHBoxLayout()
        self.target_combo = QtWidgets.QComboBox()
        self.target_combo.setObjectName("error_target")
        compact(self.target_combo, 14)
        self.target_combo.currentIndexChanged.connect(lambda _i: self.refresh())
        self.mode_combo = compact(QtWidgets.QComboBox(), 14)
        self.mode_combo.addItem("signed error (mean of R,G,B)", "signed")
        self.mode_combo.addItem("|error| heat map (RMS of R,G,B)", "abs")
        self.mode_combo.currentIndexChanged.connect(lambda _i: self.set_mode(self.mode_combo.currentData()))
        self.gain_slider = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        self.gain_slider.setRange(0, len(ERROR_GAINS) - 1)
        self.gain_slider.setFixedWidth(120)
        self.gain_slider.setValue(ERROR_GAINS.index(self.gain))
        self.gain_slider.valueChanged.connect(lambda i: self.set_gain(ERROR_GAINS[i]))
        self.gain_label = QtWidgets.QLabel()
        bar.addWidget(QtWidgets.QLabel("decoded"))
        bar.addWidget(self.target_combo)
        bar.addWidget(self.mode_combo)
        bar.addWidget(QtWidgets.QLabel("gain"))
        bar.addWidget(self.gain_slider)
        bar.addWidget(self.gain_label)
        bar.addStretch(1)
        self.stats = QtWidgets.QLabel()
        self.stats.setObjectName("error_stats")
        self.stats.setWordWrap(True)
        self.stats.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.glw = pg.GraphicsLayoutWidget()
        self.vb = make_image_view()
        self.glw.addItem(self.vb, row=0, col=0)
        self.item = pg.ImageItem(autoDownsample=True)
        self.vb.addItem(self.item)
        self.flip_item = make_image_item()
        self.flip_item.setZValue(2)
        self.flip_item.hide()
        self.vb.addItem(self.flip_item)
        self.colorbar = pg.ColorBarItem(values=(-16, 16), colorMap=pg.colormap.get("CET-D1"),
                                        interactive=False, width=16, label="decoded − original (8-bit levels)")
        self.glw.addItem(self.colorbar, row=0, col=1)
        self.colorbar.setImageItem(self.item)
        lay = QtWidgets.QVBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.addLayout(bar)
        lay.addWidget(self.glw, 1)
        lay.addWidget(self.stats)
        self.sync.add(self.vb)
        self._hover = connect_hover(self.glw, lambda: [(self.vb, None)], self._hover_at)
        self.error: np.ndarray | None = None
        self._update_gain_label()

    def targets(self) -> list[Panel]:
        """Decoded pictures (error against the original) and signed data such as residuals."""
        return [p for p in self.panels if p.key != "original"]

    def target(self) -> Panel | None:
        return self.panel(self.target_combo.currentData() or "")

    def select(self, key: str) -> None:
        i = self.target_combo.findData(key)
        if i >= 0:
            self.target_combo.setCurrentIndex(i)

    def levels(self) -> tuple[float, float]:
        top = 128.0 / self.gain
        return (-top, top) if self.mode == "signed" else (0.0, top)

    def set_mode(self, mode: str) -> None:
        self.mode = mode
        i = self.mode_combo.findData(mode)
        if i != self.mode_combo.currentIndex():
            self.mode_combo.setCurrentIndex(i)
        self.refresh()

    def toggle_mode(self) -> None:
        self.set_mode("abs" if self.mode == "signed" else "signed")

    def set_gain(self, gain: float) -> None:
        self.gain = min(ERROR_GAINS, key=lambda g: abs(g - gain))
        self.gain_slider.blockSignals(True)
        self.gain_slider.setValue(ERROR_GAINS.index(self.gain))
        self.gain_slider.blockSignals(False)
        self._update_gain_label()
        self.refresh()

    def step_gain(self, direction: int) -> None:
        i = ERROR_GAINS.index(self.gain) + direction
        self.set_gain(ERROR_GAINS[min(max(i, 0), len(ERROR_GAINS) - 1)])

    def _update_gain_label(self) -> None:
        lo, hi = self.levels()
        self.gain_label.setText(f"×{self.gain}  (levels {lo:+.0f} … {hi:+.0f})")

    def set_panels(self, panels: list[Panel]) -> None:
        self.panels = list(panels)
        keys = [p.key for p in self.targets()]
        if [self.target_combo.itemData(i) for i in range(self.target_combo.count())] != keys:
            current = self.target_combo.currentData()
            self.target_combo.blockSignals(True)
            self.target_combo.clear()
            for p in self.targets():
                self.target_combo.addItem(p.title, p.key)
            i = self.target_combo.findData(current) if current is not None else -1
            self.target_combo.setCurrentIndex(max(i, 0))
            self.target_combo.blockSignals(False)
        self.refresh()

    def render(self) -> None:
        self._update_gain_label()
        original = self.original
        if self.flip and original is not None:
            _place(self.flip_item, original, original.data)
            self.flip_item.show()
        else:
            self.flip_item.hide()
        p = self.target()
        if p is None:
            self.item.clear()
            self.error = None
            self.stats.setText("no decoded image yet")
            return
        if p.kind == "signed":  # a residual in [-1, 1]: shown in 8-bit levels like an error
            d = np.asarray(p.data, dtype=np.float32) * 255.0
            err = d.mean(axis=2) if self.mode == "signed" else np.sqrt((d * d).mean(axis=2))
            self.error = np.ascontiguousarray(err)
            self.item.setImage(self.error, autoLevels=False)
            self.item.setRect(QtCore.QRectF(0, 0, p.extent[0], p.extent[1]))
            self.colorbar.setColorMap(pg.colormap.get("CET-D1" if self.mode == "signed" else "inferno"))
            self.colorbar.setLevels(self.levels())
            self.colorbar.setLabel("left", f"{p.title} (8-bit levels)")
            self.stats.setText(f"{p.title}: RMS {float(np.sqrt(np.mean(d * d))):.2f} · mean {float(d.mean()):+.3f} "
                               f"· max |value| {float(np.abs(d).max()):.0f} (8-bit levels)")
            return
        if self.mode == "signed":
            err = signed_error(p.data, p.original)
            self.colorbar.setColorMap(pg.colormap.get("CET-D1"))
            self.colorbar.setLabel("left", "decoded − original, mean of R,G,B (8-bit levels)")
        else:
            err = abs_error(p.data, p.original)
            self.colorbar.setColorMap(pg.colormap.get("inferno"))
            self.colorbar.setLabel("left", "|error|, RMS of R,G,B (8-bit levels)")
        self.error = err
        self.item.setImage(err, autoLevels=False)
        self.item.setRect(QtCore.QRectF(0, 0, p.extent[0], p.extent[1]))
        self.colorbar.setLevels(self.levels())
        d = p.data.astype(np.float32) - p.original.astype(np.float32)
        mse = float(np.mean(d * d))
        psnr = math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)
        self.stats.setText(
            f"{p.title}: MSE {mse:.2f} · PSNR-RGB {psnr:.2f} dB · mean error {float(d.mean()):+.3f} "
            f"(bias) · max |error| {float(np.abs(d).max()):.0f} · "
            f"{100 * float(np.mean(np.abs(d).max(axis=2) > 128 / self.gain)):.2f} % of pixels beyond the "
            f"colour range" + (f" · preview {p.data.shape[1]}×{p.data.shape[0]}" if p.scale != 1 else ""))

    def _hover_at(self, _tag, x: float, y: float) -> None:
        p = self.target()
        if p is not None:
            self.hovered.emit(p, x, y)
