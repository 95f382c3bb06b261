"""Command line: ``oodbench run | evaluate | data check | list | train``."""
from __future__ import annotations

import argparse
import json
import os
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


def parse_options(pairs: Sequence[str]) -> dict:
    """``KEY=VALUE`` strings -> dict; integers and true/false/none become Python values."""
    options = {}
    for kv in pairs:
        if "=" not in kv:
            raise OodbenchError(f"option {kv!r}: write KEY=VALUE, e.g. mapping=metaood")
        key, value = kv.split("=", 1)
        low = value.lower()
        if low in ("true", "false"):
            options[key] = low == "true"
        elif low == "none":
            options[key] = None
        else:
            try:
                options[key] = int(value)
            except ValueError:
                options[key] = value
    return options


def _print_result(record: dict, path) -> None:
    print(results_table(record))
    cost = record["cost"]
    print(f"cost: {cost['wall_seconds']:.1f} s in all ({cost['setup_seconds']:.1f} s setup); "
          f"evaluation {cost['images_per_second']:.1f} images/s")
    if path is not None:
        print(f"record: {path}")


def cmd_run(args: argparse.Namespace) -> int:
    from .runner import run

    record, path = run(args.method, dataset=args.dataset, split=args.split, data_root=args.data_root,
                       out_dir=args.out, seed=args.seed, batch_size=args.batch_size, progress=not args.quiet,
                       dataset_options=parse_options(args.option), meta_protocol=args.meta_protocol,
                       deep_fingerprint=args.deep)
    _print_result(record, path)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .precomputed import PrecomputedScores
    from .runner import run

    if (args.dataset is None) == (args.labels is None):
        raise OodbenchError("give either --dataset NAME (with --data-root/--split) or --labels DIR (a folder of "
                            "0/1/255 label maps), not both")
    smiyc = None
    if args.smiyc is not None:
        method, _, dataset = args.smiyc.partition("/")
        if not method or not dataset:
            raise OodbenchError(f"--smiyc {args.smiyc!r}: write METHOD/DATASET, e.g. MyMethod/LostAndFound-test")
        smiyc = (method, dataset)
    if args.labels is not None:
        dataset, data_root = "folder", args.labels
    else:
        dataset, data_root = args.dataset, args.data_root
    method = PrecomputedScores(args.scores, name=args.name, resize=args.resize, smiyc=smiyc)
    record, path = run(method, dataset=dataset, split=args.split, data_root=data_root, out_dir=args.out,
                       batch_size=args.batch_size, progress=not args.quiet, dataset_options=parse_options(args.option),
                       deep_fingerprint=args.deep)
    _print_result(record, path)
    return 0


def cmd_data_check(args: argparse.Namespace) -> int:
    from .data.check import check_dataset

    report = check_dataset(args.name, root=args.data_root, splits=args.split, options=parse_options(args.option),
                           deep=args.deep)
    print(report.render())
    return 0 if report.ok else 1


def _split_counts(card: dict) -> str:
    parts = []
    for split, table in card.get("splits", {}).items():
        count = table.get("count") if isinstance(table, dict) else None
        parts.append(f"{split} {count}" if count is not None else split)
    return ", ".join(parts)


def datasets_table(names: list[str]) -> str:
    from .data.cards import list_cards, load_card

    cards = set(list_cards())
    rows = []
    for name in names:
        try:
            card = load_card(name) if name in cards else {}
        except OodbenchError:
            card = {}
        rows.append([name, card.get("title", "(no card)"), _split_counts(card)])
    return tabulate(rows, headers=["dataset", "title", "splits (images)"], tablefmt="github")


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
            if kind == "datasets" and names:
                print(f"{kind}:\n{datasets_table(names)}")
            else:
                print(f"{kind}: {', '.join(names) if names else '(none match)'}")
    return 0


# `train --dataset` options that are EntmaxConfig fields of the same name; None keeps the paper's default.
TRAIN_FIELDS = ("data_root", "proxy_dataset", "proxy_root", "proxy_mode", "proxy_fraction", "model", "init", "epochs",
                "lr", "batch_size", "crop", "lam", "workers", "device", "log_every", "save_every", "val_every",
                "val_max_images", "max_steps")


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def cmd_train_dataset(args: argparse.Namespace) -> int:
    from .training.trainer import EntmaxConfig, train_entmax

    cfg = EntmaxConfig(dataset=args.dataset, seed=args.seed, amp=args.amp, fresh_optimizer=not args.keep_optimizer,
                       dataset_options=parse_options(args.option), model_options=parse_options(args.model_option),
                       **{f: getattr(args, f) for f in TRAIN_FIELDS if getattr(args, f) is not None})
    if cfg.init is None and not args.quiet and os.environ.get("RANK", "0") == "0":
        print(f"oodbench: note: no --init checkpoint; {cfg.model} starts from random weights", file=sys.stderr)
    out = args.out or f"runs/entmax-{cfg.model}-{cfg.proxy_mode}-seed{cfg.seed}"
    summary = train_entmax(cfg, out, resume=args.resume, progress=not args.quiet)
    if summary["sha256"] is not None:  # only the main process reports
        state = "finished" if summary["finished"] else "stopped early (resume with --resume)"
        print(f"{cfg.model} entropy maximization ({cfg.proxy_mode} proxies): {state} after epoch {summary['epoch']}, "
              f"step {summary['step']}\nval mIoU before {_percent(summary['miou_before'])}, "
              f"after {_percent(summary['miou_after'])}\nweights: {summary['model']} (sha256 {summary['sha256'][:16]}...)"
              f"\nresume state: {summary['state']}\nlog: {summary['log']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from .training.embedded import ensure_model

    if args.dataset is not None:
        return cmd_train_dataset(args)
    given = [f"--{a.replace('_', '-')}" for a in (*TRAIN_FIELDS, "out") if getattr(args, a) is not None]
    flags = (("--amp", args.amp), ("--resume", args.resume), ("--keep-optimizer", args.keep_optimizer),
             ("--option", args.option), ("--model-option", args.model_option))
    given += [flag for flag, on in flags if on]
    if given:
        raise OodbenchError(f"{', '.join(given)} need --dataset (e.g. --dataset cityscapes); without it, train "
                            f"builds the embedded benchmark's models")
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
    r.add_argument("--deep", action="store_true", help="fingerprint the dataset by file contents (slower)")
    r.add_argument("--quiet", action="store_true", help="no progress bars")
    r.set_defaults(func=cmd_run)

    e = sub.add_parser("evaluate", help="metrics of score maps computed elsewhere; writes the same record as run")
    e.add_argument("--scores", required=True, metavar="DIR",
                   help="score maps <DIR>/<id>.npy|.npz|.hdf5 (float16/float32 HxW, higher = more OoD)")
    e.add_argument("--name", required=True, help="method name for the record and leaderboard")
    e.add_argument("--dataset", default=None, help="registered dataset (`oodbench list datasets`)")
    e.add_argument("--labels", default=None, metavar="DIR", help="folder of 0/1/255 label maps (the folder dataset)")
    e.add_argument("--split", default="test")
    e.add_argument("--data-root", default=None, help="dataset folder (with --dataset)")
    e.add_argument("--smiyc", default=None, metavar="METHOD/DATASET",
                   help="SegmentMeIfYouCan layout: <DIR>/METHOD/DATASET/<id>.hdf5 (DIR: outputs/anomaly_p)")
    e.add_argument("--resize", action="store_true", help="resize score maps bilinearly to the label size")
    e.add_argument("--out", default="leaderboard/records", help="folder for the JSON record")
    e.add_argument("--batch-size", type=int, default=4)
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    e.add_argument("--deep", action="store_true", help="fingerprint the dataset by file contents (slower)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    e.set_defaults(func=cmd_evaluate)

    d = sub.add_parser("data", help="dataset tools")
    dsub = d.add_subparsers(dest="data_command", required=True)
    c = dsub.add_parser("check", help="read every sample of a dataset copy and report every problem (exit 1 if any)")
    c.add_argument("name", help="registered dataset")
    c.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own location)")
    c.add_argument("--split", action="append", default=None, help="split to check (repeatable; default: the card's)")
    c.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option, e.g. expected=60")
    c.add_argument("--deep", action="store_true", help="print content fingerprints (reads every byte)")
    c.set_defaults(func=cmd_data_check)

    ls = sub.add_parser("list", help="list registered methods, datasets, models, scores")
    ls.add_argument("kind", nargs="?", choices=["methods", "datasets", "models", "scores"])
    ls.add_argument("pattern", nargs="?", default="*", help="glob filter, e.g. 'ent*'")
    ls.add_argument("--json", action="store_true")
    ls.set_defaults(func=cmd_list)

    t = sub.add_parser("train", help="entropy-maximization training: on a real dataset with --dataset, else the "
                                     "embedded benchmark's baseline or entropy-maximized model")
    t.add_argument("--entmax", action="store_true", help="embedded benchmark: fine-tune with entropy maximization "
                                                         "(implied with --dataset)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--quiet", action="store_true")
    g = t.add_argument_group("real data (paper schedule by default: 4 epochs, Adam 1e-5, batch 8, 480 crops, "
                             "10 % proxies, lambda 0.9)")
    g.add_argument("--dataset", default=None, help="in-distribution training set with train ids, e.g. cityscapes")
    g.add_argument("--data-root", default=None, help="its folder (leftImg8bit/, gtFine/ for cityscapes)")
    g.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="dataset option, e.g. expected=false for a partial copy")
    g.add_argument("--proxy-dataset", default=None, help="OoD proxy set (default coco_proxy)")
    g.add_argument("--proxy-root", default=None, help="its folder (train2017/, annotations/ood_seg_train2017/)")
    g.add_argument("--proxy-mode", choices=["whole", "paste"], default=None,
                   help="whole proxy images (paper code, default) or objects pasted into frames")
    g.add_argument("--proxy-fraction", type=float, default=None, help="proxies per frame per epoch (default 0.1)")
    g.add_argument("--model", default=None, help="registered model (default deeplabv3plus_wrn38)")
    g.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model option, e.g. width=8")
    g.add_argument("--init", default=None, metavar="PATH", help="checkpoint to start from (e.g. the Cityscapes model)")
    g.add_argument("--epochs", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument("--batch-size", type=int, default=None, help="global batch, split over torchrun processes")
    g.add_argument("--crop", type=int, default=None, help="square random crop side")
    g.add_argument("--lam", type=float, default=None, help="weight of the OoD term (default 0.9)")
    g.add_argument("--keep-optimizer", action="store_true",
                   help="keep Adam's moments across epochs (the paper code starts a fresh Adam every epoch)")
    g.add_argument("--amp", action="store_true", help="mixed precision: bf16 autocast on CPU, fp16 + GradScaler on CUDA")
    g.add_argument("--resume", action="store_true", help="continue the run in --out from its last.pt")
    g.add_argument("--out", default=None, metavar="DIR", help="folder for last.pt, model.pt and log.jsonl")
    g.add_argument("--workers", type=int, default=None, help="DataLoader worker processes (default 4)")
    g.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: CUDA when available)")
    g.add_argument("--max-steps", type=int, default=None, help="stop after this many optimizer steps (smoke runs)")
    g.add_argument("--log-every", type=int, default=None, help="log the mean loss every N steps (default 50)")
    g.add_argument("--save-every", type=int, default=None, help="also checkpoint every N steps (default: epoch ends)")
    g.add_argument("--val-every", type=int, default=None, help="validation mIoU every K epochs (0: never; default 1)")
    g.add_argument("--val-max-images", type=int, default=None, help="validate on the first N val images only")
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
