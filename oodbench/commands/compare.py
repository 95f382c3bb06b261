"""`oodbench compare`: fresh records against the committed CI baseline; a Markdown table for a pull request and
a non-zero exit on a regression beyond tolerance. ``--write-baseline`` creates or updates the baseline."""
from __future__ import annotations

import argparse
import sys

from ..errors import OodbenchError

DEFAULT_BASELINE = "leaderboard/ci/baseline.json"


def cmd_compare(args: argparse.Namespace) -> int:
    from ..files import atomic_write
    from ..leaderboard import compare as cmp
    from ..outputs import check_output_file

    sources = list(args.record) + ([args.records] if args.records else [])
    if not sources:
        raise OodbenchError("give records to compare: --records DIR or RECORD.json files")
    if args.output:  # every output location is checked before any work
        check_output_file(args.output, "--output", "comment.md")
    if args.write_baseline:
        check_output_file(args.baseline, "--baseline", "baseline.json")
    tolerances = cmp.parse_tolerances(args.tolerance)
    records = cmp.load_records(sources)
    if not records:
        raise OodbenchError(f"no records found in {', '.join(map(str, sources))}")
    if args.write_baseline:
        data = cmp.write_baseline(args.baseline, records, replace=args.replace)
        print(f"baseline {args.baseline}: {len(records)} entr{'y' if len(records) == 1 else 'ies'} written "
              f"({len(data['entries'])} in all): {', '.join(sorted(records))}")
        return 0
    baseline = cmp.read_baseline(args.baseline)
    rows = cmp.compare(baseline, records, tolerances)
    notes = cmp.provenance_notes(baseline, records, rows)
    allow = dict(allow_missing=args.allow_missing, allow_checkpoint_change=args.allow_checkpoint_change)
    text = cmp.markdown(rows, tolerances, notes, **allow)
    print(text)
    if args.output:
        atomic_write(args.output, text)
    bad = cmp.failed(rows, **allow)
    if bad:
        changed = any(r.verdict == "checkpoint" for r in rows) and not args.allow_checkpoint_change
        print("oodbench compare: regression against the baseline (see the table); if the change is intended, "
              f"update it with `oodbench compare --write-baseline --baseline {args.baseline} ...`"
              + ("; a record ran another model checkpoint than the baseline's: pass --allow-checkpoint-change if "
                 "that is intended" if changed else ""), file=sys.stderr)
    return 1 if bad else 0


def register(sub) -> None:
    """Add ``compare`` to an argparse subparsers object."""
    c = sub.add_parser("compare", help="compare records with the CI baseline (Markdown table; exit 1 on a regression)")
    c.add_argument("record", nargs="*", metavar="RECORD.json", help="record files")
    c.add_argument("--records", default=None, metavar="DIR", help="folder of records (*.json)")
    c.add_argument("--baseline", default=DEFAULT_BASELINE, metavar="FILE", help=f"default {DEFAULT_BASELINE}")
    c.add_argument("--tolerance", action="append", default=[], metavar="METRIC=ABS",
                   help="absolute tolerance of a metric, as a fraction for rates (ap=0.01 is one point) or a "
                        "count (fp_after=2); defaults: rates 0.005, counts 0")
    c.add_argument("--allow-missing", action="store_true",
                   help="baseline entries without a record do not fail the check")
    c.add_argument("--allow-checkpoint-change", action="store_true",
                   help="a record of another model checkpoint (checkpoint_sha256) than the baseline's does not fail "
                        "the check (it is still flagged in the table)")
    c.add_argument("--output", default=None, metavar="FILE", help="also write the Markdown table here")
    c.add_argument("--write-baseline", action="store_true",
                   help="write the records' metrics into the baseline instead of comparing")
    c.add_argument("--replace", action="store_true", help="with --write-baseline: drop entries not in the records")
    c.set_defaults(func=cmd_compare)
