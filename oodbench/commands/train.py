"""`oodbench train`: the embedded benchmark's models, or entropy maximization at real scale with --dataset."""
from __future__ import annotations

import argparse
import os
import sys

from ..errors import OodbenchError
from .options import parse_options

TRAIN_FIELDS = ("data_root", "proxy_dataset", "proxy_root", "proxy_mode", "proxy_fraction", "model", "init", "epochs",
                "lr", "batch_size", "crop", "lam", "workers", "device", "log_every", "save_every", "val_every",
                "val_max_images", "max_steps", "network")


def _percent(value) -> str:
    return "n/a" if value is None else f"{100 * value:.2f} %"


def cmd_train_dataset(args: argparse.Namespace) -> int:
    from ..training.config import TrainConfig
    from ..training.trainer import run_training

    if args.network is not None:
        flags = (("--model", args.model is not None), ("--model-option", args.model_option))
        given = [flag for flag, on in flags if on]
        if given:
            raise OodbenchError(f"--network {args.network} conflicts with {' and '.join(given)}: the network card "
                                f"sets the model, its options and class count; give either --network or --model")
    cfg = TrainConfig(dataset=args.dataset, seed=args.seed, amp=args.amp, fresh_optimizer=not args.keep_optimizer,
                       dataset_options=parse_options(args.option), model_options=parse_options(args.model_option),
                       **{f: getattr(args, f) for f in TRAIN_FIELDS if getattr(args, f) is not None})
    if cfg.init is None and cfg.network is None and not args.quiet and os.environ.get("RANK", "0") == "0":
        print(f"oodbench: note: no --init checkpoint; {cfg.model} starts from random weights", file=sys.stderr)
    out = args.out or f"runs/entmax-{cfg.network or cfg.model}-{cfg.proxy_mode}-seed{cfg.seed}"
    summary = run_training(cfg, out, resume=args.resume, progress=not args.quiet)
    if summary["sha256"] is not None:  # only the main process reports
        state = "finished" if summary["finished"] else "stopped early (resume with --resume)"
        init = summary.get("init") or {}
        if init:
            source = f"network {init['network']}, " if init.get("network") else ""
            print(f"initial weights: {source}{init['checkpoint']} (sha256 {init['sha256'][:16]}..."
                  + (", the published file" if init.get("matches_published") else "") + ")")
        print(f"{cfg.network or cfg.model} entropy maximization ({cfg.proxy_mode} proxies): {state} after epoch "
              f"{summary['epoch']}, step {summary['step']}\nval mIoU before {_percent(summary['miou_before'])}, "
              f"after {_percent(summary['miou_after'])}\nweights: {summary['model']} (sha256 {summary['sha256'][:16]}...)"
              f"\nresume state: {summary['state']}\nlog: {summary['log']}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from ..training.embedded import ensure_model

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


def register(sub) -> None:
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
    g.add_argument("--network", default=None, metavar="NAME",
                   help="a published network (card in methods/networks/, e.g. espnetv2_cityscapes): its model, "
                        "options, classes, weights (--init overrides the download) and inference protocol (frames at "
                        "its input size; the OoD term over its score channels); not with --model")
    g.add_argument("--model", default=None, help="registered model (default deeplabv3plus_wrn38)")
    g.add_argument("--model-option", action="append", default=[], metavar="KEY=VALUE", help="model option, e.g. width=8")
    g.add_argument("--init", default=None, metavar="PATH",
                   help="checkpoint to start from (e.g. the Cityscapes model; with --network, instead of its download)")
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
