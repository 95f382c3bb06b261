"""`oodbench run` and `oodbench merge`: evaluate a method on a dataset split, print the results and write the record;
the results table and the metric options are shared with `evaluate`."""
from __future__ import annotations

import argparse

from tabulate import tabulate

from ..errors import OodbenchError
from .options import count, parse_options

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
    if "components" in m:
        c = m["components"]
        choice = c["threshold_choice"]
        rows += [["sIoU (gt)", _fmt(c["siou"], percent=True)], ["PPV", _fmt(c["ppv"], percent=True)],
                 ["mean F1", _fmt(c["f1_mean"], percent=True)],
                 ["component threshold", f"{_fmt(choice['threshold'])} ({choice['source']}, {c['track']} track)"]]
    if "instances" in m:
        rows.append(["instance AP / AP50", f"{_fmt(m['instances']['ap'], True)} / {_fmt(m['instances']['ap50'], True)}"])
    for label, key in SEGMENT_ROWS if "segments" in m else ():
        rows.append([label, _fmt(m["segments"].get(key), percent=key.startswith("meta_"))])
    ds, meth = record["dataset"], record["method"]
    title = f"{meth['name']} on {ds['name']}/{ds['split']} ({ds['num_images']} images)"
    return title + "\n" + tabulate(rows, headers=["metric", "value"], tablefmt="github")


def print_result(record: dict, path) -> None:
    print(results_table(record))
    cost = record["cost"]
    print(f"cost: {cost['wall_seconds']:.1f} s in all ({cost['setup_seconds']:.1f} s setup); "
          f"evaluation {cost['images_per_second']:.1f} images/s")
    if path is not None:
        print(f"record: {path}")


def cmd_run(args: argparse.Namespace) -> int:
    from ..evaluation.runner import parse_shard, run
    from ..training.distributed import init_distributed, shutdown

    shard = parse_shard(getattr(args, "shard", None))
    ctx = init_distributed()  # under torchrun: join the group; ranks score blocks and merge their states
    try:
        record, path = run(args.method, dataset=args.dataset, split=args.split, data_root=args.data_root,
                           out_dir=args.out, seed=args.seed, batch_size=args.batch_size,
                           progress=not args.quiet and ctx.rank == 0, dataset_options=parse_options(args.option),
                           method_options=parse_options(args.method_option, decimals=True),
                           meta_protocol=args.meta_protocol, deep_fingerprint=args.deep, checkpoint=args.checkpoint,
                           network=args.network,
                           score_cache=not args.no_score_cache, shard=shard, from_cache=args.command == "merge",
                           **metric_options(args))
    finally:
        shutdown(ctx)
    if ctx.rank != 0:
        return 0
    if shard is not None:
        print(f"shard {shard[0]}/{shard[1]}: {record['num_images']} images, {record['scored']} scored, "
              f"{record['from_cache']} already cached in {record['score_cache']['folder']}; when every shard is done, "
              f"`oodbench merge` with the same options writes the record")
        return 0
    print_result(record, path)
    return 0


def metric_options(args: argparse.Namespace) -> dict:
    if args.no_components and (args.threshold is not None or args.track is not None):
        given = " and ".join(f for f, v in (("--threshold", args.threshold), ("--track", args.track)) if v is not None)
        raise OodbenchError(f"{given} choose(s) how component metrics are computed, and --no-components skips them: "
                            f"drop one or the other")
    return {"components": not args.no_components, "threshold": args.threshold or "oracle", "track": args.track,
            "bootstrap": args.bootstrap, "conventions": args.convention}


def add_metric_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by run and evaluate: component metrics, their threshold and bootstrap intervals."""
    g = parser.add_argument_group("metrics")
    g.add_argument("--threshold", default=None, metavar="T",
                   help="component-metric threshold: a number, SPLIT[:best_f1|tpr95] fixed on a validation split, "
                        "'oracle' (default: the split's own best pixel F1, as the SegmentMeIfYouCan leaderboard) or "
                        "'oracle:smiyc_code' (the threshold SegmentMeIfYouCan's code picks as that)")
    g.add_argument("--track", choices=["anomaly", "obstacle"], default=None,
                   help="component size filters (anomaly 500/100 px, obstacle 50/10; default: the dataset's)")
    g.add_argument("--no-components", action="store_true", help="skip component metrics")
    g.add_argument("--convention", action="append", default=[], metavar="NAME",
                   help="also compute pixel metrics in a named convention of published code, e.g. hist100, "
                        "trapezoid_ap, fpr95_nearest, smiyc768 (repeatable; `oodbench list conventions`)")
    g.add_argument("--bootstrap", type=count(0), default=0, metavar="N",
                   help="N seeded resamples of the images: confidence intervals of AP, FPR95 and mean F1")


def add_run_arguments(r: argparse.ArgumentParser) -> None:
    """The options of `run`, shared with `merge` (which must repeat them to find the shards' cache)."""
    r.add_argument("--method", required=True, help="registered method, e.g. entmax_meta (`oodbench list methods`)")
    r.add_argument("--dataset", default="synthetic", help="registered dataset (default: the embedded benchmark)")
    r.add_argument("--split", default="test")
    r.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own location)")
    r.add_argument("--out", default="leaderboard/records", help="folder for the JSON record")
    r.add_argument("--seed", type=count(0), default=0)
    r.add_argument("--batch-size", type=count(1), default=4)
    r.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option, e.g. mapping=metaood")
    r.add_argument("--method-option", action="append", default=[], metavar="KEY=VALUE",
                   help="method option (repeatable), e.g. sigma=2.0 for sml_bs_ds or fit_split=train for a fitted "
                        "method; recorded as method.options (README, 'Methods')")
    r.add_argument("--meta-protocol", choices=["grouped", "loo"], default=None,
                   help="meta classifier cross-validation: grouped by image with per-fold scaling (default) or the "
                        "paper's leave-one-out over segments with z-scoring over all of them")
    r.add_argument("--deep", action="store_true", help="fingerprint the dataset by file contents (slower)")
    r.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="local weights for a model-based method on real data, instead of its card's download")
    r.add_argument("--network", default=None, metavar="NAME",
                   help="run a score method on this published network (a card in methods/networks/, e.g. "
                        "espnetv2_cityscapes; `oodbench list networks`) instead of the paper's baseline")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.add_argument("--no-score-cache", action="store_true",
                   help="keep no float16 score cache: no resume, float32 metrics, a second model pass for components")
    add_metric_arguments(r)
    r.set_defaults(func=cmd_run)


def register(sub) -> None:
    r = sub.add_parser("run", help="evaluate a method on a dataset split and write a record")
    mg = sub.add_parser("merge", help="after `run --shard i/N` for every i: the record of the whole split, computed "
                                      "from the shards' score cache without running the model")
    for parser in (r, mg):
        add_run_arguments(parser)
    r.add_argument("--shard", default=None, metavar="I/N",
                   help="score only block I of N of the split into the score cache (then `oodbench merge`)")
