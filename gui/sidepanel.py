"""The left side of the window: what image is open, "match bpp", and one card per codec."""

from __future__ import annotations

from typing import Any, Iterable

from PySide6 import QtCore, QtWidgets

from .cards import CodecCard, codec_color

__all__ = ["SidePanel"]


class SidePanel(QtWidgets.QScrollArea):
    """Cards are created up front from the registry entries (name, title), so the window shows
    every codec at once; their controls appear when the worker reports the codec's spec.

    ``matchRequested(target_bpp)`` when the user asks every codec to hit a bpp.
    """

    matchRequested = QtCore.Signal(float)

    def __init__(self, entries: Iterable[Any], match_target: float = 0.5, parent=None):
        super().__init__(parent)
        body = QtWidgets.QWidget()
        lay = QtWidgets.QVBoxLayout(body)
        lay.setContentsMargins(6, 6, 6, 6)
        lay.setSpacing(8)
        self.image_label = QtWidgets.QLabel("no image")
        self.image_label.setObjectName("image_info")
        self.image_label.setWordWrap(True)
        lay.addWidget(self.image_label)
        row = QtWidgets.QHBoxLayout()
        self.match_spin = QtWidgets.QDoubleSpinBox()
        self.match_spin.setObjectName("match_bpp")
        self.match_spin.setRange(0.01, 24.0)
        self.match_spin.setDecimals(3)
        self.match_spin.setSingleStep(0.05)
        self.match_spin.setValue(float(match_target))
        self.match_spin.setSuffix(" bpp")
        self.match_spin.lineEdit().returnPressed.connect(self._request_match)
        self.match_button = QtWidgets.QPushButton("Match bpp")
        self.match_button.setObjectName("match_button")
        self.match_button.setToolTip("Every codec searches its rate setting for the bpp closest to this target")
        self.match_button.clicked.connect(self._request_match)  # clicked(bool): the slot ignores it
        row.addWidget(self.match_spin, 1)
        row.addWidget(self.match_button)
        lay.addLayout(row)
        self.match_label = QtWidgets.QLabel("")
        self.match_label.setObjectName("match_result")
        self.match_label.setWordWrap(True)
        self.match_label.setStyleSheet("color: #9aa0a6; font-size: 11px;")
        lay.addWidget(self.match_label)
        self.cards: dict[str, CodecCard] = {}
        for i, e in enumerate(entries):
            card = CodecCard(e.name, e.title, codec_color(e.name, i))
            self.cards[e.name] = card
            lay.addWidget(card)
        lay.addStretch(1)
        self.setWidgetResizable(True)
        self.setWidget(body)
        # Room for the cards beside the vertical scroll bar, which appears once they outgrow the window.
        self.setMinimumWidth(330 + self.verticalScrollBar().sizeHint().width())
        self.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)

    def _request_match(self, *_args) -> None:
        self.matchRequested.emit(float(self.match_spin.value()))

    def focus_match(self) -> None:
        self.match_spin.setFocus()
        self.match_spin.selectAll()

    def set_image_info(self, name: str, width: int, height: int, preview: tuple[int, int] | None) -> None:
        extra = f" · previews at {preview[0]}×{preview[1]} while dragging" if preview else ""
        self.image_label.setText(f"<b>{name}</b><br>{width}×{height} px{extra}")
