"""Subcommands beyond run/evaluate/data: each module's ``register(sub)`` adds its parser to the CLI; shared option
types live in ``options``. No command imports the command line."""
from __future__ import annotations


def register_all(sub) -> None:
    """Add every command module's subparser to ``sub`` (an argparse subparsers object), in the help's order."""
    from . import compare, download, leaderboard, list, paper, show, train, validate_plugin

    for module in (list, train, leaderboard, validate_plugin, show, compare, paper, download):
        module.register(sub)
