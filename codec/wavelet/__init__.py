"""Wavelet latent codec (HPCM × WeConvene): WeConv transforms, DWT latent split, band-wise
progressive entropy model with LL → high-band cross-attention, adaptive quantisation.

Modules, one job each: ``config`` (Config), ``weconv`` (transforms), ``quant`` (adaptive
quantiser), ``attention`` (windowed attention), ``ll_context`` (LL context encoder), ``gate``
(frequency gate), ``progressive`` (per-band progressive context model), ``entropy`` (training /
rANS symbol io), ``model`` (Model), ``codec`` (WaveletCodec).
"""

from .codec import WaveletCodec
from .config import Config
from .model import Model

__all__ = ["Config", "Model", "WaveletCodec"]
