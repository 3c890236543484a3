"""HyRES, the hybrid codec: a JPEG base layer plus a learned, continuously rate-adaptive
residual codec (hyperprior + checkerboard context) and a multi-scale refinement post-filter.

``Model`` is :class:`HybridModel` under the name the model contract uses.
"""

from .codec import SWEEP, HybridCodec
from .config import Config
from .model import SECTION_NAMES, HybridModel
from .refine import MultiScaleRefine

Model = HybridModel

__all__ = ["Config", "HybridModel", "Model", "HybridCodec", "MultiScaleRefine", "SECTION_NAMES", "SWEEP"]
