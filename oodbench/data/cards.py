"""Dataset cards: the TOML files in the repository's ``datasets/`` folder that describe layout, splits,
counts, label mapping, url and licence of each dataset."""
from __future__ import annotations

from typing import Any

from ..errors import DatasetError
from ..files import read_toml
from ..paths import card_folder

CARDS_DIR = card_folder("datasets")


def list_cards() -> list[str]:
    """Names of the cards present; empty when the cards folder is missing (a broken install)."""
    if not CARDS_DIR.is_dir():
        return []
    return sorted(p.stem for p in CARDS_DIR.glob("*.toml"))


def load_card(name: str) -> dict[str, Any]:
    path = CARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise DatasetError(f"no dataset card {path}; cards present: {', '.join(list_cards()) or 'none'}")
    return read_toml(path, DatasetError)


def card_of(name: str) -> dict[str, Any] | None:
    """The card describing registered dataset ``name``: its own file, or a card listing it in ``registered_as``
    (e.g. ``synthetic_coco`` in ``synthetic.toml``); None when no card does."""
    cards = list_cards()
    if name in cards:
        return load_card(name)
    for stem in cards:
        card = load_card(stem)
        aliases = card.get("registered_as", [])
        if name in ([aliases] if isinstance(aliases, str) else aliases):
            return card
    return None


def download_hint(name: str, fallback_url: str | None = None) -> str:
    """One sentence telling the user where to get the data, from the card's url when it exists."""
    url = fallback_url
    if name in list_cards():
        card = load_card(name)
        url = card.get("url", url)
    where = f" from {url}" if url else ""
    return f"download it{where} (see datasets/{name}.toml)"
