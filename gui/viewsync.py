"""Zoom and pan shared by every image view, as "centre + screen pixels per image pixel".

pyqtgraph's own ``setXLink`` lines up views by screen position, which is right for stacked
plots but wrong for side-by-side images of different sizes. Here one state — a centre in image
coordinates and a zoom (1.0 = 100 %: one image pixel per screen pixel) or "fit" — is applied
to each view at its own size. A mouse pan/zoom in any view updates the state; resizing a view
re-applies it. Zoomed in, pixels are drawn nearest-neighbour (antialiasing is off); zoomed out,
``ImageItem(autoDownsample=True)`` averages instead of skipping pixels.
"""

from __future__ import annotations

import math
from typing import Callable

from PySide6 import QtCore

from .pgsetup import pg

__all__ = ["ZOOM_STEPS", "ViewSync", "make_image_view", "make_image_item", "connect_hover"]

ZOOM_STEPS = (0.0625, 0.125, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0)


def make_image_view() -> "pg.ViewBox":
    vb = pg.ViewBox(lockAspect=True, invertY=True, enableMenu=False)
    vb.setDefaultPadding(0.0)
    return vb


def make_image_item() -> "pg.ImageItem":
    item = pg.ImageItem(autoDownsample=True)
    item.setLevels((0, 255))
    return item


class ViewSync(QtCore.QObject):
    """Keeps registered ViewBoxes showing the same image region at the same zoom."""

    zoomChanged = QtCore.Signal(float)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.views: list[pg.ViewBox] = []
        self.extent = (1, 1)
        self.center: tuple[float, float] | None = None  # None: fit the image
        self.zoom = math.nan
        self._applying = False

    def add(self, vb: "pg.ViewBox") -> None:
        self.views.append(vb)
        vb.sigRangeChangedManually.connect(lambda *_a, v=vb: self._from_view(v))
        vb.sigResized.connect(lambda *_a, v=vb: self._resized(v))
        self._apply(vb)

    def remove(self, vb: "pg.ViewBox") -> None:
        if vb in self.views:
            self.views.remove(vb)
            for sig in (vb.sigRangeChangedManually, vb.sigResized):
                try:
                    sig.disconnect()
                except (RuntimeError, TypeError):
                    pass

    def set_extent(self, width: int, height: int) -> None:
        """A new image: fit it, unless it has the same size as the last one."""
        if (width, height) != self.extent:
            self.extent = (width, height)
            self.fit()

    # -- commands ------------------------------------------------------------------------------
    def fit(self) -> None:
        self.center = None
        self._apply_all()

    def set_zoom(self, zoom: float, center: tuple[float, float] | None = None) -> None:
        zoom = min(max(float(zoom), ZOOM_STEPS[0]), ZOOM_STEPS[-1])
        if center is None:
            center = self.center or (self.extent[0] / 2, self.extent[1] / 2)
        self.center = (float(center[0]), float(center[1]))
        self.zoom = zoom
        self._apply_all()

    def step(self, direction: int) -> None:
        """Next 100/200/400 %-style step up (+1) or down (−1) from the current zoom."""
        z = self.current_zoom()
        if direction > 0:
            nxt = next((s for s in ZOOM_STEPS if s > z * 1.001), ZOOM_STEPS[-1])
        else:
            nxt = next((s for s in reversed(ZOOM_STEPS) if s < z / 1.001), ZOOM_STEPS[0])
        self.set_zoom(nxt)

    def current_zoom(self) -> float:
        """The zoom the views show now (fit mode: measured on the first visible view)."""
        if self.center is not None:
            return self.zoom
        for vb in self.views:
            z = self._measure(vb)
            if math.isfinite(z):
                return z
        return 1.0

    # -- internals -----------------------------------------------------------------------------
    @staticmethod
    def _measure(vb: "pg.ViewBox") -> float:
        r = vb.viewRect()
        if vb.width() <= 1 or r.width() <= 0 or not vb.isVisible():
            return math.nan
        return vb.width() / r.width()

    def _from_view(self, vb: "pg.ViewBox") -> None:
        if self._applying:
            return
        r = vb.viewRect()
        if vb.width() <= 1 or r.width() <= 0:
            return
        self.center = (r.center().x(), r.center().y())
        self.zoom = vb.width() / r.width()
        self._apply_all(skip=vb)

    def _apply_all(self, skip: "pg.ViewBox | None" = None) -> None:
        for vb in list(self.views):
            if vb is not skip:
                self._apply(vb)
        self.zoomChanged.emit(self.current_zoom())

    def _resized(self, vb: "pg.ViewBox") -> None:
        if self.center is None:  # the fit zoom of the whole group may have changed
            for v in self._group(vb):
                self._apply(v)
        else:
            self._apply(vb)

    def _group(self, vb: "pg.ViewBox") -> list["pg.ViewBox"]:
        """Views drawn in the same widget (the grid's panels): they share one fit zoom."""
        scene = vb.scene()
        return [v for v in self.views if v.scene() is scene] if scene is not None else [vb]

    def fit_zoom(self, vb: "pg.ViewBox") -> float:
        """The largest zoom at which the image fits every view of ``vb``'s group."""
        w, h = self.extent
        zs = [min(v.width() / w, v.height() / h) for v in self._group(vb) if v.width() > 1 and v.height() > 1]
        return min(zs) if zs else math.nan

    def _apply(self, vb: "pg.ViewBox") -> None:
        if self._applying or vb.width() <= 1 or vb.height() <= 1:
            return
        self._applying = True
        try:
            w, h = self.extent
            if self.center is None:  # fit: centred across, top-aligned so titles sit on the image
                zoom = self.fit_zoom(vb)
                cx, cy = w / 2, (h / 2 + (vb.height() / zoom - h) / 2) if zoom > 0 else h / 2
            else:
                zoom, (cx, cy) = self.zoom, self.center
            if math.isfinite(zoom) and zoom > 0:
                hw, hh = vb.width() / zoom / 2, vb.height() / zoom / 2
                vb.setRange(xRange=(cx - hw, cx + hw), yRange=(cy - hh, cy + hh), padding=0.0)
        finally:
            self._applying = False


def connect_hover(widget: "pg.GraphicsView", views: Callable[[], list[tuple["pg.ViewBox", object]]],
                  callback: Callable[[object, float, float], None]) -> "pg.SignalProxy":
    """Call ``callback(tag, x, y)`` (image coordinates) when the mouse moves over a view.

    ``views()`` returns the current ``(viewbox, tag)`` pairs; rate-limited to 60 Hz.
    """
    def moved(evt) -> None:
        pos = evt[0]
        for vb, tag in views():
            if vb.sceneBoundingRect().contains(pos):
                p = vb.mapSceneToView(pos)
                callback(tag, p.x(), p.y())
                return

    return pg.SignalProxy(widget.scene().sigMouseMoved, rateLimit=60, slot=moved)

