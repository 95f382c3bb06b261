"""Connected components (8-connectivity) and their boundary pixels, vectorised.

The boundary follows MetaSeg / meta-ood (``src/metaseg/metrics.pyx``): a segment pixel is a
boundary pixel when one of its 8-neighbours *inside the image* belongs to another segment or to
the background. Neighbours beyond the image border are not looked at, so the image border by
itself does not make a pixel a boundary pixel.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage

__all__ = ["EIGHT_CONNECTIVITY", "NEIGHBOUR_OFFSETS", "label_components", "boundary_mask"]

EIGHT_CONNECTIVITY = np.ones((3, 3), dtype=bool)
# the 8 neighbour offsets (drow, dcol); the first four cover each unordered neighbour pair once
HALF_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))
NEIGHBOUR_OFFSETS = HALF_OFFSETS + tuple((-dy, -dx) for dy, dx in HALF_OFFSETS)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """Label the 8-connected components of a boolean HxW mask: (int32 labels, 0 = background; n)."""
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 2:
        raise ValueError(f"label_components expects a 2-D mask, got shape {mask.shape}")
    labels = np.zeros(mask.shape, dtype=np.int32)
    n = ndimage.label(mask, structure=EIGHT_CONNECTIVITY, output=labels)
    return labels, int(n)


def pair_slices(dy: int, dx: int, shape: tuple[int, int]) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """Slices (src, dst) so that ``a[dst]`` is the (dy, dx)-neighbour of ``a[src]`` (dy >= 0)."""
    h, w = shape
    rows_src, rows_dst = slice(0, h - dy), slice(dy, h)
    if dx >= 0:
        cols_src, cols_dst = slice(0, w - dx), slice(dx, w)
    else:
        cols_src, cols_dst = slice(-dx, w), slice(0, w + dx)
    return (rows_src, cols_src), (rows_dst, cols_dst)


def boundary_mask(labels: np.ndarray) -> np.ndarray:
    """Boolean HxW: segment pixels (label > 0) with an in-image 8-neighbour of a different label.

    Each unordered neighbour pair is compared once (4 shifted comparisons), marking both ends.
    """
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise ValueError(f"boundary_mask expects a 2-D label map, got shape {labels.shape}")
    differs = np.zeros(labels.shape, dtype=bool)
    for dy, dx in HALF_OFFSETS:
        src, dst = pair_slices(dy, dx, labels.shape)
        ne = labels[src] != labels[dst]
        differs[src] |= ne
        differs[dst] |= ne
    return differs & (labels > 0)
