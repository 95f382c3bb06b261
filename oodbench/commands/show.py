"""`oodbench show`: one image's diagnostic panel (frame, ground truth, score heatmap, segments before and after
meta classification) as a PNG, by default ``leaderboard/panels/<method>__<dataset>__<id>.png``."""
from __future__ import annotations

import argparse


def cmd_show(args: argparse.Namespace) -> int:
    from .options import parse_options
    from ..show.panel import panel_data
    from ..show.visualize import default_panel_path, render_panel

    data = panel_data(args.method, dataset=args.dataset, image_id=args.id, split=args.split,
                      data_root=args.data_root, seed=args.seed, batch_size=args.batch_size,
                      dataset_options=parse_options(args.option), meta_protocol=args.meta_protocol,
                      score_cache=not args.no_score_cache, progress=not args.quiet, checkpoint=args.checkpoint,
                      network=args.network)
    out = args.out or default_panel_path(data.method, data.dataset, data.image_id, args.out_dir)
    info = render_panel(data, out, dpi=args.dpi)
    segs = data.segments
    extra = "" if segs is None else (f"; {segs.n} segments, {int(segs.removed.sum())} removed by the meta classifier "
                                     f"(FP {segs.image_counts['fp_before']} -> {segs.image_counts['fp_after']}, "
                                     f"FN {segs.image_counts['fn_before']} -> {segs.image_counts['fn_after']})")
    print(f"panel: {info['path']} ({info['size'][0]}x{info['size'][1]} px, {len(info['panels'])} panels{extra})")
    return 0


def register(sub) -> None:
    """Add ``show`` to an argparse subparsers object."""
    from .options import count
    s = sub.add_parser("show", help="draw one image's panel: image, ground truth, score heatmap and, for meta "
                                    "methods, the segments before/after meta classification (PNG)")
    s.add_argument("--method", required=True, help="registered method, e.g. entmax_meta")
    s.add_argument("--dataset", default="synthetic", help="registered dataset (default: the embedded benchmark)")
    s.add_argument("--split", default="test")
    s.add_argument("--data-root", default=None, help="dataset folder (default: the dataset's own location)")
    s.add_argument("--id", required=True, help="image id within the split (an unknown id lists close ones)")
    s.add_argument("--out", default=None, metavar="PNG",
                   help="output file (default: <out-dir>/<method>__<dataset>__<id>.png)")
    s.add_argument("--out-dir", default="leaderboard/panels", help="folder for the default file name")
    s.add_argument("--seed", type=count(0), default=0, help="as in `run`: model seed and cross-validation folds")
    s.add_argument("--meta-protocol", choices=["grouped", "loo"], default=None,
                   help="meta classifier cross-validation, as in `run` (default: the method's)")
    s.add_argument("--checkpoint", default=None, metavar="PATH",
                   help="as in `run`: local weights for a model-based method instead of its card's download")
    s.add_argument("--network", default=None, metavar="NAME",
                   help="as in `run`: the network card a score method runs on (`oodbench list networks`)")
    s.add_argument("--no-score-cache", action="store_true",
                   help="as in `run`: float32 scores, neither reading nor writing the float16 score cache")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="dataset option")
    s.add_argument("--batch-size", type=count(1), default=4)
    s.add_argument("--dpi", type=int, default=100, help="PNG resolution: the figure is 10 inches wide")
    s.add_argument("--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_show)
