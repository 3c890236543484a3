"""Shipped weights: ``weights/manifest.json`` and the ``.pt`` files it lists.

Each manifest entry gives a weights file an explicit id (written into every bitstream coded
with it), the codec and model config it belongs to, how it was trained, its measured results
and its sha256. A file whose hash does not match its entry is refused.

Weights files hold only tensors and plain data (loaded with ``weights_only=True``)::

    {"format": "lic-studio-weights/1", "codec": str, "config": dict, "state_dict": {...}}
"""

from __future__ import annotations

import hashlib
import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import WeightsError

__all__ = [
    "MANIFEST_NAME",
    "WEIGHTS_FORMAT",
    "RANDOM_INIT_BIT",
    "WeightsEntry",
    "weights_dir",
    "read_manifest_doc",
    "load_manifest",
    "find_entry",
    "entry_by_id",
    "retired_by_id",
    "default_entry",
    "random_init_id",
    "sha256_file",
    "read_weights_file",
    "is_weights_name",
]

WEIGHTS_FORMAT = "lic-studio-weights/1"
MANIFEST_NAME = "manifest.json"
# Ids with this bit set mean "deterministic random initialisation of this config" (tests,
# untrained models); shipped weights have small explicit ids below it.
RANDOM_INIT_BIT = 0x8000_0000
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def is_weights_name(name: str) -> bool:
    """Whether ``name`` may name weights: it becomes a file name, so letters, digits, '.', '_'
    and '-' only, and no leading dot."""
    return bool(name) and set(name) <= _NAME_CHARS and not name.startswith(".")


def weights_dir() -> Path:
    """The folder holding ``manifest.json``: ``$LIC_WEIGHTS_DIR`` or the repo's ``weights/``."""
    env = os.environ.get("LIC_WEIGHTS_DIR")
    return Path(env) if env else Path(__file__).resolve().parent.parent / "weights"


@dataclass(frozen=True)
class WeightsEntry:
    name: str
    codec: str
    weights_id: int
    file: str
    sha256: str
    default: bool
    config: dict
    record: dict  # the whole manifest entry (training budget, results, ...)

    def path(self, root: Path | None = None) -> Path:
        return (root or weights_dir()) / self.file


def read_manifest_doc(root: Path | None = None) -> dict:
    """``manifest.json`` as parsed JSON with a ``weights`` list (empty when there is no file)."""
    path = (root or weights_dir()) / MANIFEST_NAME
    if not path.exists():
        return {"weights": []}
    try:
        doc = json.loads(path.read_text())
    except ValueError as err:
        raise WeightsError(f"{path}: malformed manifest ({err})") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("weights", []), list):
        raise WeightsError(f"{path}: malformed manifest (no 'weights' list)")
    doc.setdefault("weights", [])
    return doc


def load_manifest(root: Path | None = None) -> list[WeightsEntry]:
    path = (root or weights_dir()) / MANIFEST_NAME
    doc = read_manifest_doc(root)
    try:
        entries = [
            WeightsEntry(
                name=e["name"], codec=e["codec"], weights_id=int(e["weights_id"]), file=e["file"],
                sha256=e["sha256"], default=bool(e.get("default", False)),
                config=dict(e.get("config", {})), record=e)
            for e in doc["weights"]
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{path}: malformed manifest ({err})") from None
    ids = [e.weights_id for e in entries]
    if len(set(ids)) != len(ids):
        raise WeightsError(f"{path}: duplicate weights ids {sorted(ids)}")
    for e in entries:
        if not 0 < e.weights_id < RANDOM_INIT_BIT:
            raise WeightsError(f"{path}: weights id {e.weights_id} of {e.name!r} outside 1..{RANDOM_INIT_BIT - 1}")
    return entries


def find_entry(name: str, codec: str | None = None, root: Path | None = None) -> WeightsEntry:
    entries = load_manifest(root)
    for e in entries:
        if e.name == name:
            if codec is not None and e.codec != codec:
                raise WeightsError(f"weights {name!r} are for codec {e.codec!r}, not {codec!r}")
            return e
    choices = [e.name for e in entries if codec is None or e.codec == codec]
    raise WeightsError(f"no weights named {name!r} in the manifest; available: {', '.join(choices) or 'none'}")


def entry_by_id(weights_id: int, root: Path | None = None) -> WeightsEntry | None:
    for e in load_manifest(root):
        if e.weights_id == weights_id:
            return e
    return None


def retired_by_id(weights_id: int, root: Path | None = None) -> dict | None:
    """The manifest's record of weights ``weights_id`` if they were retired (their file removed
    to keep the install small; the id is never given to other weights), else None."""
    retired = read_manifest_doc(root).get("retired", [])
    try:
        return next((r for r in retired if int(r["weights_id"]) == weights_id), None)
    except (ValueError, KeyError, TypeError) as err:
        raise WeightsError(f"{(root or weights_dir()) / MANIFEST_NAME}: malformed manifest ({err})") from None


def default_entry(codec: str, root: Path | None = None) -> WeightsEntry | None:
    entries = [e for e in load_manifest(root) if e.codec == codec]
    for e in entries:
        if e.default:
            return e
    return entries[-1] if entries else None


def random_init_id(codec: str, config: dict) -> int:
    """The id of a deterministic random initialisation: a hash of codec name and config."""
    key = json.dumps({"codec": codec, "config": config}, sort_keys=True).encode()
    return RANDOM_INIT_BIT | (zlib.crc32(key) & 0x7FFF_FFFF)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_weights_file(path: Path, expected_sha256: str | None = None, codec: str | None = None) -> dict[str, Any]:
    """Load a weights file safely; check its hash, format and codec."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} not found")
    if expected_sha256 is not None:
        actual = sha256_file(path)
        if actual != expected_sha256:
            raise WeightsError(
                f"weights file {path} does not match its manifest entry "
                f"(sha256 {actual[:12]}…, expected {expected_sha256[:12]}…): refusing to load it")
    try:
        doc = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise WeightsError(f"{path} is not a loadable weights file ({err.__class__.__name__}: {err})") from None
    if not isinstance(doc, dict) or doc.get("format") != WEIGHTS_FORMAT:
        raise WeightsError(f"{path} is not a lic-studio weights file (format {WEIGHTS_FORMAT} expected)")
    if codec is not None and doc.get("codec") != codec:
        raise WeightsError(f"{path} holds weights for codec {doc.get('codec')!r}, not {codec!r}")
    if not isinstance(doc.get("config"), dict) or not isinstance(doc.get("state_dict"), dict):
        raise WeightsError(f"{path} lacks a config or state_dict")
    return doc
