"""lic-studio's codec core: images, the ``.lic`` container, metrics and the codec registry.

Qt-free and torch-free at import time; learned codecs import torch when first created.
"""

import warnings

# compressai imports torch_geometric, which applies torch.jit.script at import time, and torch
# 2.14 answers that with a FutureWarning that every command then printed. It concerns neither
# this program nor its users, so it is silenced by its exact text, and only it.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from .base import Codec, CodecResult, ParamSpec
from .container import Container
from .errors import BitstreamError, ImageError, LicError, ParameterError, WeightsError
from .image import ImageWarning, open_image
from .registry import codec_names, create, decode_bitstream

__all__ = [
    "Codec",
    "CodecResult",
    "ParamSpec",
    "Container",
    "LicError",
    "ImageError",
    "BitstreamError",
    "ParameterError",
    "WeightsError",
    "ImageWarning",
    "open_image",
    "codec_names",
    "create",
    "decode_bitstream",
]
