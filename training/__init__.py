"""lic-studio's training package: ``lic-train`` for the hybrid, refinement and wavelet models.

Modules: ``config`` (the run's dataclass), ``data`` (cached images, crops, JPEG bases),
``losses`` (rate-distortion terms), ``models`` (registry access, starting weights, freezing,
in-memory codecs), ``trainer`` (the loop), ``checkpoint`` (atomic, exact-resume state),
``dist`` (torchrun / DDP), ``validate`` (real entropy coding), ``logs`` (CSV, TensorBoard,
progress), ``export`` (weights files and the manifest), ``cli`` (``lic-train``).
Never imports Qt; heavy imports happen in the modules, not here.
"""

__all__: list[str] = []
