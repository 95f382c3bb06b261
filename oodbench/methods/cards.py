"""Method cards: the TOML files in the repository's ``methods/`` folder naming the network (a card in
``methods/networks/``), score and stages of a published configuration, so a run on real data reproduces it."""
from __future__ import annotations

from typing import Any

from ..errors import CheckpointError, OodbenchError
from ..files import read_toml
from ..models.network_cards import NetworkCard, load_network_card
from ..paths import card_folder

CARDS_DIR = card_folder("methods")


def list_method_cards() -> list[str]:
    """Names of the cards present; empty when the cards folder is missing (a broken install)."""
    return sorted(p.stem for p in CARDS_DIR.glob("*.toml")) if CARDS_DIR.is_dir() else []


def load_method_card(name: str) -> dict[str, Any]:
    path = CARDS_DIR / f"{name}.toml"
    if not path.is_file():
        raise OodbenchError(f"no method card {path}; cards present: {', '.join(list_method_cards()) or 'none'} "
                            f"(bundled with the package from the repository's methods/ folder)")
    card = read_toml(path)
    card["path"] = str(path)
    return card


def card_network(card: dict[str, Any]) -> NetworkCard:
    """The network a method card runs on real road scenes (its ``network`` key names a card in
    ``methods/networks/``)."""
    name = card.get("network")
    if not isinstance(name, str) or not name:
        raise CheckpointError(f"{card.get('path', card.get('name'))}: the card names no network; add "
                              f"network = \"<card in methods/networks/>\" (`oodbench list networks`)")
    return load_network_card(name)
