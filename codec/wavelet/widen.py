"""Growing a trained wavelet model's latent: M channels → more, keeping what it has learned.

The number of latent channels M bounds the quality any rate can reach: y has M values per
16 x 16 x 3 = 768 pixel values, and a trained model uses every one of them, at low rates too.
Training a wider model from scratch would throw away hundreds of CPU hours, so the narrow
model's weights are carried over into a wider one that starts out coding almost as the narrow
one did (Net2Net-style widening, Chen et al., ICLR 2016):

* each old channel keeps its weights under a new index; channel groups of the progressive
  coding keep their old members in the same order (the new channels are appended to each
  group), so every old symbol is coded in the same step from the same inputs;
* every network that *reads* the latent (h_a, the step networks, the LL context encoder)
  gets zero weights on the new channels, so nothing the old channels' coding sees changes;
* the new channels' analysis rows are the fresh initialisation scaled by ``init_scale``: small
  enough that their symbols round to zero at low rates, large enough that at high rates some
  do not (9 % at rate 1 for the trained M=96 weights);
* their synthesis rows are the fresh initialisation scaled by ``synthesis_scale``. Zero rows
  would keep the pictures exactly, but they trap the channel: its analysis rows then get no
  gradient from the distortion, only the rate's pull towards zero, and a channel whose symbols
  are all zero gives its synthesis rows no gradient either (tried: the new channels carried
  0.005 bpp of 1.1 after 550 CPU steps). At half the fresh scale the pictures change by under
  0.02 dB at rate 1 and the distortion reaches the new analysis rows from the first step;
* their entropy parameters start at μ = 0 and σ = 0.1, about the spread of their latent (zero
  weights, constant biases), so a symbol costs about what it carries: the file grows by the
  new channels' bits at high rates (+17 % at rate 1 for those weights) and hardly at all at
  low ones; and their LL cross-attention output is zero.

The wider model is then trained on, and the new channels are meant to come into use where they
pay. On this project's CPU they did not, in either start: after about 600 steps of two ranks
every new channel was under 0.1 % of the bits at every rate (``lic-train eval CKPT --channels``).
The rate pulls a new channel's latent to zero faster than the synthesis learns to use it.
A warm-up without the new channels' rate (``lic-train --widen-rate-warmup-steps``, which the
trainer applies through :func:`new_channels` and ``Model.scale_channel_rates``) did not change
that at the length tried: on an H100, 200 steps with their rate off and 200 ramping it in
(16 x 256² crops, lr 2e-4), then 211 more, left the 96 new channels with 0.07 % of the bits
at rate 0 and 1.4 % at rate 1 (kodim05). Longer warm-ups, or a larger learning rate for the
new channels alone, are still untried.
"""

from __future__ import annotations

import math

import torch

from .config import Config, steps_layout

__all__ = ["channel_map", "new_channels", "widen_state"]

# log σ of the new channels' entropy parameters before training (see the module docstring)
_NEW_LOG_SIGMA = math.log(0.1)
# Entropy-coder tables: sized by what ``update`` last built (empty in a fresh model), rebuilt
# from the parameters, which do not depend on M.
_TABLES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


def _groups(config: Config) -> int:
    return max(steps_layout(config.ll_steps)[1], steps_layout(config.hf_steps)[1])


def channel_map(old: Config, new: Config) -> torch.Tensor:
    """New index of each old latent channel: group ``j``'s old channels open new group ``j``.

    Raises:
        ValueError: the new latent is not wider, or the configs differ in anything but M.
    """
    rest_old = {k: v for k, v in vars(old).items() if k != "M"}
    rest_new = {k: v for k, v in vars(new).items() if k != "M"}
    if rest_old != rest_new:
        changed = sorted(k for k in rest_old if rest_old[k] != rest_new.get(k))
        raise ValueError(f"only M can grow; the configs also differ in {', '.join(changed)}")
    if new.M <= old.M:
        raise ValueError(f"the new latent must be wider: M={new.M} is not more than {old.M}")
    g = _groups(old)
    if old.M % g or new.M % g:
        raise ValueError(f"M must stay divisible by the {g} channel groups (M={old.M} → {new.M})")
    b_old, b_new = old.M // g, new.M // g
    i = torch.arange(old.M)
    return (i // b_old) * b_new + i % b_old


def new_channels(old: Config, new: Config) -> torch.Tensor:
    """Boolean mask over the wide model's M channels: true where widening added the channel."""
    mask = torch.ones(new.M, dtype=torch.bool)
    mask[channel_map(old, new)] = False
    return mask


def widen_state(old_state: dict[str, torch.Tensor], old: Config, fresh: dict[str, torch.Tensor],
                new: Config, init_scale: float = 0.3,
                synthesis_scale: float = 0.5) -> dict[str, torch.Tensor]:
    """The wide model's state dict from the narrow model's ``old_state``.

    ``fresh`` is a freshly initialised wide model's state dict (the new channels' random
    starting weights); see the module docstring for what each new weight starts at.
    """
    idx = channel_map(old, new)
    M0, M1 = old.M, new.M
    added = new_channels(old, new)
    both = torch.cat((idx, idx + M1))  # (μ, log σ) halves of a 2M-channel output
    C = old.state_channels
    # g_a and g_s are Sequentials: y leaves g_a's last layer and ŷ enters g_s's first
    last_analysis = max(int(n.split(".")[1]) for n in fresh if n.startswith("g_a."))
    analysis_out = (f"g_a.{last_analysis}.weight", f"g_a.{last_analysis}.bias")
    synthesis_in = "g_s.0.weight"
    out: dict[str, torch.Tensor] = {}
    for name, target in fresh.items():
        src = old_state.get(name)
        if src is None:
            raise KeyError(f"the narrow weights lack {name}")
        src = src.to(target.dtype)  # shipped weights are fp16
        if src.shape == target.shape or name.endswith(_TABLES):
            out[name] = src.clone()
            continue
        t = target.clone()
        parts = name.split(".")
        if name in analysis_out:                             # analysis output: new rows small
            t[added] *= init_scale
            t.index_copy_(0, idx, src)
        elif name == synthesis_in:                           # synthesis input (ConvTranspose: in, out)
            t[added] *= synthesis_scale
            t.index_copy_(0, idx, src)
        elif name in ("h_a.0.weight", "ll_context.inp.weight"):  # readers of ŷ: new inputs unseen
            t.zero_()
            t.index_copy_(1, idx, src)
        elif name == "quantizer.log_scale":
            t[:] = src.mean(dim=1, keepdim=True)
            t.index_copy_(1, idx, src)
        elif parts[0] == "bands" and parts[2] == "nets" and parts[-1] == "weight":
            # input channels: [state (C) | visible ŷ (M) | maps]; only the ŷ part grows
            t.zero_()
            t[:, :C] = src[:, :C]
            t.index_copy_(1, idx + C, src[:, C:C + M0])
            t[:, C + M1:] = src[:, C + M0:]
        elif parts[0] == "bands" and parts[2] in ("heads", "attn"):
            # (μ | log σ) outputs: the new channels' are constants until trained
            t.zero_()
            if parts[2] == "heads" and parts[-1] == "bias":
                t[M1:][added] = _NEW_LOG_SIGMA
            t.index_copy_(0, both, src)
        elif parts[0] == "gate":                             # α per channel: any start is fine
            t.index_copy_(0, idx, src)
        else:
            raise KeyError(f"no rule to widen {name} {tuple(src.shape)} → {tuple(t.shape)}")
        out[name] = t
    return out
