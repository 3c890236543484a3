"""Widgets generated from :class:`codec.base.ParamSpec`, so new codecs need no GUI code.

int and float parameters with a range get a slider plus a spin box (type an exact value);
float sliders are logarithmic when the range spans more than a factor of 20 (rate knobs such
as a Lagrange multiplier live on a log scale). bool gives a check box, choice a combo box.
Each control reports ``changed(dragging)``: ``dragging`` is True while a slider is held, which
is when the studio codes a downscaled preview of a large image.
"""

from __future__ import annotations

import math
from typing import Any

from PySide6 import QtCore, QtWidgets

from codec.base import ParamSpec

__all__ = ["ParamControl", "IntControl", "FloatControl", "BoolControl", "ChoiceControl", "make_control"]

FLOAT_STEPS = 1000
MAX_INT_SLIDER_SPAN = 10_000


class ParamControl(QtWidgets.QWidget):
    """Base: one parameter's editor. ``value()``/``set_value()``; ``changed(dragging)``."""

    changed = QtCore.Signal(bool)

    def __init__(self, spec: ParamSpec, parent: QtWidgets.QWidget | None = None):
        super().__init__(parent)
        self.spec = spec
        self.setToolTip(spec.help or spec.name)
        self.slider: QtWidgets.QSlider | None = None
        lay = QtWidgets.QHBoxLayout(self)
        lay.setContentsMargins(0, 0, 0, 0)
        lay.setSpacing(6)

    def value(self) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def set_value(self, value: Any) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def dragging(self) -> bool:
        return self.slider is not None and self.slider.isSliderDown()

    def _make_slider(self, lo: int, hi: int) -> QtWidgets.QSlider:
        s = QtWidgets.QSlider(QtCore.Qt.Orientation.Horizontal)
        s.setRange(lo, hi)
        s.setObjectName(f"slider_{self.spec.name}")
        s.valueChanged.connect(self._slider_moved)
        s.sliderReleased.connect(lambda: self.changed.emit(False))
        self.layout().addWidget(s, 1)
        self.slider = s
        return s

    def _slider_moved(self, _pos: int) -> None:  # pragma: no cover - overridden where used
        pass


def _bounded(spec: ParamSpec) -> bool:
    return spec.minimum is not None and spec.maximum is not None


class IntControl(ParamControl):
    def __init__(self, spec: ParamSpec, parent=None):
        super().__init__(spec, parent)
        lo = int(spec.minimum) if spec.minimum is not None else -(2 ** 31) + 1
        hi = int(spec.maximum) if spec.maximum is not None else 2 ** 31 - 1
        self.spin = QtWidgets.QSpinBox()
        if _bounded(spec) and hi - lo <= MAX_INT_SLIDER_SPAN:
            self._make_slider(lo, hi).setValue(int(spec.default))
        self.spin.setObjectName(f"spin_{spec.name}")
        self.spin.setRange(lo, hi)
        self.spin.setKeyboardTracking(False)
        self.spin.setValue(int(spec.default))
        self.spin.valueChanged.connect(self._spin_changed)
        self.layout().addWidget(self.spin)

    def value(self) -> int:
        return int(self.spin.value())

    def set_value(self, value: Any) -> None:
        v = int(value)
        for w in (self.slider, self.spin):
            if w is not None:
                w.blockSignals(True)
                w.setValue(v)
                w.blockSignals(False)

    def _slider_moved(self, pos: int) -> None:
        self.spin.blockSignals(True)
        self.spin.setValue(pos)
        self.spin.blockSignals(False)
        self.changed.emit(self.dragging())

    def _spin_changed(self, v: int) -> None:
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(v)
            self.slider.blockSignals(False)
        self.changed.emit(False)


class FloatControl(ParamControl):
    def __init__(self, spec: ParamSpec, parent=None):
        super().__init__(spec, parent)
        self.lo = float(spec.minimum) if spec.minimum is not None else -1e9
        self.hi = float(spec.maximum) if spec.maximum is not None else 1e9
        self.log_scale = _bounded(spec) and self.lo > 0 and self.hi / self.lo >= 20
        if _bounded(spec):
            self._make_slider(0, FLOAT_STEPS)
        self.spin = QtWidgets.QDoubleSpinBox()
        self.spin.setObjectName(f"spin_{spec.name}")
        span = self.hi - self.lo if _bounded(spec) else 1.0
        decimals = max(2, min(6, 3 - math.floor(math.log10(span)) if span > 0 else 3))
        if self.log_scale:
            decimals = max(decimals, 2 - math.floor(math.log10(self.lo)) + 1)
        self.spin.setDecimals(int(decimals))
        self.spin.setRange(self.lo, self.hi)
        self.spin.setSingleStep(span / 100 if _bounded(spec) else 0.1)
        self.spin.setKeyboardTracking(False)
        self.spin.valueChanged.connect(self._spin_changed)
        self.layout().addWidget(self.spin)
        self.set_value(spec.default)

    def _to_pos(self, v: float) -> int:
        if self.log_scale:
            t = (math.log(v) - math.log(self.lo)) / (math.log(self.hi) - math.log(self.lo))
        else:
            t = (v - self.lo) / (self.hi - self.lo)
        return int(round(min(max(t, 0.0), 1.0) * FLOAT_STEPS))

    def _from_pos(self, pos: int) -> float:
        t = pos / FLOAT_STEPS
        if self.log_scale:
            return math.exp(math.log(self.lo) + t * (math.log(self.hi) - math.log(self.lo)))
        return self.lo + t * (self.hi - self.lo)

    def value(self) -> float:
        return float(min(max(self.spin.value(), self.lo), self.hi))

    def set_value(self, value: Any) -> None:
        v = float(value)
        self.spin.blockSignals(True)
        self.spin.setValue(v)
        self.spin.blockSignals(False)
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_pos(v))
            self.slider.blockSignals(False)

    def _slider_moved(self, pos: int) -> None:
        self.spin.blockSignals(True)
        self.spin.setValue(self._from_pos(pos))
        self.spin.blockSignals(False)
        self.changed.emit(self.dragging())

    def _spin_changed(self, v: float) -> None:
        if self.slider is not None:
            self.slider.blockSignals(True)
            self.slider.setValue(self._to_pos(v))
            self.slider.blockSignals(False)
        self.changed.emit(False)


class BoolControl(ParamControl):
    def __init__(self, spec: ParamSpec, parent=None):
        super().__init__(spec, parent)
        self.box = QtWidgets.QCheckBox(spec.help or spec.name)
        self.box.setObjectName(f"check_{spec.name}")
        self.box.setChecked(bool(spec.default))
        self.box.toggled.connect(lambda _on: self.changed.emit(False))
        self.layout().addWidget(self.box)

    def value(self) -> bool:
        return self.box.isChecked()

    def set_value(self, value: Any) -> None:
        self.box.blockSignals(True)
        self.box.setChecked(bool(spec_bool(value)))
        self.box.blockSignals(False)


def spec_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.lower() in ("1", "true", "yes", "on")
    return bool(value)


class ChoiceControl(ParamControl):
    def __init__(self, spec: ParamSpec, parent=None):
        super().__init__(spec, parent)
        self.combo = QtWidgets.QComboBox()
        self.combo.setObjectName(f"combo_{spec.name}")
        self.combo.addItems(list(spec.choices))
        self.combo.setCurrentText(str(spec.default))
        self.combo.currentTextChanged.connect(lambda _t: self.changed.emit(False))
        self.layout().addWidget(self.combo, 1)

    def value(self) -> str:
        return self.combo.currentText()

    def set_value(self, value: Any) -> None:
        if str(value) in self.spec.choices:
            self.combo.blockSignals(True)
            self.combo.setCurrentText(str(value))
            self.combo.blockSignals(False)


def make_control(spec: ParamSpec, parent: QtWidgets.QWidget | None = None) -> ParamControl:
    kinds = {"int": IntControl, "float": FloatControl, "bool": BoolControl, "choice": ChoiceControl}
    try:
        return kinds[spec.kind](spec, parent)
    except KeyError:
        raise ValueError(f"parameter {spec.name!r} has unknown kind {spec.kind!r}; "
                         f"valid: {', '.join(kinds)}") from None
