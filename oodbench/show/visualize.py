"""Draw an image's diagnostic panel (after Chan et al. 2021, Figure 7) as a PNG: frame, ground truth, score
heatmap and, with a meta stage, the segments before and after meta classification. Uses matplotlib's Agg
canvas directly (no pyplot state, no display needed) and writes the file atomically."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib as mpl
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from scipy import ndimage

from ..labels import IGNORE_LABEL, OOD_LABEL
from ..files import atomic_write
from .panel import PanelData, PanelSegments

__all__ = ["COLOURS", "FIG_WIDTH", "default_panel_path", "figure_size", "panel_names", "render_panel",
           "segment_overlay"]

FIG_WIDTH = 10.0  # inches; two panels per row
COLOURS = {"ood": (255, 120, 0), "ignore": (40, 40, 90), "segments_only": (150, 60, 200), "kept": (255, 220, 0),
           "removed": (60, 140, 255), "tp": (0, 210, 60), "fp": (235, 20, 20)}
PANEL_DIR = Path("leaderboard") / "panels"


def panel_names(with_segments: bool) -> list[str]:
    """The image panels in drawing order (the legend/summary slot is not a panel)."""
    names = ["image", "ground truth", "score"]
    return names + (["before meta", "after meta"] if with_segments else [])


def figure_size(shape: tuple[int, int], with_segments: bool) -> tuple[float, float]:
    """(width, height) in inches: two columns of frames of aspect ``shape`` plus room for titles."""
    rows = 3 if with_segments else 2
    h, w = shape
    return FIG_WIDTH, round(rows * (FIG_WIDTH / 2 * h / w + 0.45) + 0.5, 2)


def _safe(part: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(part)).strip("_") or "_"


def default_panel_path(method: str, dataset: str, image_id: str, folder: str | Path = PANEL_DIR) -> Path:
    """``<folder>/<method>__<dataset>__<id>.png``; characters other than letters, digits, ``.``, ``_`` and
    ``-`` (e.g. ``/`` in nested ids) become ``_``, so the leaderboard page can link the file by name."""
    return Path(folder) / f"{_safe(method)}__{_safe(dataset)}__{_safe(image_id)}.png"


def _grey(image: np.ndarray | None, shape: tuple[int, int], level: float = 0.55) -> np.ndarray:
    """The frame in dimmed grey as float RGB in [0, 1] (mid grey when the dataset ships no frames)."""
    if image is None:
        return np.full((*shape, 3), 0.5)
    g = image.astype(np.float64).mean(axis=2, keepdims=True) / 255 * level
    return np.repeat(g, 3, axis=2)


def _paint(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int], alpha: float) -> None:
    rgb[mask] = (1 - alpha) * rgb[mask] + alpha * np.asarray(colour) / 255


def _ring(mask: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` (8-connected steps) outside ``mask``: an outline that leaves the fill visible."""
    if not mask.any():
        return mask
    return ndimage.binary_dilation(mask, structure=np.ones((3, 3), bool), iterations=width) & ~mask


def ground_truth_overlay(image: np.ndarray | None, label: np.ndarray,
                         segment_label: np.ndarray | None = None) -> np.ndarray:
    """Grey frame with OoD pixels orange and ignored pixels dark blue; purple where only the pixel metrics ignore
    them and the meta stage's segments see them (``segment_label``, e.g. meta-ood's LostAndFound non-hazards)."""
    rgb = _grey(image, label.shape)
    _paint(rgb, label == OOD_LABEL, COLOURS["ood"], 0.85)
    _paint(rgb, label == IGNORE_LABEL, COLOURS["ignore"], 0.6)
    _paint(rgb, _segments_only(label, segment_label), COLOURS["segments_only"], 0.85)
    return rgb


def _segments_only(label: np.ndarray, segment_label: np.ndarray | None) -> np.ndarray:
    """Pixels the pixel metrics ignore but the meta stage's segments count."""
    if segment_label is None:
        return np.zeros(label.shape, bool)
    return (label == IGNORE_LABEL) & (segment_label != IGNORE_LABEL)


def segment_overlay(image: np.ndarray | None, segs: PanelSegments, after: bool) -> np.ndarray:
    """Grey frame with the segments filled (kept yellow; after meta classification, removed ones blue) and
    ringed by truth: green = touches OoD (true positive), red = touches none (false positive)."""
    seg = segs.segments
    rgb = _grey(image, seg.shape)
    if segs.n == 0:
        return rgb
    idx = np.concatenate([[False], segs.removed]) if after else np.zeros(segs.n + 1, bool)
    _paint(rgb, (seg > 0) & ~idx[seg], COLOURS["kept"], 0.85)
    _paint(rgb, idx[seg], COLOURS["removed"], 0.85)
    width = max(1, round(max(seg.shape) / 400))
    fp = np.concatenate([[False], segs.false_positive])
    for flag, colour in ((True, COLOURS["fp"]), (False, COLOURS["tp"])):
        _paint(rgb, _ring((seg > 0) & (fp[seg] == flag), width) & (seg == 0), colour, 1.0)
    return rgb


def _counts_text(c: dict[str, int]) -> str:
    return f"FP {c['fp_before']} -> {c['fp_after']}, FN {c['fn_before']} -> {c['fn_after']}"


def _summary(ax, data: PanelData) -> None:
    """The slot beside the heatmap: legend and, with segments, the counts before -> after meta classification."""
    ax.set_axis_off()
    handles = [Patch(color=np.array(COLOURS["ood"]) / 255, label="OoD (ground truth)"),
               Patch(color=np.array(COLOURS["ignore"]) / 255, label="ignored")]
    valid = int((data.label != IGNORE_LABEL).sum())
    lines = [f"{data.method} on {data.dataset}/{data.split}", f"image {data.image_id}",
             f"OoD pixels: {int((data.label == OOD_LABEL).sum())} of {valid} labelled "
             f"({data.label.size - valid} ignored)"]
    segments_only = int(_segments_only(data.label, data.segment_label).sum())
    if segments_only:
        handles.append(Patch(color=np.array(COLOURS["segments_only"]) / 255,
                             label="ignored by pixel metrics, in-distribution for segments"))
        lines.append(f"of the ignored: {segments_only} in-distribution for the meta stage's segments")
    segs = data.segments
    if segs is not None:
        handles += [Patch(color=np.array(COLOURS[k]) / 255, label=text) for k, text in (
            ("kept", "segment kept"), ("removed", "segment removed by meta classifier"),
            ("tp", "ring: true positive (touches OoD)"), ("fp", "ring: false positive"))]
        p = segs.protocol
        lines += [f"segments: score >= {segs.threshold:.4g}, {segs.n} in this image",
                  f"this image: {_counts_text(segs.image_counts)}",
                  f"split ({p.get('num_images')} images): {_counts_text(segs.split_counts)}",
                  f"meta classifier: out-of-fold ({p.get('protocol')}, {p.get('n_splits')} folds, "
                  f"seed {p.get('seed')})"]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=8.5, transform=ax.transAxes)
    ax.legend(handles=handles, loc="lower left", fontsize=8, frameon=False, ncol=2 if segs is not None else 1)


def _draw(fig: Figure, data: PanelData) -> dict:
    """Lay the panels out on ``fig``; return the axes by panel name."""
    with_segments = data.segments is not None
    rows = 3 if with_segments else 2
    grid = fig.add_gridspec(rows, 2)
    slots = [divmod(i if i < 3 else i + 1, 2) for i in range(5)]  # slot (1, 1) holds the summary
    axes = {name: fig.add_subplot(grid[slot]) for name, slot in zip(panel_names(with_segments), slots)}
    shown = data.image if data.image is not None else _grey(None, data.label.shape)
    axes["image"].imshow(shown, interpolation="antialiased")
    axes["ground truth"].imshow(ground_truth_overlay(data.image, data.label, data.segment_label))
    valid = data.label != IGNORE_LABEL
    score = np.ma.masked_array(data.score, mask=~valid)
    lo, hi = (float(data.score[valid].min()), float(data.score[valid].max())) if valid.any() else (0.0, 1.0)
    cmap = mpl.colormaps["inferno"].with_extremes(bad=(0.75, 0.75, 0.75))
    heat = axes["score"].imshow(score, cmap=cmap, vmin=lo, vmax=hi if hi > lo else lo + 1e-6)
    bar = fig.colorbar(heat, ax=axes["score"], fraction=0.046, pad=0.02)
    bar.ax.tick_params(labelsize=7)
    titles = {"image": "image", "ground truth": "ground truth", "score": "OoD score (grey: ignored)"}
    if with_segments:
        segs = data.segments
        bar.ax.axhline(segs.threshold, color="cyan", linewidth=1.5)
        axes["before meta"].imshow(segment_overlay(data.image, segs, after=False))
        axes["after meta"].imshow(segment_overlay(data.image, segs, after=True))
        titles["score"] += "; cyan: segment threshold"
        titles["before meta"] = f"before meta classification: {segs.n} segments"
        titles["after meta"] = f"after: {int(segs.removed.sum())} removed, {segs.n - int(segs.removed.sum())} kept"
    for name, ax in axes.items():
        ax.set_title(titles[name], fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    _summary(fig.add_subplot(grid[1, 1]), data)
    fig.suptitle(f"{data.method} on {data.dataset}/{data.split}: {data.image_id}", fontsize=11)
    return axes


def _boxes(fig: Figure, axes: dict) -> dict[str, list[int]]:
    """Pixel box [left, top, right, bottom] of each panel in the saved PNG (origin top left)."""
    fig.canvas.draw()
    height = fig.bbox.height
    out = {}
    for name, ax in axes.items():
        b = ax.get_window_extent()
        out[name] = [int(np.ceil(b.x0)), int(np.ceil(height - b.y1)), int(b.x1), int(height - b.y0)]
    return out


def render_panel(data: PanelData, out: str | Path, dpi: int = 100) -> dict:
    """Write the panel PNG to ``out`` atomically (temp file + rename, so a reader never sees half a file);
    returns {"path", "size" (w, h) in pixels, "panels": name -> pixel box}. The boxes also travel in the
    PNG's text chunk ``oodbench-panels`` so tools can crop single panels."""
    out = Path(out)
    fig = Figure(figsize=figure_size(data.label.shape, data.segments is not None), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    axes = _draw(fig, data)
    boxes = _boxes(fig, axes)
    fig.set_layout_engine("none")  # keep the positions just measured for the saved file
    atomic_write(out, lambda fh: fig.savefig(fh, format="png", dpi=dpi,
                                             metadata={"oodbench-panels": json.dumps(boxes)}))
    size = (round(fig.get_figwidth() * dpi), round(fig.get_figheight() * dpi))
    return {"path": out, "size": size, "panels": boxes}
