"""lic-studio's codec core: images, the ``.lic`` container, metrics and the codec registry.

Qt-free and torch-free at import time; learned codecs import torch when first created.
"""

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
