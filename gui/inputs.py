"""Where images come from: files, drops, the clipboard, the bundled sample.

Everything ends in :func:`codec.image.open_image` (paths) or its bytes form (clipboard images,
re-encoded losslessly as PNG), so the app accepts exactly what the command line accepts and
reports the same clear :class:`codec.errors.ImageError` messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui

__all__ = ["DEFAULT_IMAGE_NAME", "default_image", "qimage_to_png_bytes", "from_mime"]

DEFAULT_IMAGE_NAME = "astronaut (scikit-image sample)"


def default_image() -> np.ndarray:
    """The bundled default: scikit-image's astronaut photograph (512×512, public domain)."""
    from skimage import data

    return np.ascontiguousarray(data.astronaut()[..., :3])


def qimage_to_png_bytes(image: QtGui.QImage) -> bytes:
    buf = QtCore.QBuffer()
    buf.open(QtCore.QIODevice.OpenModeFlag.WriteOnly)
    image.save(buf, "PNG")
    return bytes(buf.data())


def from_mime(mime: QtCore.QMimeData | None) -> tuple[str, object] | None:
    """``("path", str)`` for a local file, ``("bytes", png)`` for image data, else None.

    A file URL wins over image data: browsers put both on drags, and the file is the original.
    """
    if mime is None:
        return None
    if mime.hasUrls():
        for url in mime.urls():
            if url.isLocalFile():
                return "path", url.toLocalFile()
    if mime.hasImage():
        img = mime.imageData()
        if isinstance(img, QtGui.QPixmap):
            img = img.toImage()
        if isinstance(img, QtGui.QImage) and not img.isNull():
            return "bytes", qimage_to_png_bytes(img)
    if mime.hasText():
        text = mime.text().strip()
        if text.startswith("file://"):
            text = QtCore.QUrl(text).toLocalFile()
        if text and "\n" not in text and Path(text).expanduser().exists():
            return "path", str(Path(text).expanduser())
    return None
