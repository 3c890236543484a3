"""Keyboard shortcuts: one table drives the menus, the actions and the help overlay (F1 / ?)."""

from __future__ import annotations

from typing import Callable, Mapping

from PySide6 import QtCore, QtGui, QtWidgets

__all__ = ["SHORTCUTS", "MENU_OF", "install_actions", "HelpOverlay"]

# (action id, key sequences, description). Kept here so the overlay can never drift from the keys.
SHORTCUTS: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("view_grid", ("G",), "Grid view: original, codecs and intermediates side by side"),
    ("view_wipe", ("W",), "Wipe view: draggable split between any two panels"),
    ("view_error", ("E",), "Error view: signed error / |error| heat map"),
    ("view_bands", ("B",), "Bands view: DWT mosaic, per-band energy, latent bands"),
    ("view_rd", ("R",), "R-D plot: sweeps, live operating points, published curves, BD-rate"),
    ("flip", ("Space",), "Hold: show the original in place of every view"),
    ("zoom_fit", ("0",), "Zoom to fit"),
    ("zoom_100", ("1",), "Zoom 100 %"),
    ("zoom_200", ("2",), "Zoom 200 %"),
    ("zoom_400", ("4",), "Zoom 400 %"),
    ("zoom_in", ("+", "="), "Zoom in one step"),
    ("zoom_out", ("-",), "Zoom out one step"),
    ("wipe_left", ("J",), "Wipe: split to the left edge (right image only)"),
    ("wipe_middle", ("K",), "Wipe: split to the middle"),
    ("wipe_right", ("L",), "Wipe: split to the right edge (left image only)"),
    ("gain_down", ("[",), "Error / residual gain down"),
    ("gain_up", ("]",), "Error / residual gain up"),
    ("error_mode", ("X",), "Error view: toggle signed / |error|"),
    ("band_norm", ("N",), "Bands view: toggle per-band / shared normalisation"),
    ("match_bpp", ("Ctrl+M",), "Match bpp: type a target, every codec finds its setting"),
    ("open", ("Ctrl+O",), "Open an image (or drop a file on the window)"),
    ("paste", ("Ctrl+V",), "Paste an image (or a file path) from the clipboard"),
    ("export_panels", ("Ctrl+S",), "Export reconstructions and intermediates as PNG"),
    ("export_bitstreams", ("Ctrl+Shift+S",), "Export bitstreams as .lic"),
    ("export_metrics", ("Ctrl+Shift+E",), "Export metrics as JSON and CSV"),
    ("export_view", ("Ctrl+Shift+P",), "Export the current view as PNG"),
    ("help", ("F1", "?"), "Show / hide this help"),
    ("quit", ("Ctrl+Q",), "Quit"),
)


# Menu of each action; the rest go to View.
MENU_OF = {"open": "file", "paste": "file", "export_panels": "file", "export_bitstreams": "file",
           "export_metrics": "file", "export_view": "file", "quit": "file", "help": "help"}


def install_actions(window: QtWidgets.QMainWindow, handlers: Mapping[str, Callable[[], None]]
                    ) -> tuple[dict[str, QtGui.QAction], dict[str, QtWidgets.QMenu]]:
    """One window-wide action per :data:`SHORTCUTS` row that has a handler, listed in the menus.

    Rows without a handler (press-and-hold keys such as the flip) only appear in the help.
    Returns the actions by id and the menus by name (``file``, ``view``, ``help``).
    """
    menus = {"file": window.menuBar().addMenu("&File"), "view": window.menuBar().addMenu("&View"),
             "help": window.menuBar().addMenu("&Help")}
    actions: dict[str, QtGui.QAction] = {}
    for aid, keys, text in SHORTCUTS:
        if aid not in handlers:
            continue
        act = QtGui.QAction(text, window)
        act.setShortcuts([QtGui.QKeySequence(k) for k in keys])
        act.setShortcutContext(QtCore.Qt.ShortcutContext.WindowShortcut)
        act.triggered.connect(handlers[aid])
        menu = menus[MENU_OF.get(aid, "view")]
        if aid in ("quit", "export_panels"):
            menu.addSeparator()
        menu.addAction(act)
        window.addAction(act)
        actions[aid] = act
    return actions, menus


class HelpOverlay(QtWidgets.QWidget):
    """A translucent sheet over the window listing every shortcut; any key or click closes it."""

    def __init__(self, parent: QtWidgets.QWidget):
        super().__init__(parent)
        self.setObjectName("help_overlay")
        self.setAttribute(QtCore.Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet("#help_overlay { background: rgba(20, 21, 24, 225); }"
                           "QLabel { color: #e8e8e8; font-size: 13px; }")
        rows = "".join(
            f"<tr><td style='padding:2px 18px 2px 0; color:#ffd166'><b>{' / '.join(keys)}</b></td>"
            f"<td>{text}</td></tr>" for _id, keys, text in SHORTCUTS)
        label = QtWidgets.QLabel(
            "<h2>lic-studio — keyboard</h2><table>" + rows + "</table>"
            "<p style='color:#9aa0a6'>Mouse: drag to pan, wheel to zoom (all image views move together); "
            "hover for the pixel readout in the status bar; click an R-D point to jump there.</p>"
            "<p style='color:#9aa0a6'>Press any key or click to close.</p>")
        label.setTextFormat(QtCore.Qt.TextFormat.RichText)
        lay = QtWidgets.QVBoxLayout(self)
        lay.addStretch(1)
        row = QtWidgets.QHBoxLayout()
        row.addStretch(1)
        row.addWidget(label)
        row.addStretch(1)
        lay.addLayout(row)
        lay.addStretch(1)
        self.hide()
        parent.installEventFilter(self)

    def toggle(self) -> None:
        self.setVisible(not self.isVisible())
        if self.isVisible():
            self.setGeometry(self.parentWidget().rect())
            self.raise_()
            self.setFocus()

    def eventFilter(self, obj, event) -> bool:
        if obj is self.parentWidget() and event.type() == QtCore.QEvent.Type.Resize:
            self.setGeometry(self.parentWidget().rect())
        return False

    def keyPressEvent(self, event: QtGui.QKeyEvent) -> None:
        self.hide()

    def mousePressEvent(self, event: QtGui.QMouseEvent) -> None:
        self.hide()
