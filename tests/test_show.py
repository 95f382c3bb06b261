"""`oodbench show`: the panel PNG (size, panel count, before/after meta classification differ where a segment
was removed), its meta predictions equal the run's (same out-of-fold procedure), unknown ids, file names."""
from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
from PIL import Image

from oodbench.commands.show import register
from oodbench.errors import OodbenchError
from oodbench.methods import METHODS, Method, MethodOutput, SegmentStage
from oodbench.show.panel import panel_data
from oodbench.evaluation.runner import run
from oodbench.show.visualize import (COLOURS, default_panel_path, figure_size, ground_truth_overlay, panel_names,
                                render_panel)

from layout_files import write_png
from real_layouts import LafObjectBlobs, write_laf

H, W, C = 64, 128, 19
OBJECT, BLOB, BACKGROUND = 230, 200, 25


def red_score(images: np.ndarray) -> np.ndarray:
    """Red channel mapped to [0, 1]: background 0, objects 1, the false blobs 0.85."""
    return np.clip((images[..., 0].astype(np.float32) - BACKGROUND) / (OBJECT - BACKGROUND), 0, 1)


class Red(Method):
    """No meta stage: the score is the red channel."""

    name = "test_red"

    def predict(self, images):
        return MethodOutput(red_score(images))


class RedMeta(Method):
    """Softmax probabilities that grow uniform with the red score, and the paper's segment stage at 0.7."""

    name = "test_red_meta"
    provides_probs = True
    segment_stage = SegmentStage(threshold=0.7)

    def predict(self, images):
        s = red_score(images)
        probs = np.repeat((s / C)[:, None], C, axis=1)
        probs[:, 0] += 1 - s
        return MethodOutput(s, probs.astype(np.float32))


@pytest.fixture
def scenes(tmp_path):
    """6 frames: two 10x10 objects (OoD) and one 5x5 blob (not OoD, a false positive segment) each."""
    root = tmp_path / "scenes"
    for i in range(6):
        image = np.full((H, W, 3), BACKGROUND, np.uint8)
        label = np.zeros((H, W), np.uint8)
        for y, x in ((8, 10 + i), (30, 60 + 2 * i)):
            image[y:y + 10, x:x + 10, 0] = OBJECT
            label[y:y + 10, x:x + 10] = 1
        image[45:50, 100 - i:105 - i, 0] = BLOB
        label[:2] = 255
        write_png(root / "images" / f"f{i}.png", image)
        write_png(root / "labels" / f"f{i}.png", label)
    return root


@pytest.fixture
def registered(monkeypatch):
    """The test methods under registry names for the command line, removed again afterwards."""
    monkeypatch.setitem(METHODS._items, "test_red", lambda **kw: Red())
    monkeypatch.setitem(METHODS._items, "test_red_meta", lambda **kw: RedMeta())


def show(*argv: str) -> int:
    p = argparse.ArgumentParser()
    register(p.add_subparsers(dest="command"))
    args = p.parse_args(["show", "--quiet", *argv])
    return args.func(args)


def panels(path) -> tuple[Image.Image, dict[str, list[int]]]:
    im = Image.open(path)
    im.load()
    return im.convert("RGB"), json.loads(im.text["oodbench-panels"])


def at(box: list[int], row: float, col: float) -> tuple[int, int]:
    """PNG pixel of frame position (row, col) inside a panel box."""
    left, top, right, bottom = box
    return round(left + (col + 0.5) * (right - left) / W), round(top + (row + 0.5) * (bottom - top) / H)


def test_meta_panel_png(scenes, registered, tmp_path, capsys):
    assert show("--method", "test_red_meta", "--dataset", "folder", "--data-root", str(scenes), "--id", "f2",
                "--out-dir", str(tmp_path / "panels")) == 0
    path = tmp_path / "panels" / "test_red_meta__folder__f2.png"
    assert path.is_file() and str(path) in capsys.readouterr().out
    image, boxes = panels(path)
    w_in, h_in = figure_size((H, W), with_segments=True)
    assert image.size == (round(w_in * 100), round(h_in * 100))
    assert list(boxes) == panel_names(True) and len(boxes) == 5
    pixels = np.asarray(image)
    for name, (left, top, right, bottom) in boxes.items():
        assert 0 <= left < right <= image.size[0] and 0 <= top < bottom <= image.size[1], name
        assert pixels[top:bottom, left:right].std() > 5, f"panel {name} is blank"
    # the false blob (rows 45-49, columns 98-102 in f2) is removed: yellow before, blue after
    before = pixels[at(boxes["before meta"], 47, 100)[::-1]].astype(int)
    after = pixels[at(boxes["after meta"], 47, 100)[::-1]].astype(int)
    assert before[2] < 100 < before[0] and after[2] > 150 > after[0], (before, after)
    # a kept true object (rows 8-17, columns 12-21) looks the same in both
    kept_before = pixels[at(boxes["before meta"], 12, 16)[::-1]]
    kept_after = pixels[at(boxes["after meta"], 12, 16)[::-1]]
    assert np.array_equal(kept_before, kept_after)


class CachedRedMeta(RedMeta):
    """Like model-based methods: float16 score maps and segments go through the run's score cache."""

    name = "test_cached_red_meta"
    cacheable = True


@pytest.mark.parametrize("cls", [RedMeta, CachedRedMeta])
def test_meta_predictions_are_the_runs(scenes, cls, tmp_path):
    """The panel's removed segments and counts come from the run's own cross-validation (and score cache)."""
    record, _ = run(cls(), dataset="folder", data_root=scenes, progress=False, components=False,
                    cache_root=tmp_path / "cache")
    data = panel_data(cls(), dataset="folder", data_root=scenes, image_id="f3", cache_root=tmp_path / "cache")
    assert (record["scores"]["cache"] is not None) == (cls is CachedRedMeta)
    segs = data.segments
    assert segs.n == 3 and segs.false_positive.tolist().count(True) == 1
    assert segs.removed[segs.false_positive].all() and not segs.removed[~segs.false_positive].any()
    assert segs.image_counts["fp_before"] == 1 and segs.image_counts["fp_after"] == 0
    seg = record["metrics"]["segments"]
    for key, value in segs.split_counts.items():
        assert seg[key] == value, key
    assert segs.protocol["protocol"] == seg["protocol"] and segs.protocol["n_splits"] == seg["n_splits"]
    assert segs.segments.max() == segs.n and segs.threshold == seg["segment_threshold"]


def test_panel_without_meta_stage(scenes, registered, tmp_path):
    out = tmp_path / "red.png"
    assert show("--method", "test_red", "--dataset", "folder", "--data-root", str(scenes), "--id", "f0",
                "--out", str(out), "--dpi", "50") == 0
    image, boxes = panels(out)
    w_in, h_in = figure_size((H, W), with_segments=False)
    assert image.size == (round(w_in * 50), round(h_in * 50))
    assert list(boxes) == ["image", "ground truth", "score"]
    assert not list(tmp_path.glob(".panel-*"))  # the temporary file was renamed, not left behind


def test_unknown_id_lists_close_ids(scenes, registered, tmp_path):
    with pytest.raises(OodbenchError, match=r"no image 'f22' in folder/test \(6 images\); closest ids: f2"):
        show("--method", "test_red", "--dataset", "folder", "--data-root", str(scenes), "--id", "f22",
             "--out", str(tmp_path / "x.png"))
    assert not (tmp_path / "x.png").exists()
    with pytest.raises(OodbenchError, match=r"closest ids: f0, f1, f2, f3, f4$"):  # substring, case-insensitive
        show("--method", "test_red", "--dataset", "folder", "--data-root", str(scenes), "--id", "F")


def test_default_panel_path():
    assert default_panel_path("entmax_meta", "synthetic", "02_Synth_Str_2_000000_000010").as_posix() == \
        "leaderboard/panels/entmax_meta__synthetic__02_Synth_Str_2_000000_000010.png"
    assert default_panel_path("m", "d", "city/frame 1", "out").as_posix() == "out/m__d__city_frame_1.png"


def test_checkpoint_option_reaches_the_method(scenes, monkeypatch, tmp_path):
    """`show --checkpoint` creates the method with those weights, as `run --checkpoint` does."""
    seen = {}
    monkeypatch.setitem(METHODS._items, "test_red", lambda **kw: seen.update(kw) or Red())
    show("--method", "test_red", "--dataset", "folder", "--data-root", str(scenes), "--id", "f2",
         "--checkpoint", str(tmp_path / "w.pt"), "--out", str(tmp_path / "x.png"))
    assert seen["checkpoint"] == str(tmp_path / "w.pt") and (tmp_path / "x.png").is_file()


def test_metaood_panel_shows_non_hazards_kept_for_segments(tmp_path):
    """Under mapping=metaood a random non-hazard is ignored by the pixel metrics but is in-distribution for the
    segments, where the one on it is a false positive: the ground-truth panel says so instead of 'ignored'."""
    stem = "04_Maurener_Weg_8_000000_000030"
    root = write_laf(tmp_path / "laf", "test", {stem: [2, 33], "02_Hanns_Klemm_Str_44_000001_000100": [17, 33]})
    data = panel_data(LafObjectBlobs(), dataset="lostandfound", data_root=root, image_id=stem, score_cache=False,
                      dataset_options={"mapping": "metaood", "expected": 2})
    assert data.label[5, 5] == 255 and data.segment_label[5, 5] == 0 and data.label[0, 0] == 255
    assert data.segments.n == 2 and data.segments.false_positive.tolist() == [False, True]
    rgb = ground_truth_overlay(None, data.label, data.segment_label)
    plain = ground_truth_overlay(None, data.label)
    assert np.array_equal(rgb[0, 0], plain[0, 0]) and not np.array_equal(rgb[5, 5], plain[5, 5])
    assert np.argmax(rgb[5, 5]) == np.argmax(COLOURS["segments_only"])  # purple: blue channel highest
    assert Image.open(render_panel(data, tmp_path / "panel.png")["path"]).size[0] > 0
