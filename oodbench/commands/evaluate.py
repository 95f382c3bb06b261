"""`oodbench evaluate`: metrics of score maps computed elsewhere, written as the same record as `run` writes; and the
instance AP of an OoDIS / Cityscapes instance submission, in that record or, without score maps, as a result of its
own (a record needs pixel metrics)."""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

from ..errors import OodbenchError
from ..files import atomic_write
from ..outputs import check_entry_name, check_output_dir
from .options import count, parse_options
from .run import add_metric_arguments, metric_options, print_result

RECORDS, INSTANCE_RESULTS = "leaderboard/records", "leaderboard/instances"


def _dataset(args: argparse.Namespace) -> tuple[str, str | None]:
    if (args.dataset is None) == (args.labels is None):
        raise OodbenchError("give either --dataset NAME (with --data-root/--split) or --labels DIR (a folder of "
                            "0/1/255 label maps), not both")
    return ("folder", args.labels) if args.labels is not None else (args.dataset, args.data_root)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from ..evaluation.oodis import evaluate_submission
    from ..evaluation.precomputed import PrecomputedScores
    from ..evaluation.runner import run
    from ..leaderboard.record import write_record

    dataset, data_root = _dataset(args)
    if args.scores is None:
        return _instances_only(args, dataset, data_root)
    if args.name is None:
        raise OodbenchError("--scores needs --name, the method name of the record")
    smiyc = None
    if args.smiyc is not None:
        method, _, smiyc_dataset = args.smiyc.partition("/")
        if not method or not smiyc_dataset:
            raise OodbenchError(f"--smiyc {args.smiyc!r}: write METHOD/DATASET, e.g. MyMethod/LostAndFound-test")
        smiyc = (method, smiyc_dataset)
    check_entry_name(args.name)
    out = args.out or RECORDS
    check_output_dir(out, "--out")
    options = metric_options(args)
    instances = None  # a submission's instance AP, read first so that a broken one fails before the score maps
    if args.instances is not None:
        instances = evaluate_submission(args.instances, _split(dataset, args.split, data_root, args.option),
                                        progress=not args.quiet)
    method = PrecomputedScores(args.scores, name=args.name, resize=args.resize, smiyc=smiyc)
    record, path = run(method, dataset=dataset, split=args.split, data_root=data_root,
                       out_dir=out if instances is None else None, batch_size=args.batch_size, progress=not args.quiet,
                       dataset_options=parse_options(args.option), deep_fingerprint=args.deep, **options)
    if instances is not None:  # the score maps' own instances give way to the submission's
        record["metrics"]["instances"] = instances
        path = write_record(record, out)
    print_result(record, path)
    return 0


def _split(dataset: str, split: str, data_root, options):
    from ..data.base import DATASETS

    ds = DATASETS.create(dataset, root=data_root, split=split, **parse_options(options))
    if ds.label_kind != "ood":
        raise OodbenchError(f"dataset {dataset!r} split {split!r} has {ds.label_kind} labels, not OoD labels; "
                            f"choose an OoD benchmark (`oodbench list datasets`)")
    return ds


def _instances_only(args: argparse.Namespace, dataset: str, data_root) -> int:
    """``--instances`` without ``--scores``: the submission's instance AP as a JSON result (not a record)."""
    from ..evaluation.oodis import evaluate_submission
    from ..leaderboard.record import json_safe, provenance

    if args.instances is None:
        raise OodbenchError("give --scores DIR (score maps), --instances DIR (an OoDIS instance submission), or both")
    given = [flag for flag, value in (("--smiyc", args.smiyc), ("--resize", args.resize), ("--name", args.name),
                                      ("--threshold", args.threshold), ("--track", args.track),
                                      ("--no-components", args.no_components), ("--convention", args.convention),
                                      ("--bootstrap", args.bootstrap)) if value]
    if given:
        raise OodbenchError(f"{', '.join(given)} concern(s) score maps; with --instances alone there are none: add "
                            f"--scores DIR or drop them")
    out = args.out or INSTANCE_RESULTS
    check_output_dir(out, "--out")
    ds = _split(dataset, args.split, data_root, args.option)
    instances = evaluate_submission(args.instances, ds, progress=not args.quiet)
    result = json_safe({
        "result": "instance AP of an OoDIS/Cityscapes instance submission (no leaderboard record: no pixel metrics)",
        "dataset": {"name": ds.name, "split": ds.split, "num_images": len(ds), "fingerprint": ds.fingerprint(args.deep),
                    "fingerprint_kind": "content" if args.deep else "names+sizes",
                    "options": parse_options(args.option)},
        "submission": instances["predictions"]["folder"], "metrics": {"instances": instances},
        "provenance": provenance()})
    text = json.dumps(result, indent=1, sort_keys=True, allow_nan=False) + "\n"
    name = f"{ds.name}-{ds.split}-instances-{hashlib.sha256(text.encode()).hexdigest()[:16]}.json"
    path = atomic_write(Path(out) / name, text)
    print(text, end="")
    print(f"instance AP {instances['ap']:.4f}, AP50 {instances['ap50']:.4f}; result: {path}")
    return 0


def register(sub) -> None:
    e = sub.add_parser("evaluate", help="metrics of score maps computed elsewhere (the same record as run writes), "
                                        "and of an OoDIS instance submission")
    e.add_argument("--scores", default=None, metavar="DIR",
                   help="score maps <DIR>/<id>.npy|.npz|.hdf5 (float16/float32 HxW, higher = more OoD)")
    e.add_argument("--instances", default=None, metavar="DIR",
                   help="OoDIS/Cityscapes instance submission (<frame>_instanceIds_pred.txt + masks; DIR or its "
                        "dataset folder, e.g. roadanomaly/): its instance AP replaces the score maps' in the record, "
                        "or without --scores is written as a result of its own")
    e.add_argument("--name", default=None, help="method name for the record and leaderboard (with --scores)")
    e.add_argument("--dataset", default=None, help="registered dataset (`oodbench list datasets`)")
    e.add_argument("--labels", default=None, metavar="DIR", help="folder of 0/1/255 label maps (the folder dataset)")
    e.add_argument("--split", default="test")
    e.add_argument("--data-root", default=None, help="dataset folder (with --dataset)")
    e.add_argument("--smiyc", default=None, metavar="METHOD/DATASET",
                   help="SegmentMeIfYouCan layout: <DIR>/METHOD/DATASET/<id>.hdf5 (DIR: outputs/anomaly_p)")
    e.add_argument("--resize", action="store_true", help="resize score maps bilinearly to the label size")
    e.add_argument("--out", default=None,
                   help=f"folder for the JSON (default {RECORDS}; with --instances alone {INSTANCE_RESULTS})")
    e.add_argument("--batch-size", type=count(1), default=4)
    e.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    e.add_argument("--deep", action="store_true", help="fingerprint the dataset by file contents (slower)")
    e.add_argument("--quiet", action="store_true", help="no progress bars")
    add_metric_arguments(e)
    e.set_defaults(func=cmd_evaluate)
