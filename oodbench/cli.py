"""Command line: ``oodbench run | list | train``."""
from __future__ import annotations

import argparse
import json
import sys
from typing import Sequence

from tabulate import tabulate

from .errors import OodbenchError

PIXEL_ROWS = (("AUROC", "auroc"), ("AP", "ap"), ("FPR95", "fpr95"))
SEGMENT_ROWS = (("segments", "num_segments"), ("GT components", "num_gt_components"),
                ("FP segments before meta", "fp_before"), ("FN segments before meta", "fn_before"),
                ("FP segments after meta", "fp_after"), ("FN segments after meta", "fn_after"),
                ("meta classifier AUROC", "meta_auroc"), ("meta classifier AP", "meta_ap"),
                ("segment threshold", "segment_threshold"))


def _fmt(value, percent: bool = False) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{100 * value:.2f} %" if percent else f"{value:.4g}"
    return str(value)


def results_table(record: dict) -> str:
    m = record["metrics"]
    rows = [[label, _fmt(m["pixel"].get(key), percent=True)] for label, key in PIXEL_ROWS]
    rows.append(["OoD / in-dist. pixels", f"{m['pixel']['num_pos']} / {m['pixel']['num_neg']}"])
    for label, key in SEGMENT_ROWS if "segments" in m else ():
        rows.append([label, _fmt(m["segments"].get(key), percent=key.startswith("meta_"))])
    ds, meth = record["dataset"], record["method"]
    title = f"{meth['name']} on {ds['name']}/{ds['split']} ({ds['num_images']} images)"
    return title + "\n" + tabulate(rows, headers=["metric", "value"], tablefmt="github")


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run

    options = dict(kv.split("=", 1) for kv in args.option)
    record, path = run(args.method, dataset=args.dataset, split=args.split, data_root=args.data_root,
                       out_dir=args.out, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet,
                       dataset_options=options, meta_protocol=args.meta_protocol)
    print(results_table(record))
    cost = record["cost"]
    print(f"cost: {cost['wall_seconds']:.1f} s in all ({cost['setup_seconds']:.1f} s setup); "
          f"evaluation {cost['images_per_second']:.1f} images/s")
    if path is not None:
        print(f"record: {path}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    from .data import DATASETS
    from .methods import METHODS
    from .models import MODELS
    from .scores import SCORES

    registries = {"methods": METHODS, "datasets": DATASETS, "models": MODELS, "scores": SCORES}
    kinds = [args.kind] if args.kind else list(registries)
    result = {kind: registries[kind].list(args.pattern) for kind in kinds}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for kind, names in result.items():
            print(f"{kind}: {', '.join(names) if names else '(none match)'}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.embedded import ensure_model

    info = ensure_model("entmax" if args.entmax else "baseline", seed=args.seed, progress=not args.quiet)[1]
    print(f"{info['arch']} {info['stage']}: val mIoU {100 * info['val_miou']:.1f} %, sha256 {info['sha256'][:16]}..., "
          f"trained in {info['train_seconds']:.0f} s")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="oodbench", description="OoD detection benchmark for semantic segmentation")
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="evaluate a method on a dataset split and write a record")
    r.add_argument("--method", required=True, help="registered method, e.g. entmax_meta (`oodbench list methods`)")
    r.add_argument("--dataset", default="synthetic", help="registered dataset (default: the embedded benchmark)")
    r.add_argument("--split", default="test")
    r.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own location)")
    r.add_argument("--out", default="leaderboard/records", help="folder for the JSON record")
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--batch-size", type=int, default=4)
    r.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option, e.g. mapping=metaood")
    r.add_argument("--meta-protocol", choices=["grouped", "loo"], default=None,
                   help="meta classifier cross-validation: grouped by image (default) or the paper's leave-one-out")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    ls = sub.add_parser("list", help="list registered methods, datasets, models, scores")
    ls.add_argument("kind", nargs="?", choices=["methods", "datasets", "models", "scores"])
    ls.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'ent*'")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("train", help="train the embedded benchmark's baseline or entropy-maximized model")
    t.add_argument("--entmax", action="store_true", help="fine-tune with entropy maximization (lambda 0.9)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    t.set_defaults(func=cmd_train)
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
