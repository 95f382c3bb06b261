"""`oodbench list`: registered methods, datasets, models, scores and conventions, and the network cards, with a
glob filter; datasets and networks as tables of their cards."""
from __future__ import annotations

import argparse
import fnmatch
import json

from tabulate import tabulate

from ..errors import OodbenchError


def _split_counts(card: dict) -> str:
    parts = []
    for split, table in card.get("splits", {}).items():
        count = table.get("count") if isinstance(table, dict) else None
        parts.append(f"{split} {count}" if count is not None else split)
    return ", ".join(parts)


def datasets_table(names: list[str]) -> str:
    """One row per registered dataset with its card's title; split counts only where the card is its own (a card
    shared by several registrations, such as ``synthetic.toml``, names it)."""
    from ..data.cards import card_of

    rows = []
    for name in names:
        try:
            card = card_of(name) or {}
        except OodbenchError:
            card = {}
        own = card.get("name", name) == name
        title = card.get("title", "(no card)") + ("" if own or not card else f" (card {card['name']})")
        rows.append([name, title, _split_counts(card) if own else ""])
    return tabulate(rows, headers=["dataset", "title", "splits (images)"], tablefmt="github")


def networks_table(names: list[str]) -> str:
    from ..models.network_cards import load_network_card

    rows = []
    for name in names:
        card = load_network_card(name)
        rows.append([name, card.title, card.model + "".join(f" {k}={v}" for k, v in card.options.items()),
                     "x".join(map(str, card.protocol.input_size)) if card.protocol.input_size else "full",
                     "yes" if card.checkpoint_sha256 else "no"])
    return tabulate(rows, headers=["network", "title", "model", "input", "sha256 published"], tablefmt="github")


class _Cards:
    """Card names listed like a registry's (glob filter)."""

    def __init__(self, names):
        self.names = names

    def list(self, pattern: str = "*") -> list[str]:
        return sorted(n for n in self.names() if fnmatch.fnmatchcase(n, pattern))


def cmd_list(args: argparse.Namespace) -> int:
    from ..data import DATASETS
    from ..methods import METHODS
    from ..metrics.conventions import CONVENTIONS
    from ..models import MODELS
    from ..models.network_cards import list_network_cards
    from ..scores import SCORES

    registries = {"methods": METHODS, "datasets": DATASETS, "models": MODELS, "networks": _Cards(list_network_cards),
                  "scores": SCORES, "conventions": CONVENTIONS}
    kinds = [args.kind] if args.kind else list(registries)
    result = {kind: registries[kind].list(args.pattern) for kind in kinds}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for kind, names in result.items():
            if kind in ("datasets", "networks") and names:
                table = datasets_table(names) if kind == "datasets" else networks_table(names)
                print(f"{kind}:\n{table}")
            else:
                print(f"{kind}: {', '.join(names) if names else '(none match)'}")
    return 0


def register(sub) -> None:
    """Add ``list`` to an argparse subparsers object."""
    ls = sub.add_parser("list", help="list registered methods, datasets, models, network cards, scores, conventions")
    ls.add_argument("kind", nargs="?", choices=["methods", "datasets", "models", "networks", "scores", "conventions"])
    ls.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'ent*'")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)
