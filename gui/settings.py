"""Persistent settings (QSettings), stored as JSON strings so types survive every backend.

Qt's INI and registry backends return strings for numbers and lose list and bool types on
some platforms; one JSON value per key sidesteps that.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from PySide6 import QtCore

__all__ = ["Settings", "ORGANISATION", "APPLICATION"]

log = logging.getLogger(__name__)
ORGANISATION = "lic-studio"
APPLICATION = "lic-studio"


class Settings:
    """Typed get/set over a ``QSettings``; ``ephemeral()`` for screenshots and tests."""

    def __init__(self, qsettings: QtCore.QSettings | None = None):
        self.q = qsettings if qsettings is not None else QtCore.QSettings(ORGANISATION, APPLICATION)
        self._memory: dict[str, Any] | None = None

    @classmethod
    def ephemeral(cls) -> "Settings":
        s = cls.__new__(cls)
        s.q = None
        s._memory = {}
        return s

    @classmethod
    def at(cls, path: str) -> "Settings":
        return cls(QtCore.QSettings(str(path), QtCore.QSettings.Format.IniFormat))

    def get(self, key: str, default: Any = None) -> Any:
        if self._memory is not None:
            return self._memory.get(key, default)
        raw = self.q.value(key, None)
        if raw is None:
            return default
        try:
            return json.loads(raw)
        except (TypeError, ValueError):
            log.warning("ignoring unreadable setting %s=%r", key, raw)
            return default

    def set(self, key: str, value: Any) -> None:
        if self._memory is not None:
            self._memory[key] = value
            return
        self.q.setValue(key, json.dumps(value))

    def get_bytes(self, key: str) -> QtCore.QByteArray | None:
        if self._memory is not None:
            return self._memory.get(key)
        v = self.q.value(key, None)
        return v if isinstance(v, QtCore.QByteArray) else None

    def set_bytes(self, key: str, value: QtCore.QByteArray) -> None:
        if self._memory is not None:
            self._memory[key] = value
            return
        self.q.setValue(key, value)

    def sync(self) -> None:
        if self.q is not None:
            self.q.sync()
