"""Subcommands beyond run/evaluate/list/data: each module's ``register(sub)`` adds its parser to the CLI."""
from __future__ import annotations

import importlib

COMMANDS = ("list", "train", "leaderboard", "validate_plugin", "show", "compare", "paper", "download")


def register_all(sub) -> None:
    """Add every command module's subparser to ``sub`` (an argparse subparsers object)."""
    for name in COMMANDS:
        importlib.import_module(f"{__name__}.{name}").register(sub)
