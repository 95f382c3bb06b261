"""`oodbench export smiyc|oodis`: a method's score maps as a SegmentMeIfYouCan submission (``<out>/<method>/<dataset>/
<frame>.hdf5``), or its instances as an OoDIS / Cityscapes instance submission (``<out>/<dataset folder>/``), for the
benchmarks' hidden test splits or a round trip through `oodbench evaluate --smiyc` / `--instances`."""
from __future__ import annotations

import argparse

from .options import count, parse_options


def cmd_export_smiyc(args: argparse.Namespace) -> int:
    from ..evaluation.export import export_smiyc

    folder = export_smiyc(args.method, args.dataset, args.split, args.out, name=args.name, data_root=args.data_root,
                          dataset_options=parse_options(args.option), seed=args.seed, checkpoint=args.checkpoint,
                          network=args.network, batch_size=args.batch_size, progress=not args.quiet)
    print(f"wrote {folder}")
    return 0


def cmd_export_oodis(args: argparse.Namespace) -> int:
    from ..evaluation.oodis import export_oodis

    done = export_oodis(args.method, args.dataset, args.split, args.out, threshold=args.threshold or "oracle",
                        data_root=args.data_root, dataset_options=parse_options(args.option), seed=args.seed,
                        checkpoint=args.checkpoint, network=args.network, batch_size=args.batch_size,
                        score_cache=not args.no_score_cache, progress=not args.quiet)
    print(f"wrote {done.folder}: {done.instances} instances in {done.images} images, components of score > "
          f"{done.threshold} ({done.choice['description']})")
    return 0


def _add_common(s: argparse.ArgumentParser) -> None:
    s.add_argument("--data-root", default=None)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    s.add_argument("--seed", type=count(0), default=0)
    s.add_argument("--checkpoint", default=None, metavar="PATH")
    s.add_argument("--network", default=None, metavar="NAME")
    s.add_argument("--batch-size", type=count(1), default=4)
    s.add_argument("--quiet", action="store_true", help="no progress bars")


def register(sub) -> None:
    e = sub.add_parser("export", help="score maps in another tool's submission format")
    esub = e.add_subparsers(dest="export_format", required=True)
    s = esub.add_parser("smiyc", help="SegmentMeIfYouCan: <out>/<method>/<dataset>/<frame>.hdf5, float16 'value'")
    s.add_argument("--method", required=True, help="registered method (`oodbench list methods`)")
    s.add_argument("--dataset", required=True, help="e.g. smiyc_roadanomaly21 or smiyc_roadobstacle21")
    s.add_argument("--split", default="test", help="default test (no labels needed)")
    s.add_argument("--out", required=True, metavar="DIR", help="the submission folder (the benchmark's anomaly_p)")
    s.add_argument("--name", default=None, help="method name in the submission (default: the method's)")
    _add_common(s)
    s.set_defaults(func=cmd_export_smiyc)
    o = esub.add_parser("oodis", help="OoDIS / Cityscapes instances: <out>/<dataset folder>/"
                                      "<frame>_instanceIds_pred.txt listing masks <frame>_instanceIds_<k>_1.png")
    o.add_argument("--method", required=True, help="registered method (`oodbench list methods`)")
    o.add_argument("--dataset", required=True,
                   help="e.g. smiyc_roadanomaly21 (OoDIS roadanomaly), smiyc_roadobstacle21 (roadobstacle), "
                        "fishyscapes_laf (fishyscapes)")
    o.add_argument("--split", default="test")
    o.add_argument("--out", required=True, metavar="DIR",
                   help="submission root: the split's folder is written whole into it (an earlier export replaced)")
    o.add_argument("--threshold", default=None, metavar="T",
                   help="instances are the components of score > T: a number, SPLIT[:best_f1|tpr95] fixed on a "
                        "labelled split, or 'oracle' (default, as `oodbench run`'s metrics.instances: the split's own "
                        "best pixel F1; needs labels)")
    o.add_argument("--no-score-cache", action="store_true",
                   help="neither read nor keep float16 score maps (as `oodbench run --no-score-cache`)")
    _add_common(o)
    o.set_defaults(func=cmd_export_oodis)
