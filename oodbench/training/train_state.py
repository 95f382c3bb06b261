"""Resumable training state: RNG states as tensors and plain values, atomic writes, ``weights_only`` loading,
and the JSON-lines training log."""
from __future__ import annotations

import json
import pickle
import random
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import CheckpointError
from ..files import atomic_write
from ..models.checkpoint import refused


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % 2 ** 32)
    random.seed(seed)


def capture_rng() -> dict[str, Any]:
    """torch (CPU, CUDA), numpy-global and python RNG states as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, py_state, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(gauss)},
        "python": {"version": int(version), "state": torch.tensor(py_state, dtype=torch.int64),
                   "gauss_next": py_gauss},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    keys = n["keys"].numpy().astype(np.uint32)
    np.random.set_state((n["kind"], keys, n["pos"], n["has_gauss"], n["cached_gaussian"]))
    p = state["python"]
    random.setstate((p["version"], tuple(int(v) for v in p["state"].tolist()), p["gauss_next"]))


def atomic_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temp file beside ``path``, then rename, so a crash never leaves a half file."""
    atomic_write(path, lambda f: torch.save(obj, f))


def load_state(path: Path) -> dict[str, Any]:
    """A training state written by ``atomic_save``, loaded with ``weights_only=True`` on the CPU."""
    if not path.is_file():
        raise CheckpointError(f"{path}: no training state to resume from; run without --resume first, "
                              f"or point --out at the folder of the run to continue")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise refused(path, exc, "delete it and start over") from exc
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as exc:
        raise CheckpointError(f"{path}: unreadable training state ({exc}); delete it and start over") from exc
    if not isinstance(state, dict) or "model" not in state or "epoch" not in state:
        raise CheckpointError(f"{path}: not an oodbench training state (no model/epoch entries)")
    return state


class JsonlLog:
    """Append-only JSON-lines log; only the process that ``enabled`` it writes."""

    def __init__(self, path: Path, enabled: bool = True):
        self.path, self.enabled = path, enabled

    def write(self, event: str, **fields: Any) -> dict[str, Any]:
        record = {"event": event, **fields, "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if self.enabled:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a") as fh:
                fh.write(json.dumps(record) + "\n")
        return record

    def records(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def keep_until(self, step: int) -> None:
        """Drop records past ``step`` (written after the checkpoint a resumed run restarts from)."""
        if not self.enabled or not self.path.is_file():
            return
        kept = [r for r in self.records() if r.get("step", 0) <= step and r["event"] != "end"]
        atomic_write(self.path, "".join(json.dumps(r) + "\n" for r in kept), sync=False)
