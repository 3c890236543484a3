"""Symbol sources and sinks of the progressive loop: training, rANS encoding, rANS decoding.

:meth:`codec.wavelet.progressive.BandCoder.run` computes a step's Gaussian parameters and asks
an ``io`` object for that step's symbols. Keeping the loop single and swapping only this object
is what makes encoder and decoder agree bit for bit: they evaluate the very same networks on
the very same (decoded) inputs.

Each step is entropy coded with one batched rANS call (compressai's BufferedRansEncoder /
RansDecoder over GaussianConditional's scale-indexed CDF tables), never symbol by symbol; one
band is one rANS stream, i.e. one ``.lic`` section.
"""

from __future__ import annotations

import torch

from compressai.ans import BufferedRansEncoder, RansDecoder

from ..errors import BitstreamError
from .quant import quantize, symbol_likelihood, symbol_scale

__all__ = ["TrainingIO", "RansWriter", "RansReader", "check_rans_stream"]


def check_rans_stream(name: str, data: bytes) -> None:
    """Refuse a section that cannot be a flushed rANS stream (whole 32-bit words, at least
    the 64-bit final state) before the unchecked C++ decoder reads it."""
    if not isinstance(data, (bytes, bytearray)) or len(data) < 8 or len(data) % 4:
        size = len(data) if isinstance(data, (bytes, bytearray)) else type(data).__name__
        raise BitstreamError(f"section {name!r} is not a rANS stream ({size} bytes)")


class TrainingIO:
    """Straight-through symbols from ``y``; collects per-symbol likelihoods per band."""

    def __init__(self, noise: bool):
        self.noise = noise
        self.likelihoods: dict[str, torch.Tensor] = {}

    def code(self, band, t, y, mu, sigma, delta, mask):
        lik = symbol_likelihood(y, mu, sigma, delta, self.noise)
        prev = self.likelihoods.get(band)
        self.likelihoods[band] = torch.where(mask, lik, torch.ones_like(lik) if prev is None else prev)
        return quantize(y, mu, delta, ste=True)


class _Tables:
    def __init__(self, gaussian_conditional):
        gc = gaussian_conditional
        if gc.quantized_cdf.numel() == 0:
            raise RuntimeError("entropy coder tables missing: call model.update(force=True) first")
        self.gc = gc
        self.cdfs = gc.quantized_cdf.tolist()
        self.lengths = gc.cdf_length.reshape(-1).int().tolist()
        self.offsets = gc.offset.reshape(-1).int().tolist()

    def indexes(self, sigma, delta, mask):
        """Scale-table indexes of the masked symbols, remapped onto the tables they use.

        The rANS binding converts every CDF it is given on each call, so a step passes only
        the CDFs its symbols need. Returns ``(indexes, cdfs, lengths, offsets, full mask)``.
        """
        m = mask.expand_as(sigma)
        scales = symbol_scale(sigma, delta.expand_as(sigma))[m]
        used, local = torch.unique(self.gc.build_indexes(scales), return_inverse=True)
        used = used.tolist()
        return (local.tolist(), [self.cdfs[i] for i in used], [self.lengths[i] for i in used],
                [self.offsets[i] for i in used], m)


def _scatter(values: list[int], m: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    # writer and reader build the step's symbol tensor the same way, from the same integers,
    # so the ŷ fed to later steps is identical down to the sign of zero
    symbols = torch.zeros_like(like)
    symbols[m] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return symbols


class RansWriter(_Tables):
    """Rounds ``(y - μ)/Δ`` and appends each step's symbols to its band's rANS stream."""

    def __init__(self, gaussian_conditional):
        super().__init__(gaussian_conditional)
        self._encoders: dict[str, BufferedRansEncoder] = {}

    def code(self, band, t, y, mu, sigma, delta, mask):
        idx, cdfs, lengths, offsets, m = self.indexes(sigma, delta, mask)
        values = quantize(y, mu, delta)[m].int().tolist()
        enc = self._encoders.setdefault(band, BufferedRansEncoder())
        enc.encode_with_indexes(values, idx, cdfs, lengths, offsets)
        return _scatter(values, m, mu)

    def strings(self) -> dict[str, bytes]:
        return {band: enc.flush() for band, enc in self._encoders.items()}


class RansReader(_Tables):
    """Decodes each step's symbols from its band's rANS stream."""

    def __init__(self, gaussian_conditional, strings: dict[str, bytes]):
        super().__init__(gaussian_conditional)
        self._decoders = {}
        for band, data in strings.items():
            check_rans_stream(band, data)
            dec = RansDecoder()
            dec.set_stream(bytes(data))
            self._decoders[band] = (dec, data)  # keep the bytes alive while decoding

    def code(self, band, t, y, mu, sigma, delta, mask):
        idx, cdfs, lengths, offsets, m = self.indexes(sigma, delta, mask)
        values = self._decoders[band][0].decode_stream(idx, cdfs, lengths, offsets)
        return _scatter(values, m, mu)
