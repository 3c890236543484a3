"""A guard against a reference-count bug in PySide6 6.12 on Python < 3.12.

``SignalInstance.emit()`` called from Python returns ``True`` without taking a reference, so
every emit (ours and pyqtgraph's, thousands per minute while dragging) drops one reference to
``True``; when the count reaches zero the interpreter aborts with "bool_dealloc: deallocating
True or False". Python 3.12 made ``True``/``False`` immortal (PEP 683), which hides the bug.
Here the bug is *detected* (one emit, refcount before/after) and, only if present, ``True`` and
``False`` get the same practical immortality: a large reference count added once. Nothing is
patched when the installed PySide6 behaves.
"""

from __future__ import annotations

import ctypes
import logging
import sys

from PySide6 import QtCore

__all__ = ["emit_leaks_true", "guard_bool_refcounts", "GUARDED"]

log = logging.getLogger(__name__)
_EXTRA_REFS = 1 << 40


class _Probe(QtCore.QObject):
    ping = QtCore.Signal(int)


def emit_leaks_true() -> bool:
    """Whether a Python-side ``emit`` loses a reference to ``True`` in this PySide6."""
    probe = _Probe()
    before = sys.getrefcount(True)
    for _ in range(8):
        probe.ping.emit(1)
    return sys.getrefcount(True) < before


def guard_bool_refcounts() -> bool:
    """Make ``True``/``False`` effectively immortal if emits leak them; True when applied."""
    if sys.version_info >= (3, 12) or not emit_leaks_true():
        return False
    if getattr(sys, "gettotalrefcount", None) is not None:  # a debug build: layout differs
        log.warning("PySide6 emit() leaks references to True; debug Python, guard not applied")
        return False
    for obj in (True, False):
        ctypes.c_ssize_t.from_address(id(obj)).value += _EXTRA_REFS
    log.debug("PySide6 emit() leaks references to True: guarded (%s)", QtCore.qVersion())
    return True


GUARDED = guard_bool_refcounts()
