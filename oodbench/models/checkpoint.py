"""Safe checkpoint I/O: ``weights_only`` loading, strict key matching with a readable diff, sha256."""
from __future__ import annotations

import pickle
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn

from ..errors import CheckpointError
from ..files import atomic_write
from .hashing import sha256_file, sha256_of

# Harmless non-tensor types found in published checkpoints (numpy scalars in training metadata).
try:
    from numpy._core.multiarray import scalar as _np_scalar
except ImportError:  # numpy < 2
    from numpy.core.multiarray import scalar as _np_scalar
SAFE_GLOBALS = [_np_scalar, np.dtype] + [type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32", "bool")]


def save_checkpoint(state_dict: Mapping[str, torch.Tensor], path: str | Path, meta: dict[str, Any] | None = None) -> str:
    """Write ``{"state_dict": ..., "meta": ...}`` atomically (temp file + rename); return its sha256."""
    path = atomic_write(path, lambda f: torch.save({"state_dict": dict(state_dict), "meta": meta or {}}, f))
    return sha256_file(path)


def read_state_dict(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Load a checkpoint without unpickling code: a plain state dict, or a dict holding ``state_dict``
    (the published meta-ood structure, keys maybe prefixed ``module.``), or a ``.safetensors`` file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; download it or pass --checkpoint PATH")
    if path.suffix == ".safetensors":
        try:
            from safetensors.torch import load_file
        except ImportError as exc:
            raise CheckpointError(f"{path}: reading .safetensors needs `pip install safetensors`") from exc
        return _strip_prefix(load_file(str(path))), {}
    try:
        with torch.serialization.safe_globals(SAFE_GLOBALS):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refused(path, exc, "re-save the file as a plain state dict") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: corrupt or truncated checkpoint ({exc}); delete it and download it again") from exc
    meta: dict[str, Any] = {}
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        meta = {k: v for k, v in obj.items() if k != "state_dict" and not isinstance(v, dict | torch.Tensor)}
        meta.update(obj.get("meta") or {})
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: not a state dict (found {type(obj).__name__} with non-tensor values)")
    return _strip_prefix(obj), meta


def refused(path: str | Path, exc: pickle.UnpicklingError, fix: str) -> CheckpointError:
    """The error for a file ``weights_only`` loading refused, naming the global it would have had to unpickle."""
    found = next((ln.strip() for ln in str(exc).splitlines() if "Unsupported global" in ln), "")
    found = found.split(" was not")[0].replace("WeightsUnpickler error: ", "") or str(exc).splitlines()[0]
    return CheckpointError(f"{path}: refused to load: it holds objects other than tensors and plain containers "
                           f"({found}). oodbench never unpickles code; {fix}")


def _strip_prefix(sd: dict[str, torch.Tensor], prefix: str = "module.") -> dict[str, torch.Tensor]:
    if sd and all(k.startswith(prefix) for k in sd):
        return {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def load_into(model: nn.Module, path: str | Path, cached_hash: bool = False) -> dict[str, Any]:
    """Strictly load a checkpoint into ``model``; a mismatch lists missing, unexpected and reshaped keys.
    ``cached_hash``: take the sha256 from the sidecar of oodbench's own download cache (a multi-GB file is hashed
    once); a user's file is hashed on every load and gets no sidecar."""
    sd, meta = read_state_dict(path)
    own = model.state_dict()
    missing = sorted(set(own) - set(sd))
    unexpected = sorted(set(sd) - set(own))
    reshaped = sorted(k for k in set(own) & set(sd) if own[k].shape != sd[k].shape)
    if missing or unexpected or reshaped:
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {title} keys: {', '.join(keys[:20])}{' ...' if len(keys) > 20 else ''}")
        if reshaped:
            parts.append("shape mismatch: " + ", ".join(f"{k} {tuple(sd[k].shape)} vs model {tuple(own[k].shape)}" for k in reshaped[:20]))
        raise CheckpointError(f"{path}: checkpoint does not match {type(model).__name__}: " + "; ".join(parts)
                              + ". Check that the checkpoint belongs to this model and class count")
    model.load_state_dict(sd, strict=True)
    return {**meta, "sha256": sha256_of(path) if cached_hash else sha256_file(path)}
