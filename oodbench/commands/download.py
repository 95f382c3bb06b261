"""`oodbench download DATASET` (the card's public archive: verified, extracted, opened with its loader) and
`oodbench download --network NAME` (a network card's published checkpoint into the cache `oodbench run --network`
reads). Downloads are resumable: after an interruption the same command continues where it stopped."""
from __future__ import annotations

import argparse
import sys
import warnings

from ..errors import OodbenchError


def _warn(message: object) -> None:
    print(f"oodbench: warning: {message}", file=sys.stderr)


def _download_network(args: argparse.Namespace) -> int:
    from ..errors import CheckpointError
    from ..models.download import fetch_checkpoint, sha256_of
    from ..models.network_cards import load_network_card

    misplaced = [opt for opt in ("out", "cache", "md5") if getattr(args, opt) is not None]
    if args.dataset or misplaced:
        extra = f"DATASET {args.dataset!r}" if args.dataset else ", ".join(f"--{opt}" for opt in misplaced)
        raise OodbenchError(f"--network takes no {extra}: a checkpoint goes to $OODBENCH_HOME/checkpoints, where "
                            f"`oodbench run --network NAME` finds it, and is checked with --sha256")
    card = load_network_card(args.network)
    url = args.url or card.checkpoint_url
    if not url:
        raise CheckpointError(f"{card.path}: network {card.name!r} publishes no checkpoint URL; pass --url URL "
                              f"(and --sha256 HEX), or give `oodbench run` a local file with --checkpoint PATH")
    sha256 = args.sha256 or card.checkpoint_sha256
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            path = fetch_checkpoint(url, sha256, filename=card.checkpoint_file, progress=not args.quiet)
        finally:
            for w in caught:
                _warn(w.message)
    actual = sha256_of(path)
    how = ("the published sha256" if actual == card.checkpoint_sha256 else
           "the --sha256 given" if sha256 else "unverified: no sha256 published")
    print(f"{card.name}: {path}\nsha256 {actual} ({how}); `oodbench run --network {card.name} ...` uses it")
    return 0


def _download_dataset(args: argparse.Namespace) -> int:
    from ..data.cityscapes import default_root
    from ..data.download import download_dataset

    result = download_dataset(args.dataset, out=args.out, url=args.url, sha256=args.sha256, md5=args.md5,
                              cache=args.cache, progress=not args.quiet, log=_warn)
    frames = ", ".join(f"{count} {split}" for split, count in result.counts.items())
    if result.reused:
        print(f"{result.name}: a complete copy is already in {result.folder} ({frames} frames); nothing downloaded")
    else:
        print(f"{result.name}: {frames} frames in {result.folder} (archive {result.archive}, {result.checked})")
    if result.root == default_root(result.name, None):
        print(f"this is where oodbench looks for {result.name} by default: no --data-root needed")
    else:
        print(f"pass --data-root {result.root}, e.g. oodbench run --dataset {result.name} --data-root {result.root} "
              f"--method METHOD")
    return 0


def cmd_download(args: argparse.Namespace) -> int:
    if args.network is None and args.dataset is None:
        raise OodbenchError("give a DATASET to download (e.g. `oodbench download roadanomaly`) or --network NAME "
                            "(`oodbench list networks`)")
    try:
        return _download_network(args) if args.network is not None else _download_dataset(args)
    except KeyboardInterrupt:
        print("oodbench: download interrupted; run the same command again to resume it", file=sys.stderr)
        return 130


def register(sub) -> None:
    """Add ``download`` to an argparse subparsers object."""
    d = sub.add_parser("download", help="download a dataset's public archive (e.g. roadanomaly) or, with --network, "
                                        "a network card's published checkpoint; verified and resumable")
    d.add_argument("dataset", nargs="?", metavar="DATASET", help="dataset card with a [download] table, e.g. "
                                                                 "roadanomaly")
    d.add_argument("--network", default=None, metavar="NAME",
                   help="instead: a network card's checkpoint into $OODBENCH_HOME/checkpoints "
                        "(`oodbench list networks`)")
    d.add_argument("--out", default=None, metavar="DIR",
                   help="dataset folder, the --data-root to pass later (default: $OODBENCH_HOME/data/DATASET, where "
                        "oodbench looks by default)")
    d.add_argument("--cache", default=None, metavar="DIR",
                   help="where the archive is kept (default: $OODBENCH_HOME/downloads)")
    d.add_argument("--url", default=None, help="a mirror to download from; the published checksum still applies")
    sums = d.add_mutually_exclusive_group()
    sums.add_argument("--sha256", default=None, metavar="HEX", help="check this sha256 instead of the published one")
    sums.add_argument("--md5", default=None, metavar="HEX", help="check this md5 instead of the published one "
                                                                 "(datasets only)")
    d.add_argument("--quiet", action="store_true", help="no progress bars")
    d.set_defaults(func=cmd_download)
