"""`oodbench evaluate`: metrics of score maps computed elsewhere, written as the same record as `run` writes."""
from __future__ import annotations

import argparse

from ..errors import OodbenchError
from ..outputs import check_entry_name, check_output_dir
from .options import count, parse_options
from .run import add_metric_arguments, metric_options, print_result


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.precomputed import PrecomputedScores
    from ..evaluation.runner import run

    if (args.dataset is None) == (args.labels is None):
        raise OodbenchError("give either --dataset NAME (with --data-root/--split) or --labels DIR (a folder of "
                            "0/1/255 label maps), not both")
    smiyc = None
    if args.smiyc is not None:
        method, _, dataset = args.smiyc.partition("/")
        if not method or not dataset:
            raise OodbenchError(f"--smiyc {args.smiyc!r}: write METHOD/DATASET, e.g. MyMethod/LostAndFound-test")
        smiyc = (method, dataset)
    check_entry_name(args.name)
    if args.out is not None:
        check_output_dir(args.out, "--out")
    if args.labels is not None:
        dataset, data_root = "folder", args.labels
    else:
        dataset, data_root = args.dataset, args.data_root
    method = PrecomputedScores(args.scores, name=args.name, resize=args.resize, smiyc=smiyc)
    record, path = run(method, dataset=dataset, split=args.split, data_root=data_root, out_dir=args.out,
                       batch_size=args.batch_size, progress=not args.quiet, dataset_options=parse_options(args.option),
                       deep_fingerprint=args.deep, **metric_options(args))
    print_result(record, path)
    return 0


def register(sub) -> None:
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
    e.add_argument("--batch-size", type=count(1), default=4)
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    e.add_argument("--deep", action="store_true", help="fingerprint the dataset by file contents (slower)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    add_metric_arguments(e)
    e.set_defaults(func=cmd_evaluate)
