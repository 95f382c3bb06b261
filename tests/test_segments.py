"""Components, boundaries and the MetaSeg features against hand values and a per-segment loop."""
import numpy as np
import pytest
from scipy import ndimage
from scipy.special import xlogy
from scipy.stats import entropy as scipy_entropy

from oodbench.errors import ScoreError
from oodbench.segments import (boundary_mask, feature_names, label_components, paper_feature_order,
                               segment_features)

CONFIDENT = (0.9, 0.05, 0.05)


def probs_map(h, w, fill=CONFIDENT):
    return np.broadcast_to(np.asarray(fill, np.float64)[:, None, None], (len(fill), h, w)).copy()


def test_diagonal_touch_is_one_segment():
    mask = np.zeros((6, 6), bool)
    mask[0:2, 0:2] = True
    mask[2:4, 2:4] = True
    labels, n = label_components(mask)
    assert n == 1 and labels.dtype == np.int32
    assert set(np.unique(labels[mask])) == {1}


def test_boundary_of_5x5_square():
    labels = np.zeros((9, 9), np.int32)
    labels[2:7, 2:7] = 1
    bd = boundary_mask(labels)
    assert bd.sum() == 16 and (labels.astype(bool) & ~bd).sum() == 9
    assert not bd[labels == 0].any()


def test_image_border_is_not_a_boundary():
    # meta-ood only looks at in-image neighbours: a segment filling the image has no boundary
    assert boundary_mask(np.ones((3, 4), np.int32)).sum() == 0
    labels = np.zeros((5, 7), np.int32)
    labels[:, :5] = 1  # touches top, bottom and left border; only column 4 faces the outside
    bd = boundary_mask(labels)
    assert bd.sum() == 5 and bd[:, 4].all()


def test_adjacent_segments_mark_each_other():
    labels = np.array([[1, 1, 2, 2]] * 3, np.int32)
    bd = boundary_mask(labels)
    assert bd[:, 1].all() and bd[:, 2].all() and not bd[:, 0].any() and not bd[:, 3].any()


def _square_case():
    """3x3 high-entropy square (rows/cols 1..3) in a 5x5 image; column 4 predicts class 1."""
    probs = probs_map(5, 5)
    probs[:, :, 4] = np.array([0.05, 0.9, 0.05])[:, None]
    probs[:, 1:4, 1:4] = 1.0 / 3.0
    probs[:, 2, 2] = (0.4, 0.3, 0.3)
    return probs


def test_hand_computed_features():
    probs = _square_case()
    sf = segment_features(probs, np.zeros((5, 5), bool), 0.7)
    assert sf.n == 1 and sf.features.shape == (1, 37 + 2 * 3)
    assert (sf.segments[1:4, 1:4] == 1).all() and sf.segments.sum() == 9
    f = dict(zip(sf.names, sf.features[0]))
    e_c = scipy_entropy([0.4, 0.3, 0.3]) / np.log(3)
    e_vals = np.array([1.0] * 8 + [e_c])
    assert f["S"] == 9 and f["S_bd"] == 8 and f["S_in"] == 1
    assert f["S_rel"] == pytest.approx(9 / 8) and f["S_rel_in"] == pytest.approx(1 / 8)
    assert f["E"] == pytest.approx(e_vals.mean(), abs=1e-9)
    assert f["E_in"] == pytest.approx(e_c, abs=1e-9) and f["E_bd"] == pytest.approx(1.0, abs=1e-9)
    assert f["E_var"] == pytest.approx(e_vals.var(), abs=1e-9)
    assert f["E_var_in"] == 0 and f["E_var_bd"] == pytest.approx(0, abs=1e-12)
    assert f["E_rel"] == pytest.approx(e_vals.mean() * 9 / 8, abs=1e-9)
    assert f["E_rel_in"] == pytest.approx(e_c / 8, abs=1e-9)
    assert f["D"] == pytest.approx((8 * 1.0 + 0.9) / 9) and f["D_in"] == pytest.approx(0.9)
    assert f["V"] == pytest.approx((8 * 2 / 3 + 0.6) / 9) and f["V_bd"] == pytest.approx(2 / 3)
    assert f["V_var_rel"] == pytest.approx(np.var([2 / 3] * 8 + [0.6]) * 9 / 8)
    assert f["mean_x"] == 2 and f["mean_y"] == 2
    assert f["cprob0"] == pytest.approx((8 / 3 + 0.4) / 9) and f["cprob1"] == pytest.approx((8 / 3 + 0.3) / 9)
    # 32 (segment pixel, outside neighbour) pairs; 9 of them reach column 4 (class 1)
    assert f["ndist0"] == pytest.approx(23 / 32) and f["ndist1"] == pytest.approx(9 / 32)
    assert f["ndist2"] == 0


def test_ignore_pixels_never_in_a_segment():
    probs = probs_map(8, 8)
    probs[:, 2:6, :] = 1.0 / 3.0  # a high-entropy band
    ignore = np.zeros((8, 8), bool)
    ignore[:, 3:5] = True  # cuts the band in two
    sf = segment_features(probs, ignore, 0.7)
    assert sf.n == 2 and not sf.segments[ignore].any()
    # ignore pixels still count as (argmax) neighbours, as in meta-ood
    f = dict(zip(sf.names, sf.features[0]))
    assert f["ndist0"] == pytest.approx(1.0)
    # threshold 0 must not turn ignore pixels into segment pixels
    assert not segment_features(probs, ignore, 0.0).segments[ignore].any()


def test_no_segment_image():
    sf = segment_features(probs_map(6, 7).astype(np.float32), np.zeros((6, 7), bool))
    assert sf.n == 0 and sf.features.shape == (0, 43) and not sf.segments.any()
    probs19 = np.full((19, 4, 4), 0.001)
    probs19[0] = 1 - 0.018
    sf = segment_features(probs19, None)
    assert sf.features.shape == (0, 75) and len(sf.names) == 75


def test_whole_image_segment_has_no_nan():
    sf = segment_features(np.full((3, 4, 4), 1 / 3), None)
    f = dict(zip(sf.names, sf.features[0]))
    assert f["S"] == 16 and f["S_bd"] == 0 and f["S_rel"] == 0 and f["E_bd"] == 0
    assert f["ndist0"] == 0 and np.isfinite(sf.features).all()


def test_bad_input():
    with pytest.raises(ScoreError):
        segment_features(np.full((3, 4, 4), np.nan), None)
    with pytest.raises(ScoreError):
        segment_features(np.full((3, 4, 4), 1 / 3), np.zeros((4, 5), bool))


def test_feature_names_and_paper_order():
    names = feature_names(19)
    assert len(names) == len(set(names)) == 75
    assert names[:3] == ["E", "E_in", "E_bd"] and names[30:37] == ["S", "S_in", "S_bd", "S_rel",
                                                                    "S_rel_in", "mean_x", "mean_y"]
    order = paper_feature_order(names)
    assert [names[i] for i in order] == sorted(names)


# ---- independent per-segment reference ---------------------------------------------------------

def reference_features(probs, ignore, segments):
    c, h, w = probs.shape
    p = probs.astype(np.float64)
    ent = -xlogy(p, p).sum(axis=0) / np.log(c)  # not renormalized (float32 sums are not 1)
    ent[ignore] = 0
    srt = np.sort(p, axis=0)
    maps = {"E": ent, "D": 1 - srt[-1] + srt[-2], "V": 1 - srt[-1]}
    pred = np.argmax(p, axis=0)
    rows = []
    for k in range(1, segments.max() + 1):
        seg = segments == k
        bd = np.zeros_like(seg)
        ndist = np.zeros(c)
        for y, x in zip(*np.nonzero(seg)):
            for dy in (-1, 0, 1):
                for dx in (-1, 0, 1):
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w and not seg[yy, xx]:
                        bd[y, x] = True
                        ndist[pred[yy, xx]] += 1
        inner = seg & ~bd
        s, s_in, s_bd = seg.sum(), inner.sum(), bd.sum()
        rel = s / s_bd if s_bd else 0.0
        rel_in = s_in / s_bd if s_bd else 0.0
        row = []
        for name in ("E", "D", "V"):
            m = maps[name]
            mean, var = np.mean(m[seg]), np.var(m[seg])
            mi = np.mean(m[inner]) if s_in else 0.0
            vi = np.var(m[inner]) if s_in else 0.0
            mb = np.mean(m[bd]) if s_bd else 0.0
            vb = np.var(m[bd]) if s_bd else 0.0
            row += [mean, mi, mb, mean * rel, mi * rel_in, var, vi, vb, var * rel, vi * rel_in]
        ys, xs = np.nonzero(seg)
        row += [s, s_in, s_bd, rel, rel_in, ys.mean(), xs.mean()]
        row += [p[j][seg].mean() for j in range(c)]
        row += list(ndist / max(ndist.sum(), 1))
        rows.append(row)
    return np.array(rows).reshape(-1, 37 + 2 * c)


@pytest.mark.parametrize("seed, c", [(0, 19), (1, 19), (2, 19), (3, 150)])  # 150: class ids past int8
def test_features_match_per_segment_loop(seed, c):
    rng = np.random.default_rng(seed)
    h, w = 48, 64
    smooth = ndimage.gaussian_filter(rng.standard_normal((h, w)), 1.5)
    logits = rng.standard_normal((c, h, w)) * 0.5
    logits[rng.integers(0, c)] += 8 * (smooth < np.quantile(smooth, 0.7))
    probs = np.exp(logits - logits.max(0))
    probs /= probs.sum(0)
    probs = probs.astype(np.float32) if seed == 1 else probs
    ignore = np.zeros((h, w), bool)
    ignore[:5, :] = True
    ignore[20:30, 10:14] = True
    sf = segment_features(probs, ignore, 0.7)
    ref_ent = -xlogy(probs, probs.astype(np.float64)).sum(axis=0) / np.log(c)
    expect, _ = label_components((ref_ent >= 0.7) & ~ignore)
    assert sf.n > 5 and np.array_equal(sf.segments, expect)
    ref = reference_features(probs, ignore, sf.segments)
    assert (ref[:, 31] == 0).any()  # some segment without inner pixels is covered
    np.testing.assert_allclose(sf.features, ref, rtol=0, atol=1e-9)
    assert sf.features.dtype == np.float64 and np.isfinite(sf.features).all()
