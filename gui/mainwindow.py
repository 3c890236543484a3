"""The studio's main window: codec cards on the left, views on the right, one controller.

Flow: a card's control changes → a short debounce → :class:`~gui.worker.WorkerHub` encodes in
that codec's thread → the outcome comes back as a signal → if it answers the latest request for
the current image it fills the card, the panels of every view and the R-D operating point;
otherwise it is dropped. Sweeps for the R-D plot run in the background whenever the image or a
codec's non-rate settings change.
"""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from PySide6 import QtCore, QtGui, QtWidgets

from codec import registry
from codec.errors import LicError
from codec.image import ImageWarning, open_image

from . import export
from .bandsview import BandsView
from .shortcuts import HelpOverlay, install_actions
from .inputs import DEFAULT_IMAGE_NAME, default_image, from_mime
from .panels import Panel, collect_panels, short_title
from .rdplot import RDPlot, default_anchor_dir, load_anchor_dir
from .settings import Settings
from .sidepanel import SidePanel
from .state import (CodecSpec, CodecStatus, EncodeOutcome, ImageSource, MatchOutcome, SweepPoint, make_source,
                    quality_at_rate)
from .views import ErrorView, GridView, WipeView
from .viewsync import ViewSync
from .worker import CodecFactory, WorkerHub

__all__ = ["MainWindow", "VIEWS"]

log = logging.getLogger(__name__)

VIEWS = ("grid", "wipe", "error", "bands", "rd")
DRAG_DEBOUNCE_MS = 30
SWEEP_DEBOUNCE_MS = 250
BUSY_DELAY_MS = 300
SWEEP_MAX_PIXELS = 4_000_000
GRID_GAINS = (1, 2, 4, 8, 16, 32)
DEFAULT_ANCHORS = {"JPEG", "VTM", "bmshj2018-hyperprior", "BPG 8b 444 x265 ycbcr", "elic2022"}


def _fmt_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


class MainWindow(QtWidgets.QMainWindow):
    """lic-studio. ``entries``/``factory`` default to the codec registry (tests pass fakes)."""

    def __init__(self, settings: Settings | None = None, entries: Iterable[Any] | None = None,
                 factory: CodecFactory | None = None, preview_side: int | None = None,
                 cache_bytes: int = 1 << 30, parent=None):
        super().__init__(parent)
        self.settings = settings if settings is not None else Settings()
        self.entries = list(entries) if entries is not None else list(registry.CODECS.values())
        self.order = [e.name for e in self.entries]
        self.titles = {e.name: e.title for e in self.entries}
        self.short_titles = {e.name: short_title(e.title) for e in self.entries}
        self.preview_side = int(preview_side if preview_side is not None
                                else self.settings.get("preview/max_side", 1024))
        self.source: ImageSource | None = None
        self.outcomes: dict[str, EncodeOutcome] = {}       # what is displayed
        self.full_outcomes: dict[str, EncodeOutcome] = {}  # latest full-resolution ones (export)
        self.pinned: dict[str, EncodeOutcome] = {}         # codec -> result kept by its pin button
        self.specs: dict[str, CodecSpec] = {}
        self.statuses: dict[str, CodecStatus] = {}
        self.failures: dict[str, str] = {}
        self.latest: dict[str, int] = {}
        self.pending: dict[str, tuple[dict[str, Any], bool]] = {}
        self.sweep_signature: dict[str, tuple] = {}
        self.sweep_key: dict[str, str] = {}
        self.match_ids: dict[str, int] = {}
        self.match_results: dict[str, MatchOutcome] = {}
        self.busy: set[str] = set()
        self.flip = False
        self.anchor_dir: str | None = None
        self._wipe_restored = False
        self._menu_keys: list[str] | None = None
        self.setWindowTitle("lic-studio")
        self.setAcceptDrops(True)
        self.hub = WorkerHub(self.entries, factory, cache_bytes)
        sig = self.hub.signals
        sig.spec.connect(self._on_spec)
        sig.ready.connect(self._on_ready)
        sig.failed.connect(self._on_failed)
        sig.encoded.connect(self._on_encoded)
        sig.refined.connect(self._on_encoded)
        sig.sweep_point.connect(self._on_sweep_point)
        sig.matched.connect(self._on_matched)
        sig.busy.connect(self._on_busy)
        self.timers: dict[str, QtCore.QTimer] = {}
        self.sweep_timers: dict[str, QtCore.QTimer] = {}
        for name in self.order:
            self.timers[name] = self._single_shot(lambda n=name: self._fire_encode(n))
            self.sweep_timers[name] = self._single_shot(lambda n=name: self._start_sweep(n))
        self._build_ui()
        self._build_actions()
        self._restore_settings()
        self._disable_child_drops()
        self.help = HelpOverlay(self)  # a child of the window: a splitter would adopt it as a pane
        QtWidgets.QApplication.instance().installEventFilter(self)
        self._update_device_label()
        self.hub.start()

    def _single_shot(self, slot: Callable[[], None]) -> QtCore.QTimer:
        t = QtCore.QTimer(self)
        t.setSingleShot(True)
        t.timeout.connect(slot)
        return t

    # ================================================================ UI construction
    def _build_ui(self) -> None:
        self.sync = ViewSync(self)
        self.sync.zoomChanged.connect(self._zoom_changed)
        # -- side panel
        self.side = SidePanel(self.entries, float(self.settings.get("match/target", 0.5)))
        self.side.matchRequested.connect(self.match_bpp)
        self.cards = self.side.cards
        self.match_spin, self.match_label = self.side.match_spin, self.side.match_label
        for card in self.cards.values():
            card.paramsChanged.connect(self._params_changed)
            card.enabledChanged.connect(self._enabled_changed)
            card.pinToggled.connect(self.set_pinned)
        # -- views
        self.grid = GridView(self.sync)
        self.wipe = WipeView(self.sync)
        self.error_view = ErrorView(self.sync)
        self.bands = BandsView()
        self.rd = RDPlot()
        self.rd.set_codecs(self.order, self.short_titles)
        self.rd.pointClicked.connect(self._rd_point_clicked)
        self.rd.metricChanged.connect(lambda _m: self._schedule_all_sweeps())
        self.rd.anchorFolderRequested.connect(self.choose_anchor_folder)
        for v in (self.grid, self.wipe, self.error_view):
            v.hovered.connect(self._hovered)
        grid_page = QtWidgets.QWidget()
        gl = QtWidgets.QVBoxLayout(grid_page)
        gl.setContentsMargins(0, 0, 0, 0)
        gbar = QtWidgets.QHBoxLayout()
        self.panels_button = QtWidgets.QToolButton()
        self.panels_button.setText("Panels")
        self.panels_button.setPopupMode(QtWidgets.QToolButton.ToolButtonPopupMode.InstantPopup)
        self.panels_menu = QtWidgets.QMenu(self)
        self.panels_button.setMenu(self.panels_menu)
        self.gain_combo = QtWidgets.QComboBox()
        for g in GRID_GAINS:
            self.gain_combo.addItem(f"residual ×{g}", g)
        self.gain_combo.currentIndexChanged.connect(
            lambda _i: self._set_grid_gain(self.gain_combo.currentData()))
        gbar.addWidget(self.panels_button)
        gbar.addWidget(self.gain_combo)
        gbar.addStretch(1)
        gl.addLayout(gbar)
        gl.addWidget(self.grid, 1)
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.setObjectName("views")
        for page, text in ((grid_page, "Grid  [G]"), (self.wipe, "Wipe  [W]"), (self.error_view, "Error  [E]"),
                           (self.bands, "Bands  [B]"), (self.rd, "R-D plot  [R]")):
            self.tabs.addTab(page, text)
        self.tabs.currentChanged.connect(self._tab_changed)
        # -- zoom bar + banner
        zoom_bar = QtWidgets.QHBoxLayout()
        for text, slot in (("Fit", self.sync.fit), ("100 %", lambda: self.sync.set_zoom(1)),
                           ("200 %", lambda: self.sync.set_zoom(2)), ("400 %", lambda: self.sync.set_zoom(4))):
            b = QtWidgets.QToolButton()
            b.setText(text)
            b.clicked.connect(slot)
            zoom_bar.addWidget(b)
        self.zoom_label = QtWidgets.QLabel("fit")
        self.zoom_label.setMinimumWidth(70)
        zoom_bar.addWidget(self.zoom_label)
        hint = QtWidgets.QLabel("hold Space: original · F1: keys · drop an image anywhere")
        hint.setStyleSheet("color: #9aa0a6;")
        hint.setAlignment(QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter)
        hint.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Preferred)
        zoom_bar.addWidget(hint, 1)
        self.banner = QtWidgets.QLabel()
        self.banner.setObjectName("banner")
        self.banner.setWordWrap(True)
        self.banner.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        self.banner.hide()
        right = QtWidgets.QWidget()
        rl = QtWidgets.QVBoxLayout(right)
        rl.setContentsMargins(0, 4, 4, 0)
        rl.addWidget(self.banner)
        rl.addLayout(zoom_bar)
        rl.addWidget(self.tabs, 1)
        self.splitter = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        self.splitter.addWidget(self.side)
        self.splitter.addWidget(right)
        self.splitter.setStretchFactor(1, 1)
        self.splitter.setSizes([360 + self.side.verticalScrollBar().sizeHint().width(), 1200])
        self.setCentralWidget(self.splitter)
        # -- status bar
        self.readout = QtWidgets.QLabel("")
        self.readout.setObjectName("readout")
        self.busy_bar = QtWidgets.QProgressBar()
        self.busy_bar.setRange(0, 0)
        self.busy_bar.setMaximumWidth(90)
        self.busy_bar.setMaximumHeight(12)
        self.busy_bar.hide()
        self.busy_label = QtWidgets.QLabel("")
        self.device_label = QtWidgets.QLabel("")
        self.device_label.setObjectName("device")
        sb = self.statusBar()
        sb.addWidget(self.readout, 1)
        sb.addPermanentWidget(self.busy_label)
        sb.addPermanentWidget(self.busy_bar)
        sb.addPermanentWidget(self.device_label)
        self.busy_timer = self._single_shot(self._show_busy)

    def _build_actions(self) -> None:
        handlers: dict[str, Callable[[], None]] = {
            "view_grid": lambda: self.show_view("grid"), "view_wipe": lambda: self.show_view("wipe"),
            "view_error": lambda: self.show_view("error"), "view_bands": lambda: self.show_view("bands"),
            "view_rd": lambda: self.show_view("rd"),
            "zoom_fit": self.sync.fit, "zoom_100": lambda: self.sync.set_zoom(1),
            "zoom_200": lambda: self.sync.set_zoom(2), "zoom_400": lambda: self.sync.set_zoom(4),
            "zoom_in": lambda: self.sync.step(+1), "zoom_out": lambda: self.sync.step(-1),
            "wipe_left": lambda: self.wipe.snap(0.0), "wipe_middle": lambda: self.wipe.snap(0.5),
            "wipe_right": lambda: self.wipe.snap(1.0),
            "gain_down": lambda: self._step_gain(-1), "gain_up": lambda: self._step_gain(+1),
            "error_mode": self.error_view.toggle_mode, "band_norm": self.bands.toggle_normalise,
            "match_bpp": self.side.focus_match, "open": self.open_dialog, "paste": self.paste,
            "export_panels": lambda: self.export_panels(), "export_bitstreams": lambda: self.export_bitstreams(),
            "export_metrics": lambda: self.export_metrics(), "export_view": lambda: self.export_view(),
            "help": lambda: self.help.toggle(), "quit": self.close,
        }
        self.actions, menus = install_actions(self, handlers)
        anchors = QtGui.QAction("Choose published-curves folder…", self)
        anchors.triggered.connect(self.choose_anchor_folder)
        menus["file"].insertAction(self.actions["export_panels"], anchors)

    def _disable_child_drops(self) -> None:
        """Let drops reach the window: graphics views and inputs would swallow them."""
        for w in self.findChildren(QtWidgets.QWidget):
            if isinstance(w, (QtWidgets.QGraphicsView, QtWidgets.QAbstractSpinBox, QtWidgets.QLineEdit)):
                w.setAcceptDrops(False)
                if isinstance(w, QtWidgets.QAbstractScrollArea):
                    w.viewport().setAcceptDrops(False)

    # ================================================================ settings
    def _restore_settings(self) -> None:
        s = self.settings
        geo = s.get_bytes("window/geometry")
        if geo is not None:
            self.restoreGeometry(geo)
        else:
            self.resize(1600, 1000)
        split = s.get_bytes("window/splitter")
        if split is not None:
            self.splitter.restoreState(split)
        for name, card in self.cards.items():
            card.set_enabled(bool(s.get(f"codec/{name}/enabled", True)))
        self.grid.hidden = set(s.get("grid/hidden", []))
        gain = s.get("grid/gain", 4)
        self.gain_combo.setCurrentIndex(max(0, self.gain_combo.findData(gain)))
        self.wipe.split = float(s.get("wipe/split", 0.5))
        self.error_view.set_gain(float(s.get("error/gain", 8)))
        self.error_view.set_mode(s.get("error/mode", "signed"))
        self.bands.set_options(**{k: v for k, v in (s.get("bands/options", {}) or {}).items()
                                  if k in ("wavelet", "levels", "channel", "normalise")})
        self.rd.set_metric(s.get("rd/metric", "psnr"))
        folder = s.get("rd/anchor_dir", None)
        self.load_anchors(folder if folder else default_anchor_dir(), set(s.get("rd/anchors_checked", list(DEFAULT_ANCHORS))))
        view = s.get("view/current", "grid")
        self.show_view(view if view in VIEWS else "grid")

    def save_settings(self) -> None:
        s = self.settings
        s.set_bytes("window/geometry", self.saveGeometry())
        s.set_bytes("window/splitter", self.splitter.saveState())
        for name, card in self.cards.items():
            s.set(f"codec/{name}/enabled", card.enabled)
            if card.spec is not None:
                s.set(f"codec/{name}/params", card.params())
        s.set("grid/hidden", sorted(self.grid.hidden))
        s.set("grid/gain", self.gain_combo.currentData())
        s.set("wipe/split", self.wipe.split)
        left, right = self.wipe.sides()
        s.set("wipe/left", left.key if left else None)
        s.set("wipe/right", right.key if right else None)
        s.set("error/gain", self.error_view.gain)
        s.set("error/mode", self.error_view.mode)
        s.set("bands/options", self.bands.options())
        s.set("rd/metric", self.rd.metric)
        s.set("rd/anchors_checked", sorted(self.rd.checked_anchors))
        s.set("match/target", self.match_spin.value())
        s.set("view/current", self.current_view())
        s.sync()

    # ================================================================ images in
    def load_default(self) -> None:
        self.set_image(default_image(), DEFAULT_IMAGE_NAME)

    def load_path(self, path: str | Path) -> bool:
        """Open an image file; on failure show why in the window and keep the current image."""
        return self._load(path, Path(path).name)

    def load_bytes(self, data: bytes, name: str = "pasted image") -> bool:
        return self._load(data, name)

    def _load(self, src: Any, name: str) -> bool:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImageWarning)
            try:
                image = open_image(src)
            except LicError as err:
                reason = getattr(err, "reason", str(err))
                self.show_message(f"Could not open {name}: {reason}. The current image is kept.", error=True)
                return False
            except Exception as err:  # never let a file crash the app
                log.exception("unexpected error opening %s", name)
                self.show_message(f"Could not open {name}: {type(err).__name__}: {err}", error=True)
                return False
        notes = [str(w.message) for w in caught if issubclass(w.category, ImageWarning)]
        if isinstance(src, (str, Path)):
            self.settings.set("io/last_dir", str(Path(src).resolve().parent))
        self.set_image(image, name, notes)
        return True

    def set_image(self, image, name: str, notes: Iterable[str] = ()) -> None:
        notes = list(notes)
        self.source = make_source(image, name, self.preview_side, notes)
        src = self.source
        self.outcomes.clear()
        self.full_outcomes.clear()
        for n in list(self.pinned):
            self.set_pinned(n, False)
        self.latest.clear()
        self.sweep_signature.clear()
        self.sweep_key.clear()
        for card in self.cards.values():
            card.clear_metrics()
        if notes:
            self.show_message("; ".join(notes), error=False)
        else:
            self.hide_message()
        self.side.set_image_info(name, src.width, src.height,
                                 (src.preview.shape[1], src.preview.shape[0]) if src.has_preview else None)
        self.setWindowTitle(f"lic-studio — {name}")
        self.sync.set_extent(src.width, src.height)
        self.sync.fit()
        for n in self.order:
            self.rd.drop_codec(n)
        self._refresh_panels()
        for n in self.order:
            if self._usable(n):
                self._request(n, self.cards[n].params(), dragging=False)

    # ================================================================ messages
    def show_message(self, text: str, error: bool = True) -> None:
        color = "#5c1f22" if error else "#4a3f14"
        self.banner.setStyleSheet(f"#banner {{ background: {color}; color: #ffffff; padding: 6px; "
                                  "border-radius: 3px; }")
        self.banner.setText(text)
        self.banner.show()
        self.statusBar().showMessage(text, 8000)

    def hide_message(self) -> None:
        self.banner.hide()

    # ================================================================ codec lifecycle
    def _usable(self, name: str) -> bool:
        return name in self.specs and name not in self.failures and self.cards[name].enabled

    def _on_spec(self, spec: CodecSpec) -> None:
        if self.hub.closed:
            return
        self.specs[spec.name] = spec
        card = self.cards[spec.name]
        card.title = spec.title
        self.titles[spec.name] = spec.title
        self.short_titles[spec.name] = short_title(spec.title)
        card.set_spec(spec, self.settings.get(f"codec/{spec.name}/params", None))
        if spec.name not in self.statuses:
            card.set_status("loading weights…" if spec.learned else "loading…")
        self._disable_child_drops()
        if self.source is not None and card.enabled:
            self._request(spec.name, card.params(), dragging=False)

    def _on_ready(self, status: CodecStatus) -> None:
        if self.hub.closed:
            return
        self.statuses[status.name] = status
        self.cards[status.name].set_ready(status)
        self._update_device_label()

    def _on_failed(self, name: str, message: str) -> None:
        if self.hub.closed:
            return
        self.failures[name] = message
        card = self.cards[name]
        card.set_status(f"unavailable: {message}", error=True)
        card.enabled_box.setEnabled(False)
        self.outcomes.pop(name, None)
        self.rd.drop_codec(name)
        self._refresh_panels()
        self._update_device_label()

    def _enabled_changed(self, name: str, on: bool) -> None:
        if on:
            if self.source is not None and self._usable(name):
                self._request(name, self.cards[name].params(), dragging=False)
        else:
            self.timers[name].stop()
            self.cards[name].clear_metrics()
            self.latest.pop(name, None)
            self.outcomes.pop(name, None)
            self.full_outcomes.pop(name, None)
            self.sweep_signature.pop(name, None)
            self.hub.cancel_sweep(name)
            self.rd.drop_codec(name)
            self._refresh_panels()

    def _update_device_label(self) -> None:
        devices = sorted({s.device for s in self.statuses.values()})
        learned = [e.name for e in self.entries if getattr(e, "learned", False)]
        parts = []
        for n in learned:
            if n in self.failures:
                parts.append(f"{self.short_titles[n]}: unavailable")
            elif n in self.statuses:
                st = self.statuses[n]
                parts.append(f"{self.short_titles[n]}: {st.weights}" + ("" if st.trained in (True, None) else " (untrained)"))
            else:
                parts.append(f"{self.short_titles[n]}: loading…")
        weights = " · weights " + ", ".join(parts) if parts else " · no learned codecs registered"
        self.device_label.setText(f"device: {', '.join(devices) or '…'}{weights}")

    # ================================================================ requests
    def _params_changed(self, name: str, params: dict[str, Any], dragging: bool) -> None:
        if self.source is None or not self._usable(name):
            return
        self._request(name, params, dragging)

    def _request(self, name: str, params: dict[str, Any], dragging: bool) -> None:
        self.pending[name] = (dict(params), dragging)
        self.timers[name].start(DRAG_DEBOUNCE_MS if dragging else 0)
        if not dragging:
            self._schedule_sweep(name)

    def _fire_encode(self, name: str) -> None:
        item = self.pending.pop(name, None)
        if item is None or self.source is None or self.hub.closed:
            return
        params, dragging = item
        preview = dragging and self.source.has_preview
        image, key = self.source.pick(preview)
        self.latest[name] = self.hub.encode(name, params, image, key, preview, want_ms_ssim=not dragging)

    def _on_encoded(self, outcome: EncodeOutcome) -> None:
        if self.hub.closed or self.source is None:
            return
        if outcome.request_id != self.latest.get(outcome.codec):
            return  # stale
        if outcome.image_key not in (self.source.key, self.source.preview_key):
            return
        name = outcome.codec
        self.outcomes[name] = outcome
        self.outcomes = {n: self.outcomes[n] for n in self.order if n in self.outcomes}
        if not outcome.preview:
            self.full_outcomes[name] = outcome
        card = self.cards[name]
        card.show_outcome(outcome)
        self._update_star(name)
        self._update_deltas()
        self._update_bar_scale()
        self._refresh_panels()

    def _update_star(self, name: str) -> None:
        """The R-D plot's current point, only where it is comparable with the codec's sweep."""
        o = self.outcomes.get(name)
        if o is not None and o.ok and o.image_key == self.sweep_key.get(name, o.image_key):
            self.rd.set_current(name, o.metrics.bpp, o.metrics.psnr, o.metrics.ms_ssim_db)

    def _update_bar_scale(self) -> None:
        bpps = [o.metrics.bpp for o in self.outcomes.values() if o.ok]
        top = max(bpps) if bpps else 1.0
        for card in self.cards.values():
            card.bar.set_scale(top)

    # ================================================================ sweeps, deltas, match
    def _sweep_image(self) -> tuple[Any, str, bool]:
        src = self.source
        assert src is not None
        use_preview = src.has_preview and src.width * src.height > SWEEP_MAX_PIXELS
        image, key = src.pick(use_preview)
        return image, key, use_preview

    def _schedule_sweep(self, name: str) -> None:
        self.sweep_timers[name].start(SWEEP_DEBOUNCE_MS)

    def _schedule_all_sweeps(self) -> None:
        for n in self.order:
            if self._usable(n) and self.source is not None:
                self._schedule_sweep(n)

    def _start_sweep(self, name: str) -> None:
        """Sweep the codec's R-D path unless one with the same fixed settings is already running."""
        if self.source is None or not self._usable(name) or self.hub.closed:
            return
        knob = self.specs[name].rate_param
        if knob is None:
            return
        params = self.cards[name].params()
        varied = set(self.statuses[name].sweep_keys) if name in self.statuses else set()
        varied.add(knob.name)
        fixed = tuple(sorted((k, repr(v)) for k, v in params.items() if k not in varied))
        image, key, use_preview = self._sweep_image()
        with_ms = self.rd.metric == "ms_ssim_db"
        signature = (key, fixed, with_ms)
        if self.sweep_signature.get(name) == signature:
            return
        self.sweep_signature[name] = signature
        self.sweep_key[name] = key
        gen = self.hub.sweep(name, params, image, key, with_ms)
        self.rd.reset_curve(name, gen, 0)
        self._update_star(name)
        self.rd.note = (f"sweeps on the {image.shape[1]}×{image.shape[0]} preview" if use_preview else "")

    def _on_sweep_point(self, point: SweepPoint) -> None:
        if self.hub.closed:
            return
        if self.rd.add_point(point) and point.codec == "jpeg":
            self._update_deltas()

    def _update_deltas(self) -> None:
        curve = self.rd.curves.get("jpeg")
        for name, card in self.cards.items():
            o = self.outcomes.get(name)
            d = math.nan
            if curve is not None and o is not None and o.ok and o.image_key == self.sweep_key.get("jpeg"):
                x, y = curve.series("psnr")
                ref = quality_at_rate(x, y, o.metrics.bpp)
                d = o.metrics.psnr - ref
            card.set_delta_psnr(d)

    def deltas(self) -> dict[str, float]:
        return {n: c.delta_psnr for n, c in self.cards.items()}

    def match_bpp(self, target: float | None = None) -> None:
        """Every enabled codec searches its rate parameter for ``target`` bpp (on the full image)."""
        if self.source is None:
            return
        target = float(self.match_spin.value() if target is None else target)
        self.match_spin.setValue(target)
        self.match_results.clear()
        names = [n for n in self.order if self._usable(n) and self.specs[n].rate_param is not None]
        for n in names:
            self.match_ids[n] = self.hub.match(n, target, self.cards[n].params(), self.source.full, self.source.key)
        self.match_label.setText(f"matching {target:.3f} bpp: " + ", ".join(self.short_titles[n] for n in names) + "…")

    def _on_matched(self, m: MatchOutcome) -> None:
        if self.hub.closed or m.request_id != self.match_ids.get(m.codec):
            return
        self.match_results[m.codec] = m
        if m.error is None and m.value is not None:
            self.cards[m.codec].set_params({m.param: m.value})
        parts = []
        for n in self.order:
            r = self.match_results.get(n)
            if r is None:
                continue
            if r.error:
                parts.append(f"{self.short_titles[n]}: {r.error}")
            else:
                v = f"{r.value:.4g}" if isinstance(r.value, float) else str(r.value)
                parts.append(f"{self.short_titles[n]}: {r.param}={v} → {r.bpp:.3f} bpp")
        waiting = [self.short_titles[n] for n in self.match_ids if n not in self.match_results and self._usable(n)]
        self.match_label.setText(f"target {m.target_bpp:.3f} bpp — " + "; ".join(parts)
                                 + (f"; waiting: {', '.join(waiting)}" if waiting else ""))

    def _rd_point_clicked(self, codec: str, params: dict[str, Any]) -> None:
        if codec in self.cards and self._usable(codec):
            self.cards[codec].set_params(params)

    # ================================================================ busy
    def _on_busy(self, name: str, on: bool) -> None:
        if self.hub.closed:
            return
        if on:
            self.busy.add(name)
            if not self.busy_timer.isActive() and not self.busy_bar.isVisible():
                self.busy_timer.start(BUSY_DELAY_MS)
        else:
            self.busy.discard(name)
            if not self.busy:
                self.busy_timer.stop()
                self.busy_bar.hide()
                self.busy_label.setText("")
            else:
                self._show_busy()

    def _show_busy(self) -> None:
        if self.busy:
            self.busy_bar.show()
            self.busy_label.setText("working: " + ", ".join(self.short_titles.get(n, n) for n in sorted(self.busy)))

    # ================================================================ views
    def panels(self, full_only: bool = False) -> list[Panel]:
        """The catalogue every view picks from: live results, then pinned ones (``<codec>@pin``)."""
        if self.source is None:
            return []
        outcomes = dict(self.full_outcomes if full_only else self.outcomes)
        titles = dict(self.short_titles)
        for name, o in self.pinned.items():
            outcomes[f"{name}@pin"] = o
            titles[f"{name}@pin"] = f"{self.short_titles[name]} pinned ({_fmt_params(o.params)})"
        return collect_panels(self.source, outcomes, titles)

    def set_pinned(self, name: str, on: bool) -> None:
        """Pin (or unpin) the codec's current full-resolution result as an extra panel."""
        card = self.cards[name]
        outcome = self.full_outcomes.get(name)
        if on and (outcome is None or not outcome.ok):
            card.pin_button.setChecked(False)  # nothing to pin yet
            return
        if on:
            self.pinned[name] = outcome
        else:
            self.pinned.pop(name, None)
        if card.pin_button.isChecked() != on:
            card.pin_button.blockSignals(True)
            card.pin_button.setChecked(on)
            card.pin_button.blockSignals(False)
        card.pin_button.setToolTip(f"pinned: {_fmt_params(outcome.params)}" if on else
                                   "Keep the current result as an extra panel")
        self._refresh_panels()
        if on:
            self.wipe.select(f"{name}@pin", name)

    def _refresh_panels(self) -> None:
        panels = self.panels()
        if self.flip and not any(p.key == "original" for p in panels):
            self.flip = False
        self.grid.set_panels(panels)
        self.wipe.set_panels(panels)
        if not self._wipe_restored and len(panels) > 1:
            self.wipe.select(self.settings.get("wipe/left", None), self.settings.get("wipe/right", None))
            self._wipe_restored = True
        self.error_view.set_panels(panels)
        self.bands.set_data(panels, self.outcomes, self.short_titles)
        self._rebuild_panels_menu(panels)

    def _rebuild_panels_menu(self, panels: list[Panel]) -> None:
        keys = [p.key for p in panels]
        if self._menu_keys == keys:
            return
        self._menu_keys = keys
        self.panels_menu.clear()
        for p in panels:
            act = self.panels_menu.addAction(p.title)
            act.setCheckable(True)
            act.setChecked(p.key not in self.grid.hidden)
            act.toggled.connect(lambda on, k=p.key: self._toggle_panel(k, on))

    def _toggle_panel(self, key: str, on: bool) -> None:
        hidden = set(self.grid.hidden)
        (hidden.discard if on else hidden.add)(key)
        self.grid.set_hidden(hidden)

    def _set_grid_gain(self, gain: float) -> None:
        self.grid.set_gain(gain)
        self.wipe.gain = gain
        self.wipe.refresh()

    def _step_gain(self, direction: int) -> None:
        if self.current_view() == "error":
            self.error_view.step_gain(direction)
        else:
            i = min(max(self.gain_combo.currentIndex() + direction, 0), self.gain_combo.count() - 1)
            self.gain_combo.setCurrentIndex(i)

    def current_view(self) -> str:
        return VIEWS[self.tabs.currentIndex()]

    def show_view(self, name: str) -> None:
        if name not in VIEWS:
            raise ValueError(f"unknown view {name!r}; valid: {', '.join(VIEWS)}")
        self.tabs.setCurrentIndex(VIEWS.index(name))

    def _tab_changed(self, _index: int) -> None:
        self.readout.setText("")

    def set_flip(self, on: bool) -> None:
        """Show the original in place of every view while ``on`` (the Space key, held)."""
        self.flip = bool(on) and self.source is not None
        for v in (self.grid, self.wipe, self.error_view, self.bands):
            v.set_flip(self.flip)
        self.statusBar().showMessage("ORIGINAL (release Space to return)" if self.flip else "", 0 if self.flip else 1)

    def _zoom_changed(self, zoom: float) -> None:
        self.zoom_label.setText("fit" if self.sync.center is None else f"{100 * zoom:.0f} %")

    def _hovered(self, panel: Panel, x: float, y: float) -> None:
        if self.source is None:
            return
        ix, iy = int(math.floor(x)), int(math.floor(y))
        if not (0 <= ix < self.source.width and 0 <= iy < self.source.height):
            self.readout.setText("")
            return
        o = self.source.full[iy, ix]
        text = f"x {ix}  y {iy} · original ({o[0]}, {o[1]}, {o[2]})"
        if panel.key != "original":
            px = min(int(ix / panel.scale), panel.data.shape[1] - 1)
            py = min(int(iy / panel.scale), panel.data.shape[0] - 1)
            v = panel.data[py, px]
            if panel.kind == "signed":
                text += f" · {panel.title} ({v[0]:+.4f}, {v[1]:+.4f}, {v[2]:+.4f})"
            else:
                ref = panel.original[py, px].astype(int)
                d = v.astype(int) - ref
                text += f" · {panel.title} ({v[0]}, {v[1]}, {v[2]}) Δ ({d[0]:+d}, {d[1]:+d}, {d[2]:+d})"
        self.readout.setText(text)

    # ================================================================ anchors
    def load_anchors(self, folder: str | Path | None, checked: set[str] | None = None) -> None:
        if folder is None or not Path(folder).is_dir():
            self.rd.set_anchors([], set(), str(folder) if folder else "../shared/anchors/kodak (absent)")
            return
        curves, problems = load_anchor_dir(folder)
        if problems:
            log.info("skipped anchor files: %s", "; ".join(problems))
        self.rd.set_anchors(curves, checked if checked is not None else set(self.rd.checked_anchors),
                            Path(folder).name)
        self.anchor_dir = str(folder)

    def choose_anchor_folder(self) -> None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(
            self, "Folder of CompressAI-format result JSONs", self.settings.get("rd/anchor_dir", "") or "")
        if folder:
            self.settings.set("rd/anchor_dir", folder)
            self.load_anchors(folder)

    # ================================================================ file dialogs and export
    def _last_dir(self) -> str:
        return self.settings.get("io/last_dir", str(Path.home()))

    def open_dialog(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(
            self, "Open image", self._last_dir(),
            "Images (*.png *.jpg *.jpeg *.ppm *.pgm *.bmp *.tif *.tiff *.webp);;All files (*)")
        if path:
            self.load_path(path)

    def paste(self) -> None:
        got = from_mime(QtWidgets.QApplication.clipboard().mimeData())
        if got is None:
            self.show_message("The clipboard holds no image and no image file path.", error=True)
        elif got[0] == "path":
            self.load_path(got[1])
        else:
            self.load_bytes(got[1], "pasted image")

    def _ask_folder(self, title: str) -> str | None:
        folder = QtWidgets.QFileDialog.getExistingDirectory(self, title, self._last_dir())
        return folder or None

    def export_panels(self, folder: str | Path | None = None) -> list[Path]:
        folder = folder or self._ask_folder("Export reconstructions and intermediates (PNG)")
        if not folder:
            return []
        paths = export.export_panels(folder, self.panels(full_only=True), self.gain_combo.currentData())
        self.statusBar().showMessage(f"wrote {len(paths)} PNG files to {folder}", 6000)
        return paths

    def export_bitstreams(self, folder: str | Path | None = None) -> list[Path]:
        folder = folder or self._ask_folder("Export bitstreams (.lic)")
        if not folder:
            return []
        paths = export.export_bitstreams(folder, self.full_outcomes)
        self.statusBar().showMessage(f"wrote {len(paths)} .lic files to {folder}", 6000)
        return paths

    def export_metrics(self, path: str | Path | None = None) -> list[Path]:
        """Metrics of the current operating points and sweeps: ``path`` (.json) and a .csv beside it."""
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(
                self, "Export metrics (JSON; a CSV is written beside it)",
                str(Path(self._last_dir()) / "metrics.json"), "JSON (*.json)")
            if not path:
                return []
        if self.source is None:
            return []
        path = Path(path).with_suffix(".json")
        sweeps = {n: c.sorted_points() for n, c in self.rd.curves.items()}
        rows = export.metrics_rows(self.source, self.full_outcomes, sweeps, self.deltas())
        out = [export.export_metrics_json(path, rows, self.rd.bd()),
               export.export_metrics_csv(path.with_suffix(".csv"), rows)]
        self.statusBar().showMessage(f"wrote {out[0]} and {out[1].name}", 6000)
        return out

    def export_view(self, path: str | Path | None = None) -> Path | None:
        if path is None:
            path, _ = QtWidgets.QFileDialog.getSaveFileName(
                self, "Export the current view (PNG)", str(Path(self._last_dir()) / f"{self.current_view()}.png"),
                "PNG (*.png)")
            if not path:
                return None
        path = Path(path).with_suffix(".png")
        self.tabs.currentWidget().grab().save(str(path), "PNG")
        return path

    # ================================================================ events
    def dragEnterEvent(self, event: QtGui.QDragEnterEvent) -> None:
        md = event.mimeData()
        if md.hasUrls() or md.hasImage():
            event.acceptProposedAction()
        else:
            event.ignore()

    def dropEvent(self, event: QtGui.QDropEvent) -> None:
        got = from_mime(event.mimeData())
        if got is None:
            self.show_message("Nothing usable was dropped: drop an image file or image data.", error=True)
            event.ignore()
            return
        event.acceptProposedAction()
        if got[0] == "path":
            self.load_path(got[1])
        else:
            self.load_bytes(got[1], "dropped image")

    def eventFilter(self, obj: QtCore.QObject, event: QtCore.QEvent) -> bool:
        t = event.type()
        if t in (QtCore.QEvent.Type.KeyPress, QtCore.QEvent.Type.KeyRelease) and isinstance(obj, QtWidgets.QWidget):
            if event.key() == QtCore.Qt.Key.Key_Space and (obj is self or self.isAncestorOf(obj)):
                if isinstance(obj, (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox)):
                    return False
                if not event.isAutoRepeat():
                    self.set_flip(t == QtCore.QEvent.Type.KeyPress)
                return True
        return False

    def settled(self) -> bool:
        """Every enabled codec has shown a full-resolution result with all metrics and a full sweep."""
        if self.source is None:
            return False
        for n in self.order:
            if n in self.failures or not self.cards[n].enabled:
                continue
            if n not in self.specs or n in self.pending or self.timers[n].isActive():
                return False
            o = self.outcomes.get(n)
            if o is None or o.preview or o.request_id != self.latest.get(n):
                return False
            if o.ok and o.metrics.ms_ssim_state == "pending":
                return False
            if self.sweep_timers[n].isActive():
                return False
            curve = self.rd.curves.get(n)
            if self.specs[n].rate_param is not None and (curve is None or not curve.done):
                return False
        return True

    def closeEvent(self, event: QtGui.QCloseEvent) -> None:
        try:
            self.save_settings()
        except Exception:  # settings must never block closing
            log.exception("could not save settings")
        for t in list(self.timers.values()) + list(self.sweep_timers.values()) + [self.busy_timer]:
            t.stop()
        self.hub.shutdown(timeout=2.0)
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        super().closeEvent(event)
