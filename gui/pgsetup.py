"""The one place pyqtgraph is configured, before any of its items exists.

Row-major image axes let ``(H, W, 3)`` numpy images go to ``ImageItem`` without transposes;
antialiasing off keeps zoomed-in pixels as crisp nearest-neighbour squares. Every gui module
imports ``pg`` from here so the order cannot go wrong.
"""

import pyqtgraph as pg

__all__ = ["pg"]

pg.setConfigOptions(imageAxisOrder="row-major", antialias=False, background="#1e1f22",
                    foreground="#d8d8d8")
