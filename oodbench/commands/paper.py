"""`oodbench paper`: the published numbers of leaderboard/paper/*.toml next to ours from the records, in the
source's convention, with deltas; "no record" where we have none."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

DEFAULT_RECORDS = "leaderboard/records"


def cmd_paper(args: argparse.Namespace) -> int:
    from ..leaderboard.compare import load_records
    from ..leaderboard.paper import PAPER_DIR, load_paper, markdown, paper_rows

    entries = load_paper(args.paper_dir or PAPER_DIR)
    sources = [args.records] if args.records else ([DEFAULT_RECORDS] if Path(DEFAULT_RECORDS).is_dir() else [])
    records = load_records(sources) if sources else {}
    rows = paper_rows(entries, records)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(markdown(rows))
    return 0


def register(sub) -> None:
    """Add ``paper`` to an argparse subparsers object."""
    p = sub.add_parser("paper", help="published numbers (leaderboard/paper/*.toml) next to ours, with deltas")
    p.add_argument("--records", default=None, metavar="DIR",
                   help=f"folder of records (default {DEFAULT_RECORDS} when it exists)")
    p.add_argument("--paper-dir", default=None, metavar="DIR",
                   help="folder of the TOML files (default: the bundled leaderboard/paper cards)")
    p.add_argument("--json", action="store_true", help="rows as JSON instead of a Markdown table")
    p.set_defaults(func=cmd_paper)
