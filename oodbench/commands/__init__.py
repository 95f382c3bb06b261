"""The subcommands, one module each with its ``register(sub)`` (parser and handler); shared option types live in
``options``. No command imports the command line."""
from __future__ import annotations


def register_all(sub) -> None:
    """Add every command's subparser to ``sub`` (an argparse subparsers object), in the help's order."""
    from . import compare, data, download, evaluate, export, leaderboard, list, paper, run, show, train, validate_plugin

    for module in (run, evaluate, export, data, list, train, leaderboard, validate_plugin, show, compare, paper,
                   download):
        module.register(sub)
