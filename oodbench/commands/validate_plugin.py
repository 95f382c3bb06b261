"""`oodbench validate-plugin NAME`: check a method plugin against the method contract before submitting it
(the checks live in ``oodbench.plugin_check``); exits 1 when any check fails."""
from __future__ import annotations

import argparse
import sys



def _emoji_ok(stream) -> bool:
    """Whether ``stream`` can print the report's marks; otherwise it falls back to [ok]/[warn]/[FAIL]."""
    try:
        "✅⚠️❌➖".encode(getattr(stream, "encoding", None) or "ascii")
        return True
    except (UnicodeEncodeError, LookupError):
        return False


def cmd_validate_plugin(args: argparse.Namespace) -> int:
    from ..evaluation.plugin_check import validate_plugin  # lazy: the other subcommands need not import torch

    report = validate_plugin(args.name, images=args.images, batch_size=args.batch_size, seed=args.seed,
                             quick=args.quick, progress=not args.quiet)
    print(report.render(ascii_only=not _emoji_ok(sys.stdout)))
    return 0 if report.ok else 1


def register(sub) -> None:
    p = sub.add_parser(
        "validate-plugin", help="check a method (e.g. your plugin) against the method contract before submitting it",
        description="Load method NAME through the registry (entry points included), run it on the first images of "
                    "the embedded benchmark (synthetic/test) and check: MethodOutput, score shape = label shape, "
                    "float16/float32, finite, range, higher = more OoD (AUROC > 0.5, a warning), determinism, speed, "
                    "softmax probabilities for the _meta variant, JSON-ready config. Exit status 1 on any failure.")
    p.add_argument("name", help="registered method name, e.g. my_method (`oodbench list methods`)")
    p.add_argument("--quick", action="store_true",
                   help="fewer images (4, not 8) and no fresh-instance determinism check")
    p.add_argument("--images", type=int, default=None, help="number of test images to run (overrides --quick's)")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seed", type=int, default=0, help="seed passed to the method factory, as `oodbench run --seed`")
    p.add_argument("--quiet", action="store_true", help="no progress bars while the method sets up")
    p.set_defaults(func=cmd_validate_plugin)
