"""Method cards: the TOML files in the repository's ``methods/`` folder naming the model, checkpoint URL and
sha256, score and stages of a published configuration, so a run on real data reproduces it."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import CheckpointError, OodbenchError

CARDS_DIR = Path(__file__).resolve().parents[2] / "methods"


@dataclass(frozen=True)
class CardModel:
    """The network a card runs on real road scenes, and where its weights come from."""

    name: str
    num_classes: int
    checkpoint_file: str
    checkpoint_url: str | None
    checkpoint_sha256: str | None
    source: str


def list_method_cards() -> list[str]:
    """Names of the cards present; empty when the package runs without its repository."""
    return sorted(p.stem for p in CARDS_DIR.glob("*.toml")) if CARDS_DIR.is_dir() else []


def load_method_card(name: str) -> dict[str, Any]:
    path = CARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise OodbenchError(f"no method card {path}; cards present: {', '.join(list_method_cards()) or 'none'}. "
                            f"Real-data runs of model-based methods need the repository's methods/ folder")
    try:
        with path.open("rb") as fh:
            card = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise OodbenchError(f"{path}: invalid TOML ({exc})") from exc
    card["path"] = str(path)
    return card


def card_model(card: dict[str, Any]) -> CardModel:
    """The ``[model]`` table of a card; empty url or sha256 mean unpublished."""
    try:
        m = card["model"]
        return CardModel(name=m["name"], num_classes=int(m.get("num_classes", 19)),
                         checkpoint_file=m["checkpoint_file"], checkpoint_url=m.get("checkpoint_url") or None,
                         checkpoint_sha256=m.get("checkpoint_sha256") or None, source=m.get("source", ""))
    except KeyError as exc:
        raise CheckpointError(f"{card.get('path', card.get('name'))}: the [model] table lacks {exc}; it needs name, "
                              f"checkpoint_file and (optionally) checkpoint_url, checkpoint_sha256") from None
