"""`oodbench leaderboard`: rebuild the rendered tables and the static page from the record files."""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

FORMATS = "md,csv,tex,html"  # oodbench.leaderboard.build.OUTPUTS, spelled here to keep the CLI's start light
FLAT_FORMATS = "jsonl,parquet"  # oodbench.leaderboard.build.FLAT_OUTPUTS: written only when named


def handler(args: argparse.Namespace) -> int:
    from ..leaderboard.build import build_leaderboard, parse_formats
    from ..leaderboard.store import BadRecordsWarning

    panels = args.panels
    if panels is None and (Path(args.out) / "panels").is_dir():  # where `oodbench show` writes by default
        panels = Path(args.out) / "panels"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", BadRecordsWarning)
        paths = build_leaderboard(args.records, args.out, parse_formats(args.formats), panels_dir=panels,
                                  skip_bad=args.skip_bad, max_panels=args.max_panels)
    for w in caught:
        print(f"oodbench: warning: {w.message}", file=sys.stderr)
    for path in paths:
        print(f"wrote {path}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add the ``leaderboard`` subcommand to ``sub`` (the object ``add_subparsers`` returns)."""
    p = sub.add_parser("leaderboard", help="rebuild leaderboard tables (Markdown, CSV, LaTeX) and the HTML page "
                                           "from the records, or export the records flat (JSON Lines, Parquet)",
                       description="One table per dataset/split/benchmark version with the best record per method "
                                   "(highest AP; ties: AUROC, FPR95, newest). Every record is checked against the "
                                   "schema and its content address first.")
    p.add_argument("--records", default="leaderboard/records", metavar="DIR",
                   help="record folder (default %(default)s)")
    p.add_argument("--out", default="leaderboard", metavar="DIR", help="output folder (default %(default)s)")
    p.add_argument("--formats", "--format", dest="formats", default=FORMATS, metavar="LIST",
                   help=f"comma-separated subset of {FORMATS},{FLAT_FORMATS} (default: {FORMATS}), written in --out "
                        f"as README.md, leaderboard.csv, leaderboard.tex, index.html, records.jsonl and "
                        f"records.parquet; the last two hold every record, shown in the tables or not, as one row with "
                        f"dotted columns (metrics.pixel.ap, ...; lists as JSON text) for pandas: "
                        f"pd.read_json(path, lines=True) (bit-exact floats: add dtype=False, precise_float=True) or "
                        f"pd.read_parquet(path) (needs pyarrow)")
    p.add_argument("--panels", default=None, metavar="DIR",
                   help="folder of score-map panels <method>__<dataset>__<id>.png (from `oodbench show`) to embed "
                        "in the page (default: <out>/panels when it exists)")
    p.add_argument("--max-panels", type=int, default=4, help="panels embedded per method and dataset (default 4)")
    p.add_argument("--skip-bad", action="store_true", help="skip invalid or edited records with a warning "
                                                           "instead of failing")
    p.set_defaults(func=handler)
