"""lic-studio's desktop app: a thin Qt layer over :mod:`codec`.

The window opens fast because nothing here imports torch: codecs are constructed, and
metrics that need torch are computed, in worker threads (:mod:`gui.worker`). Widgets only see
the registry, :class:`codec.base.Codec` parameter specs and :class:`codec.base.CodecResult`.
Entry point: :func:`gui.app.main` (the ``lic-studio`` console script).
"""

from . import qtcompat  # noqa: F401  (must run before any signal is emitted)

__all__: list[str] = []
