"""`oodbench data check`: read every sample of a dataset copy and report every problem."""
from __future__ import annotations

import argparse

from .options import parse_options


def cmd_data_check(args: argparse.Namespace) -> int:
    from ..data.check import check_dataset

    report = check_dataset(args.name, root=args.data_root, splits=args.split, options=parse_options(args.option),
                           deep=args.deep, progress=not args.quiet)
    print(report.render())
    return 0 if report.ok else 1


def register(sub) -> None:
    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="read every sample of a dataset copy and report every problem (exit 1 if any)")
    c.add_argument("name", help="registered dataset")
    c.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own location)")
    c.add_argument("--split", action="append", default=None, help="split to check (repeatable; default: the card's)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option, e.g. expected=60")
    c.add_argument("--deep", action="store_true", help="print content fingerprints (reads every byte)")
    c.add_argument("--quiet", action="store_true", help="no progress bars")
    c.set_defaults(func=cmd_data_check)
