"""Rate-distortion losses: λ·255²·MSE + bpp, with optional MS-SSIM and VGG terms.

The rate is the model's estimate ``Σ −log2 p`` over every latent (Ballé et al., ICLR 2018),
per sample, so that continuous-rate training can weight each sample by its own λ
(variable-rate training as in Cui et al., "Asymmetric gained deep image compression",
CVPR 2021). For the hybrid codec the JPEG base's bytes are part of the bitstream, so they are
added to the rate: they carry no gradient but keep the logged bpp (and the loss) honest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from codec.errors import ParameterError

__all__ = ["LossTerms", "bits_per_sample", "RateDistortionLoss", "ms_ssim_per_sample", "VggFeatureLoss"]


class LossTerms(NamedTuple):
    """Batch means of the loss and its parts (``loss`` carries the gradient)."""

    loss: Tensor
    bpp: Tensor
    bpp_latent: Tensor
    mse: Tensor
    psnr: Tensor
    ms_ssim: Tensor | None


def _flatten(obj: Any):
    if isinstance(obj, Tensor):
        yield obj
    elif isinstance(obj, Mapping):
        for v in obj.values():
            yield from _flatten(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _flatten(v)


def bits_per_sample(likelihoods: Mapping[str, Any], batch: int) -> Tensor:
    """``(N,)`` estimated bits of each sample: Σ −log2(likelihood) over every latent tensor."""
    total = None
    for lik in _flatten(likelihoods):
        if lik.shape[0] != batch:
            raise ValueError(f"likelihood tensor of shape {tuple(lik.shape)} is not per-sample (N={batch})")
        bits = -torch.log2(lik.float()).reshape(batch, -1).sum(dim=1)
        total = bits if total is None else total + bits
    if total is None:
        raise ValueError("the model returned no likelihoods")
    return total


_MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


def _ssim_and_cs(x: Tensor, y: Tensor, win: Tensor) -> tuple[Tensor, Tensor]:
    """Per-image-and-channel mean SSIM and contrast-structure term, Gaussian window, valid filtering."""
    c = x.shape[1]
    k = win.shape[-1]
    wx = win.view(1, 1, 1, k).expand(c, 1, 1, k)
    wy = win.view(1, 1, k, 1).expand(c, 1, k, 1)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(F.conv2d(t, wx, groups=c), wy, groups=c)

    c1, c2 = 0.01 ** 2, 0.03 ** 2  # data range 1
    mx, my = blur(x), blur(y)
    sxx = blur(x * x) - mx * mx
    syy = blur(y * y) - my * my
    sxy = blur(x * y) - mx * my
    cs = (2 * sxy + c2) / (sxx + syy + c2)
    ssim = (2 * mx * my + c1) / (mx * mx + my * my + c1) * cs
    return ssim.flatten(2).mean(-1), cs.flatten(2).mean(-1)


def ms_ssim_per_sample(x_hat: Tensor, x: Tensor, win_size: int = 11, sigma: float = 1.5) -> Tensor:
    """``(N,)`` MS-SSIM (Wang et al., Asilomar 2003) of [0, 1] images, with as many scales as fit.

    Training crops are smaller than the 161 px the five standard scales need (and that
    pytorch-msssim insists on), so the coarsest scales are dropped — a scale needs at least
    ``win_size`` pixels — and the remaining weights are renormalised.
    """
    side = min(x.shape[-2:])
    if side < win_size:
        raise ParameterError(f"crops of {side} px are too small for MS-SSIM (window {win_size})")
    levels = 1
    while levels < 5 and side >> levels >= win_size:
        levels += 1
    coords = torch.arange(win_size, dtype=torch.float32, device=x.device) - (win_size - 1) / 2
    win = torch.exp(-coords ** 2 / (2 * sigma ** 2))
    win = win / win.sum()
    weights = torch.tensor(_MS_SSIM_WEIGHTS[:levels], device=x.device)
    weights = weights / weights.sum()
    a, b = x_hat.float().clamp(0, 1), x.float()
    factors = []
    for level in range(levels):
        ssim, cs = _ssim_and_cs(a, b, win)
        if level < levels - 1:
            factors.append(F.relu(cs))
            a, b = F.avg_pool2d(a, 2), F.avg_pool2d(b, 2)
    factors.append(F.relu(ssim))
    stacked = torch.stack(factors, dim=0)  # (levels, N, C)
    # Clamp before the fractional power: its gradient at exactly 0 is infinite.
    return torch.prod(stacked.clamp_min(1e-8) ** weights[:, None, None], dim=0).mean(-1)


class VggFeatureLoss(nn.Module):
    """Squared error of VGG16 features (relu1_2, relu2_2, relu3_3; Johnson et al., ECCV 2016).

    Only from a local torchvision VGG16 state dict: nothing is ever downloaded.
    """

    _CUTS = (4, 9, 16)

    def __init__(self, weights_file: str | Path):
        super().__init__()
        from torchvision.models import vgg16

        path = Path(weights_file)
        if not path.is_file():
            raise ParameterError(f"--vgg-weights {path}: no such file (a torchvision VGG16 state dict)")
        net = vgg16(weights=None)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            net.load_state_dict(state)
        except Exception as err:  # torch raises many types for a wrong file
            raise ParameterError(f"--vgg-weights {path} is not a VGG16 state dict: {err}") from None
        self.features = net.features[: self._CUTS[-1]].eval()
        for p in self.features.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1))

    def train(self, mode: bool = True):  # the feature extractor always stays in eval mode
        super().train(mode)
        self.features.eval()
        return self

    def forward(self, x_hat: Tensor, x: Tensor) -> Tensor:
        a = (x_hat - self.mean) / self.std
        b = (x - self.mean) / self.std
        out = x.new_zeros(x.shape[0])
        start = 0
        for cut in self._CUTS:
            for layer in self.features[start:cut]:
                a, b = layer(a), layer(b)
            out = out + (a - b).pow(2).flatten(1).mean(1)
            start = cut
        return out


class RateDistortionLoss(nn.Module):
    """Per-sample ``λ·(255²·MSE + w_ms·(1 − MS-SSIM) + w_vgg·VGG) + bpp``, averaged over the batch.

    ``rate_weight`` scales the bpp term (the trainer's rate warm-up ramps it from 0 to 1). With
    ``rate_weight=None`` (refinement training) the rate is fixed by the frozen model, so the loss
    is the distortion alone, unweighted by λ: weighting by λ would make the low-rate samples,
    where the post-filter matters most, count twenty times less.
    """

    def __init__(self, ms_ssim_weight: float = 0.0, vgg_weight: float = 0.0,
                 vgg_weights: str | Path | None = None):
        super().__init__()
        self.ms_ssim_weight = float(ms_ssim_weight)
        self.vgg_weight = float(vgg_weight)
        if self.vgg_weight > 0:
            if not vgg_weights:
                raise ParameterError("a VGG loss weight needs --vgg-weights FILE (nothing is downloaded)")
            self.vgg: VggFeatureLoss | None = VggFeatureLoss(vgg_weights)
        else:
            self.vgg = None

    def forward(self, x_hat: Tensor, x: Tensor, likelihoods: Mapping[str, Any], lam: Tensor,
                base_bits: Tensor | None = None, rate_weight: float | None = 1.0) -> LossTerms:
        n, _, h, w = x.shape
        latent_bpp = bits_per_sample(likelihoods, n) / (h * w)
        bpp = latent_bpp + (base_bits.to(latent_bpp) / (h * w) if base_bits is not None else 0.0)
        mse = (x_hat.float() - x.float()).pow(2).flatten(1).mean(1)
        distortion = 255.0 ** 2 * mse
        ssim = None
        if self.ms_ssim_weight > 0:
            ssim = ms_ssim_per_sample(x_hat, x)
            distortion = distortion + self.ms_ssim_weight * (1.0 - ssim)
        if self.vgg is not None:
            distortion = distortion + self.vgg_weight * self.vgg(x_hat.float(), x.float())
        if rate_weight is not None:
            loss = (lam.to(distortion) * distortion + rate_weight * bpp).mean()
        else:
            loss = distortion.mean()
        with torch.no_grad():
            psnr = (10.0 * torch.log10(1.0 / mse.clamp_min(1e-10))).mean()
        return LossTerms(loss, bpp.mean().detach(), latent_bpp.mean().detach(), mse.mean().detach(),
                         psnr, ssim.mean().detach() if ssim is not None else None)

