"""``lic-studio``: open the studio on an image (or the bundled sample), or render a screenshot.

``lic-studio [IMAGE]`` opens the window; ``lic-studio --screenshot OUT.png [IMAGE]`` renders the
window offscreen once every codec has coded the image, measured it and swept its R-D curve,
saves it and exits (for docs and checks).
"""

from __future__ import annotations

import argparse
import io
import logging
import os
import sys
import time
from pathlib import Path
from typing import Sequence

__all__ = ["parse_args", "main", "take_screenshot"]

log = logging.getLogger(__name__)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="lic-studio",
        description="Compare JPEG, the hybrid and the wavelet learned codec live on an image.")
    p.add_argument("image", nargs="?", help="image file to open (default: the bundled astronaut sample)")
    p.add_argument("--screenshot", metavar="OUT.png",
                   help="render the window offscreen when everything is computed, save it, exit")
    p.add_argument("--view", choices=("grid", "wipe", "error", "bands", "rd"),
                   help="view to show first (default: the last one used; grid for screenshots)")
    p.add_argument("--size", default="1600x1000", metavar="WxH", help="window size for --screenshot")
    p.add_argument("--png-colors", type=int, default=0, metavar="N",
                   help="quantise the --screenshot PNG to N colours (e.g. 256 for docs; default: full colour)")
    p.add_argument("--timeout", type=float, default=300.0,
                   help="seconds --screenshot waits for codecs and sweeps (default 300)")
    p.add_argument("--preview-side", type=int, default=None, metavar="PX",
                   help="longer side of the preview coded while dragging on large images (default 1024)")
    p.add_argument("--codecs", default=None, metavar="NAMES",
                   help="comma-separated registry codecs to load (default: all)")
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = p.parse_args(argv)
    try:
        w, h = (int(x) for x in args.size.lower().split("x"))
        args.size = (w, h)
    except ValueError:
        p.error(f"--size {args.size!r} is not WxH, e.g. 1600x1000")
    if args.codecs:
        from codec import registry

        args.codecs = [n.strip() for n in args.codecs.split(",") if n.strip()]
        unknown = [n for n in args.codecs if n not in registry.CODECS]
        if unknown:
            p.error(f"unknown codec(s) {', '.join(unknown)}; available: {', '.join(registry.CODECS)}")
    return args


def take_screenshot(window, path: str | Path, timeout: float = 300.0, colors: int = 0) -> bool:
    """Wait until ``window.settled()`` (or ``timeout``), then save the window as PNG.

    ``colors`` > 0 quantises to a palette PNG (a fraction of the size; for docs). Returns whether
    everything was computed in time (the PNG is written either way).
    """
    from PySide6 import QtCore, QtWidgets

    app = QtWidgets.QApplication.instance()
    deadline = time.monotonic() + timeout
    settled = False
    while time.monotonic() < deadline:
        app.processEvents(QtCore.QEventLoop.ProcessEventsFlag.AllEvents, 50)
        if window.settled():
            settled = True
            break
        time.sleep(0.02)
    for _ in range(10):  # let the last results reach every widget and repaint
        app.processEvents()
        time.sleep(0.01)
    image = window.grab().toImage()
    if colors > 0:
        from PIL import Image

        from .inputs import qimage_to_png_bytes

        with Image.open(io.BytesIO(qimage_to_png_bytes(image))) as im:
            # Fast octree keeps the UI's flat colours exact, unlike median cut.
            im.convert("RGB").quantize(colors=min(colors, 256), method=Image.Quantize.FASTOCTREE).save(
                str(path), optimize=True)
    else:
        image.save(str(path), "PNG")
    return settled


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if args.screenshot:
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    from PySide6 import QtWidgets

    from codec import registry

    from .mainwindow import MainWindow
    from .settings import APPLICATION, ORGANISATION, Settings

    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication([sys.argv[0] if sys.argv else "lic-studio"])
    app.setOrganizationName(ORGANISATION)
    app.setApplicationName(APPLICATION)
    app.setStyle("Fusion")
    _dark_palette(app)
    entries = [registry.entry(n) for n in args.codecs] if args.codecs else None
    settings = Settings.ephemeral() if args.screenshot else Settings()
    window = MainWindow(settings=settings, entries=entries, preview_side=args.preview_side)
    if args.view:
        window.show_view(args.view)
    elif args.screenshot:
        window.show_view("grid")
    if args.image and not window.load_path(args.image):
        message = window.banner.text()
        log.error("%s", message)
        window.load_default()
        window.show_message(message + " Showing the bundled sample instead.", error=True)
    elif window.source is None:
        window.load_default()
    if args.screenshot:
        window.resize(*args.size)
        window.show()
        ok = take_screenshot(window, args.screenshot, args.timeout, args.png_colors)
        if not ok:
            log.warning("screenshot taken before every codec finished (timeout %.0f s)", args.timeout)
        window.close()
        print(args.screenshot)
        return _leave(window, 0)
    window.show()
    return _leave(window, app.exec())


def _leave(window, code: int) -> int:
    """Return ``code``; or, if a codec thread is still inside a long encode whose result nobody
    wants, exit now: settings are saved, and interpreter finalisation would race that thread's
    native (torch) code."""
    if any(w.alive for w in window.hub.workers.values()):
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


def _dark_palette(app) -> None:
    """A dark Fusion palette: images are judged against neutral dark surroundings."""
    from PySide6 import QtGui

    pal = QtGui.QPalette()
    c = QtGui.QColor
    roles = QtGui.QPalette.ColorRole
    for role, color in ((roles.Window, "#25272b"), (roles.WindowText, "#dddddd"), (roles.Base, "#1e1f22"),
                        (roles.AlternateBase, "#2b2d30"), (roles.Text, "#dddddd"), (roles.Button, "#313338"),
                        (roles.ButtonText, "#dddddd"), (roles.Highlight, "#3d6fb4"),
                        (roles.HighlightedText, "#ffffff"), (roles.ToolTipBase, "#2b2d30"),
                        (roles.ToolTipText, "#dddddd"), (roles.PlaceholderText, "#8a8f98")):
        pal.setColor(role, c(color))
    app.setPalette(pal)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
