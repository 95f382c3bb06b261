"""Command line: ``oodbench <command>``, a thin dispatcher; each command (``commands/``) owns its parser."""
from __future__ import annotations

import argparse
import sys
from typing import Sequence

from . import __version__
from .errors import OodbenchError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodbench", description="OoD detection benchmark for semantic segmentation")
    p.add_argument("--version", action="version", version=f"oodbench {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    from .commands import register_all

    register_all(sub)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except OodbenchError as exc:
        print(f"oodbench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("oodbench: interrupted; no record was written", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
