"""The trainer's view of a learned codec: its classes from the registry, starting weights,
sub-module selection for freezing, and a codec object built from a model in memory.

Training touches a model only through the contract in the codec packages (``Config``,
``Model(config)``, ``forward``, ``lambda_for_rate`` / ``rate_for_lambda``, ``aux_loss``,
``update``, state dicts, ``model.refine``); everything codec-specific is found through the
registry, so a new learned codec needs no change here.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
from pathlib import Path
from typing import Any, NamedTuple, Sequence

import torch
from torch import nn

from codec import registry
from codec import weights as W
from codec.errors import ParameterError, WeightsError
from codec.learned import LearnedCodec

from .checkpoint import checkpoint_weights, is_checkpoint, load_checkpoint, training_record

__all__ = [
    "ENTROPY_TABLE_SUFFIXES",
    "Source",
    "codec_class",
    "build_model",
    "load_source",
    "load_matching",
    "select_parameters",
    "coding_state",
    "codec_from_model",
]

log = logging.getLogger(__name__)

# Entropy-coder tables that ``update(force=True)`` rebuilds from the parameters (a Gaussian
# conditional's scale table too; an untrained model holds it empty).
ENTROPY_TABLE_SUFFIXES = ("_quantized_cdf", "_offset", "_cdf_length", "scale_table")


class Source(NamedTuple):
    """Weights to start from: a training checkpoint, a weights file or a manifest entry.

    ``history``: the training records of the runs that produced them, newest first.
    """

    codec: str
    config: dict
    state_dict: dict
    description: str
    history: list


def _entry_history(record: dict) -> list:
    training = dict(record.get("training") or {})
    older = training.pop("history", [])
    for k in ("total_steps", "total_minutes"):
        training.pop(k, None)
    return ([training] if training else []) + list(older)


def codec_class(name: str) -> type[LearnedCodec]:
    """The registered learned codec class ``name`` (with its ``config_class`` / ``model_class``)."""
    entry = registry.entry(name)
    if not entry.learned:
        learned = [e.name for e in registry.CODECS.values() if e.learned]
        raise ParameterError(f"codec {name!r} is not a learned codec; learned: {', '.join(learned) or 'none'}")
    return entry.load_class()


def build_model(codec_cls: type[LearnedCodec], config: Any, seed: int) -> nn.Module:
    """``Model(config)`` initialised from ``seed`` (the constructor is deterministic given it)."""
    torch.manual_seed(seed)
    return codec_cls.model_class(config)


def _manifest_entry(name: str, codec: str | None) -> W.WeightsEntry:
    if name == "default" and codec is not None:
        entry = W.default_entry(codec)
        if entry is None:
            raise WeightsError(f"no {codec!r} weights in the manifest to start from by default")
        return entry
    return W.find_entry(name, codec=codec)


def load_source(spec: str | Path, codec: str | None = None) -> Source:
    """Read starting weights from a ``.ckpt`` checkpoint, a ``.pt`` weights file, a manifest name
    or ``default``: the weights the codec ``codec`` loads by default (as ``--weights default``).

    Manifest entries are checked against their sha256 like the codecs check them.
    """
    spec_s = str(spec)
    path = Path(spec_s)
    if is_checkpoint(path):
        doc = load_checkpoint(path)
        history = [training_record(doc)] + list(doc.get("history") or [])
        averaged = " averaged weights" if doc.get("ema") else ""
        src = Source(doc["codec"], dict(doc["model_config"]), checkpoint_weights(doc),
                     f"checkpoint {path} (step {doc['step']}{averaged})", history)
    elif path.suffix == ".pt" or path.is_file():
        # A file the manifest lists is checked against its sha256 and keeps its history.
        entry = next((e for e in W.load_manifest() if e.path().resolve() == path.resolve()), None)
        doc = W.read_weights_file(path, expected_sha256=entry.sha256 if entry else None)
        src = Source(str(doc["codec"]), dict(doc["config"]), doc["state_dict"],
                     f"weights file {path}" + (f" ({entry.name!r}, id {entry.weights_id})" if entry else ""),
                     _entry_history(entry.record) if entry else [])
    else:
        entry = _manifest_entry(spec_s, codec)
        doc = W.read_weights_file(entry.path(), expected_sha256=entry.sha256, codec=entry.codec)
        src = Source(entry.codec, dict(doc["config"]), doc["state_dict"],
                     f"manifest weights {entry.name!r} (id {entry.weights_id})", _entry_history(entry.record))
    if codec is not None and src.codec != codec:
        raise WeightsError(f"{src.description} holds a {src.codec!r} model, not {codec!r}")
    return src


def load_matching(model: nn.Module, state: dict[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy every tensor of ``state`` whose name and shape match ``model``; report the rest.

    Used by transfer learning, where the pretrained model may lack the modules being added.
    Entropy-coder tables are skipped: ``update(force=True)`` rebuilds them.
    """
    own = model.state_dict()
    loaded, mismatched = [], []
    with torch.no_grad():
        for k, v in state.items():
            if k.endswith(ENTROPY_TABLE_SUFFIXES) or k not in own:
                continue
            if own[k].shape != v.shape:
                mismatched.append(k)
                continue
            own[k].copy_(v)
            loaded.append(k)
    missing = [k for k in own if k not in state and not k.endswith(ENTROPY_TABLE_SUFFIXES)]
    unexpected = [k for k in state if k not in own and not k.endswith(ENTROPY_TABLE_SUFFIXES)]
    if not loaded:
        raise WeightsError("no tensor of the pretrained weights fits this model")
    return {"loaded": loaded, "missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _matches(name: str, pattern: str) -> bool:
    """``pattern`` is a prefix of ``name`` starting at one of its dotted components.

    ``*`` in a pattern matches within one component (``bands.*.attn``).
    """
    parts = name.split(".")
    if "*" in pattern:
        depth = pattern.count(".") + 1
        return any(fnmatch.fnmatchcase(".".join(parts[i:i + depth]), pattern)
                   for i in range(len(parts) - depth + 1))
    return any(".".join(parts[i:]).startswith(pattern) for i in range(len(parts)))


def select_parameters(model: nn.Module, patterns: Sequence[str]) -> list[str]:
    """Names of the parameters under the sub-modules ``patterns`` name (by dotted-prefix match).

    Raises:
        ParameterError: a pattern matches nothing; the message lists the model's sub-modules.
    """
    names = [n for n, _ in model.named_parameters()]
    chosen: list[str] = []
    for pat in patterns:
        hits = [n for n in names if _matches(n, pat)]
        if not hits:
            modules = sorted({".".join(n.split(".")[:d]) for n in names for d in (1, 2)
                              if len(n.split(".")) > d and not n.split(".")[d - 1].isdigit()})
            raise ParameterError(
                f"--freeze-except {pat!r} matches no parameter of the {type(model).__name__} "
                f"(dotted-name prefixes; * matches one component, e.g. bands.*.attn); "
                f"sub-modules: {', '.join(modules)}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def coding_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """A CPU state dict with freshly built entropy-coder tables (the model itself is untouched)."""
    m = copy.deepcopy(model).to("cpu").eval()
    m.update(force=True)
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def codec_from_model(codec_cls: type[LearnedCodec], model: nn.Module, config: Any,
                     device: Any = "cpu", label: str = "training") -> LearnedCodec:
    """A codec object coding with ``model``'s current weights, without touching the disk.

    The codec is built as an untrained model of ``config`` and its model is then replaced by a
    fresh one loaded with the weights, exactly as :class:`LearnedCodec` loads weights files
    (load, eval, ``update(force=True)``), so validation measures what the shipped codec does.
    """
    codec = codec_cls(weights="random", config=config, device=device)
    with torch.random.fork_rng(devices=[]):  # validation must not shift the training's RNG
        fresh = codec_cls.model_class(config)
    fresh.load_state_dict(coding_state(model))
    fresh.eval().to(codec.device)
    fresh.update(force=True)
    for p in fresh.parameters():
        p.requires_grad_(False)
    codec.model = fresh
    codec.weights_name = label
    return codec

