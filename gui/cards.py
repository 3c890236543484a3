"""Codec cards: one per registry codec, its controls built from the codec's ParamSpecs.

A card shows, live, what the last encode produced: bytes, bpp as a bar stacked by bitstream
section (so one sees how a hybrid spends its bits between the JPEG base, the residual and side
information), PSNR-RGB, MS-SSIM (and in dB, the scale on which differences near 1 are
readable), encode/decode times, and the PSNR gain over JPEG at the same bpp, read off the JPEG
sweep on the same image.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6 import QtCore, QtGui, QtWidgets

from .params import ParamControl, make_control
from .state import CodecSpec, CodecStatus, EncodeOutcome

__all__ = ["CODEC_COLORS", "SECTION_COLORS", "codec_color", "section_color", "SectionBar", "CodecCard",
           "fmt"]

# Okabe-Ito: distinguishable with the common colour-vision deficiencies.
CODEC_COLORS = {"jpeg": "#E69F00", "hybrid": "#56B4E9", "wavelet": "#009E73"}
_EXTRA = ["#CC79A7", "#F0E442", "#D55E00", "#0072B2"]
SECTION_COLORS = {"jpeg": "#E69F00", "jpeg_base": "#E69F00", "base": "#E69F00", "residual": "#56B4E9",
                  "side": "#CC79A7", "hyper": "#CC79A7", "z": "#CC79A7", "container": "#777777"}
_SECTION_CYCLE = ["#009E73", "#0072B2", "#D55E00", "#F0E442", "#56B4E9", "#CC79A7", "#E69F00"]


def codec_color(name: str, index: int = 0) -> str:
    return CODEC_COLORS.get(name, _EXTRA[index % len(_EXTRA)])


def section_color(name: str, index: int) -> str:
    return SECTION_COLORS.get(name, _SECTION_CYCLE[index % len(_SECTION_CYCLE)])


def fmt(value: float, spec: str, unit: str = "", missing: str = "—") -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return missing
    return f"{value:{spec}}{unit}"


class SectionBar(QtWidgets.QWidget):
    """A horizontal bar: total bpp split into coloured bitstream sections.

    All cards share one scale (:meth:`set_scale`) so bar lengths compare across codecs.
    """

    def __init__(self, parent=None):
        super().__init__(parent)
        self.sections: list[tuple[str, float]] = []
        self.scale = 1.0
        self.setMinimumHeight(14)
        self.setSizePolicy(QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed)

    def sizeHint(self) -> QtCore.QSize:
        return QtCore.QSize(200, 14)

    def set_sections(self, section_bpp: dict[str, float]) -> None:
        self.sections = [(k, float(v)) for k, v in section_bpp.items() if v > 0]
        self.setToolTip("\n".join(f"{k}: {v:.4f} bpp" for k, v in self.sections))
        self.update()

    def set_scale(self, max_bpp: float) -> None:
        self.scale = max(max_bpp, 1e-9)
        self.update()

    def paintEvent(self, _event) -> None:
        p = QtGui.QPainter(self)
        r = self.rect().adjusted(0, 1, -1, -1)
        p.fillRect(r, QtGui.QColor("#2b2d30"))
        x = float(r.left())
        for i, (name, v) in enumerate(self.sections):
            w = r.width() * v / self.scale
            p.fillRect(QtCore.QRectF(x, r.top(), w, r.height()), QtGui.QColor(section_color(name, i)))
            x += w
        p.end()


def encoder_choices(outcome: EncodeOutcome) -> str:
    """What the encoder decided for parameters the request left to it (``refine=auto`` → ``on``)."""
    given, used = outcome.params, outcome.result.params if outcome.result else {}
    return ", ".join(f"{k}={used[k]}" for k in given if k in used and str(used[k]) != str(given[k]))


class CodecCard(QtWidgets.QFrame):
    """One codec's controls and live metrics."""

    paramsChanged = QtCore.Signal(str, dict, bool)  # codec, params, dragging
    enabledChanged = QtCore.Signal(str, bool)
    pinToggled = QtCore.Signal(str, bool)  # keep the current result as a panel (A/B at two settings)

    def __init__(self, name: str, title: str, color: str, parent=None):
        super().__init__(parent)
        self.name = name
        self.title = title
        self.color = color
        self.spec: CodecSpec | None = None
        self.controls: dict[str, ParamControl] = {}
        self.setObjectName(f"card_{name}")
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.setStyleSheet(f"#card_{name} {{ border: 1px solid #3c3f44; border-left: 4px solid {color}; "
                           "border-radius: 4px; }")
        outer = QtWidgets.QVBoxLayout(self)
        outer.setContentsMargins(10, 6, 8, 8)
        outer.setSpacing(4)
        head = QtWidgets.QHBoxLayout()
        self.title_label = QtWidgets.QLabel(f"<b>{title}</b>")
        self.enabled_box = QtWidgets.QCheckBox("on")
        self.enabled_box.setChecked(True)
        self.enabled_box.setToolTip("Code this image with this codec")
        self.enabled_box.toggled.connect(self._toggled)
        self.pin_button = QtWidgets.QToolButton()
        self.pin_button.setText("pin")
        self.pin_button.setObjectName("pin")
        self.pin_button.setCheckable(True)
        self.pin_button.setToolTip("Keep the current result as an extra panel, to compare this codec "
                                   "with itself at another setting (wipe, grid, error)")
        self.pin_button.toggled.connect(lambda on: self.pinToggled.emit(self.name, on))
        head.addWidget(self.title_label)
        head.addStretch(1)
        head.addWidget(self.pin_button)
        head.addWidget(self.enabled_box)
        outer.addLayout(head)
        self.status_label = QtWidgets.QLabel("loading…")
        self.status_label.setObjectName("status")
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #9aa0a6; font-size: 11px;")
        outer.addWidget(self.status_label)
        self.form = QtWidgets.QFormLayout()
        self.form.setContentsMargins(0, 0, 0, 0)
        self.form.setHorizontalSpacing(8)
        self.form.setVerticalSpacing(3)
        outer.addLayout(self.form)
        self.bar = SectionBar()
        outer.addWidget(self.bar)
        self.legend = QtWidgets.QLabel("")
        self.legend.setObjectName("legend")
        self.legend.setWordWrap(True)
        self.legend.setStyleSheet("font-size: 10px; color: #9aa0a6;")
        outer.addWidget(self.legend)
        grid = QtWidgets.QGridLayout()
        grid.setHorizontalSpacing(10)
        grid.setVerticalSpacing(1)
        self.metric_labels: dict[str, QtWidgets.QLabel] = {}
        rows = [("size", "size"), ("psnr", "PSNR-RGB"), ("delta", "Δ vs JPEG"), ("msssim", "MS-SSIM"),
                ("times", "enc / dec")]
        for i, (key, text) in enumerate(rows):
            name_label = QtWidgets.QLabel(text)
            name_label.setStyleSheet("color: #9aa0a6;")
            value = QtWidgets.QLabel("—")
            value.setObjectName(f"metric_{key}")
            value.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
            grid.addWidget(name_label, i, 0)
            grid.addWidget(value, i, 1)
            self.metric_labels[key] = value
        grid.setColumnStretch(1, 1)
        outer.addLayout(grid)
        self.outcome: EncodeOutcome | None = None
        self.delta_psnr = math.nan

    # -- spec and parameters ------------------------------------------------------------------
    def set_spec(self, spec: CodecSpec, initial: dict[str, Any] | None = None) -> None:
        """Build one control per parameter; ``initial`` (e.g. from settings) overrides defaults."""
        self.spec = spec
        for p in spec.params:
            ctl = make_control(p)
            if initial and p.name in initial:
                try:
                    ctl.set_value(p.coerce(initial[p.name]))
                except ValueError:
                    pass  # a stale saved value: keep the default
            ctl.changed.connect(self._control_changed)
            label = QtWidgets.QLabel(p.name.replace("_", " "))
            label.setToolTip(p.help)
            self.form.addRow(label, ctl)
            self.controls[p.name] = ctl

    def params(self) -> dict[str, Any]:
        return {name: ctl.value() for name, ctl in self.controls.items()}

    def set_params(self, params: dict[str, Any], emit: bool = True) -> None:
        for name, value in params.items():
            if name in self.controls:
                self.controls[name].set_value(value)
        if emit:
            self.paramsChanged.emit(self.name, self.params(), False)

    def control(self, name: str) -> ParamControl:
        return self.controls[name]

    @property
    def enabled(self) -> bool:
        return self.enabled_box.isChecked()

    def set_enabled(self, on: bool) -> None:
        self.enabled_box.setChecked(on)

    def _toggled(self, on: bool) -> None:
        for ctl in self.controls.values():
            ctl.setEnabled(on)
        self.enabledChanged.emit(self.name, on)

    def _control_changed(self, dragging: bool) -> None:
        self.paramsChanged.emit(self.name, self.params(), dragging)

    # -- status and metrics --------------------------------------------------------------------
    def set_status(self, text: str, error: bool = False) -> None:
        self.status_label.setText(text)
        self.status_label.setStyleSheet(
            f"color: {'#ff6b6b' if error else '#9aa0a6'}; font-size: 11px;")

    def set_ready(self, status: CodecStatus) -> None:
        weights = "" if status.trained is None else (
            f" · weights {status.weights}" + ("" if status.trained else " (untrained)"))
        self.set_status(f"{status.device}{weights} · loaded in {status.load_ms:.0f} ms")

    def show_outcome(self, outcome: EncodeOutcome) -> None:
        self.outcome = outcome
        labels = self.metric_labels
        if not outcome.ok:
            for lab in labels.values():
                lab.setText("—")
            labels["size"].setText(f"<span style='color:#ff6b6b'>{outcome.error}</span>")
            self.bar.set_sections({})
            self.legend.setText("")
            return
        m = outcome.metrics
        assert m is not None
        where = f" <span style='color:#9aa0a6'>(preview {m.width}×{m.height})</span>" if outcome.preview else ""
        labels["size"].setText(f"{m.num_bytes:,} B · <b>{m.bpp:.4f} bpp</b>{where}")
        labels["psnr"].setText(f"<b>{fmt(m.psnr, '.2f', ' dB')}</b>")
        if m.ms_ssim_state == "done":
            labels["msssim"].setText(f"{m.ms_ssim:.4f} ({m.ms_ssim_db:.2f} dB)")
        elif m.ms_ssim_state == "n/a":
            labels["msssim"].setText("n/a (image side < 161 px)")
        else:
            labels["msssim"].setText("computing…")
        labels["times"].setText(f"{fmt(m.encode_ms, '.1f', ' ms')} / {fmt(m.decode_ms, '.1f', ' ms')}"
                                + (" (cached)" if outcome.cached else ""))
        self.bar.set_sections(m.section_bpp)
        legend = " · ".join(
            f"<span style='color:{section_color(k, i)}'>■</span> {k} {v:.3f}"
            for i, (k, v) in enumerate((k, v) for k, v in m.section_bpp.items() if v > 0)) + " bpp"
        chosen = encoder_choices(outcome)
        shape = outcome.result.info.get("postfilter") if outcome.result else None
        self.legend.setText(legend + (f"<br>encoder chose {chosen}" if chosen else "")
                            + (f"<br>post-filter: {shape}" if shape else ""))
        self._show_delta()

    def clear_metrics(self) -> None:
        """A new image: nothing shown may belong to the previous one."""
        self.outcome = None
        self.delta_psnr = math.nan
        for lab in self.metric_labels.values():
            lab.setText("…")
        self.bar.set_sections({})
        self.legend.setText("")

    def set_delta_psnr(self, delta: float) -> None:
        self.delta_psnr = delta
        self._show_delta()

    def _show_delta(self) -> None:
        d = self.delta_psnr
        if not math.isfinite(d):
            o = self.outcome
            text = "— (outside the JPEG sweep)" if o is not None and o.ok and not o.preview else "—"
        else:
            color = "#7bd88f" if d > 0.005 else "#ff6b6b" if d < -0.005 else "#d8d8d8"
            text = f"<span style='color:{color}'>{d:+.2f} dB</span> at the same bpp"
        self.metric_labels["delta"].setText(text)
