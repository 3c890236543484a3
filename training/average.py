"""An exponential moving average of a model's weights (``lic-train --ema DECAY``).

On this project's CPU budget a run trains with batches of 4 to 8 crops: at a constant learning
rate its validation stays flat for thousands of steps and gains 0.2-0.4 dB only once the rate
is cut tenfold (results/learning/wavelet-s9-val.csv), the mark of weights that jitter around a
better point. An average removes that jitter while the run keeps learning at its full rate, so
any checkpoint exports smoothed weights.

The decay ramps up as ``min(decay, (1 + n) / (10 + n))`` over the first updates ``n``, so an
average started late (on ``--resume``) follows the weights closely at first instead of
holding on to where it began.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
from torch import nn

__all__ = ["WeightAverage"]


class WeightAverage:
    """The moving average of every floating-point tensor of ``model.state_dict()``."""

    def __init__(self, model: nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.updates = 0
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}

    def current_decay(self) -> float:
        n = self.updates
        return min(self.decay, (1 + n) / (10 + n))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the model's current weights by one step."""
        weight = 1.0 - self.current_decay()
        current = model.state_dict()
        for k, avg in self.state.items():
            avg.lerp_(current[k].detach(), weight)
        self.updates += 1

    @contextlib.contextmanager
    def applied(self, model: nn.Module) -> Iterator[nn.Module]:
        """Within the block ``model`` holds the averaged weights; its own come back after."""
        # Whole state dicts: CompressAI's load_state_dict wants its entropy tables in every one.
        own = {k: v.detach().clone() for k, v in model.state_dict().items()}
        model.load_state_dict({**own, **self.state})
        try:
            yield model
        finally:
            model.load_state_dict(own)

    def state_dict(self) -> dict[str, Any]:
        return {"decay": self.decay, "updates": self.updates,
                "state": {k: v.detach().to("cpu").clone() for k, v in self.state.items()}}

    def load_state_dict(self, doc: dict[str, Any]) -> None:
        """Continue a saved average (its count of updates; the decay stays this run's)."""
        missing = self.state.keys() - doc["state"].keys()
        if missing:
            raise KeyError(f"the saved weight average lacks {len(missing)} tensors, e.g. {sorted(missing)[0]}")
        for k, avg in self.state.items():
            avg.copy_(doc["state"][k])
        self.updates = int(doc["updates"])
