"""Hostile data and score folders at `oodbench evaluate` (issue 17): every file of the labels and scores folders is
used or reported (never a silent subset), broken score files, odd dtypes, NaN, FIFOs and decompression bombs each get
a clear answer. Each refusal: exit code 2, a message naming the file or value and the fix, no traceback, and the
--out folder unchanged."""
from __future__ import annotations

import io
import json
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main
from oodbench.data.base import SkippedFileWarning, read_label, read_rgb
from oodbench.errors import DatasetError

SHAPE = (6, 8)
IDS = ("a", "b")


def _tree(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture()
def split(tmp_path):
    """labels/<id>.png (0/1/255, both classes), scores/<id>.npy float32 and an --out folder with an earlier file."""
    lab, sco, out = tmp_path / "labels", tmp_path / "scores", tmp_path / "records"
    for d in (lab, sco, out):
        d.mkdir()
    rng = np.random.default_rng(0)
    labels = {}
    for i in IDS:
        label = rng.choice(np.array([0, 1, 255], np.uint8), size=SHAPE)
        label[0, :3] = (0, 1, 255)
        Image.fromarray(label).save(lab / f"{i}.png")
        np.save(sco / f"{i}.npy", rng.normal(size=SHAPE).astype(np.float32))
        labels[i] = label
    (out / "earlier.json").write_text('{"kept": true}')
    return lab, sco, out, labels


def _evaluate(lab, sco, out):
    return main(["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "X", "--out", str(out), "--quiet"])


def _refused(capsys, split, *needles):
    lab, sco, out, _ = split
    before = _tree(out)
    code = _evaluate(lab, sco, out)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.startswith("oodbench: error: "), err
    missing = [n for n in needles if n not in err]
    assert not missing, (missing, err)
    assert _tree(out) == before
    return err


def _record(capsys, split):
    lab, sco, out, _ = split
    assert _evaluate(lab, sco, out) == 0, capsys.readouterr().err
    (path,) = [p for p in out.glob("*.json") if p.name != "earlier.json"]
    record = json.loads(path.read_text())
    path.unlink()
    return record


def _label(path, value=0):
    Image.fromarray(np.full(SHAPE, value, np.uint8)).save(path)


# -- 1. every file of the labels and scores folders is used or reported ---------------------------------------------
@pytest.mark.parametrize("case", ["jpg", "subfolder", "other_kind", "two_labels_one_id"])
def test_labels_folder_entries_are_used_or_refused(case, split, capsys):
    lab, sco, _, _ = split
    np.save(sco / "c.npy", np.zeros(SHAPE, np.float32))
    if case == "jpg":
        Image.fromarray(np.zeros(SHAPE, np.uint8)).save(lab / "c.jpg")
        needles = [str(lab), "c.jpg", "JPEG", "lossy", "as PNG"]
    elif case == "subfolder":
        (lab / "more").mkdir()
        _label(lab / "more" / "c.png")
        needles = [str(lab), "more/", "subfolder", "may hold only label maps <id>.png", "move"]
    elif case == "other_kind":
        _label(lab / "c.png")
        (lab / "notes.txt").write_text("x")
        needles = [str(lab), "notes.txt", "may hold only label maps <id>.png", "move the other entries out"]
    else:
        _label(lab / "c.png")
        _label(lab / "c.PNG")
        needles = [str(lab), "two label maps for sample 'c'", "c.PNG", "c.png", "keep one"]
    _refused(capsys, split, *needles)
    # `data check` reports the same problem instead of "OK"
    assert main(["data", "check", "folder", "--data-root", str(lab), "--split", "test"]) == 1
    report = capsys.readouterr().out
    assert "PROBLEMS FOUND" in report and needles[1] in report


def test_label_suffix_matches_in_any_case(split, capsys):
    lab, sco, _, _ = split
    _label(lab / "c.PNG")
    with open(sco / "c.NPY", "wb") as fh:  # np.save would append .npy to the name
        np.save(fh, np.zeros(SHAPE, np.float32))
    record = _record(capsys, split)
    assert record["dataset"]["num_images"] == 3 and record["method"]["score_format"] == "npy"


def test_score_file_without_label_is_refused(split, capsys):
    _, sco, _, _ = split
    for i in ("zz", "c"):
        np.save(sco / f"{i}.npy", np.zeros(SHAPE, np.float32))
    _refused(capsys, split, str(sco), "2 score file(s) have no label map", "c.npy, zz.npy",
             "add the missing label maps, or move these score files out")


def test_two_score_files_for_one_id_are_refused(split, capsys):
    _, sco, _, _ = split
    np.savez(sco / "a.npz", np.ones(SHAPE, np.float32))
    _refused(capsys, split, str(sco), "two score files for sample 'a'", "a.npy", "a.npz", "keep one")


def test_missing_score_lists_the_others(split, capsys):
    _, sco, _, _ = split
    for i in IDS:
        (sco / f"{i}.npy").unlink()
    (sco / "a.pt").write_bytes(b"torch")
    with pytest.warns(SkippedFileWarning, match=r"a\.pt"):
        _refused(capsys, split, "no score file for sample 'a'", str(sco / "a.npy"), "found only a.pt",
                 "1 more sample(s) lack one too: b")


def test_other_files_in_the_scores_folder_are_reported(split, capsys):
    _, sco, _, _ = split
    (sco / "README.md").write_text("how these were made")
    (sco / "old").mkdir()
    with pytest.warns(SkippedFileWarning, match=r"2 entries are not score maps .*README\.md, old/"):
        assert _record(capsys, split)["dataset"]["num_images"] == 2


def test_smiyc_layout_in_both_places_is_ambiguous(split, capsys, tmp_path):
    lab, _, out, _ = split
    outputs = tmp_path / "outputs"
    for d in (outputs / "M" / "D", outputs / "anomaly_p" / "M" / "D"):
        d.mkdir(parents=True)
    before = _tree(out)
    assert main(["evaluate", "--labels", str(lab), "--scores", str(outputs), "--smiyc", "M/D", "--name", "X",
                 "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(outputs / "M" / "D") in err and "anomaly_p" in err and "unclear" in err
    assert _tree(out) == before


def test_stray_scores_of_a_registered_dataset_warn(tmp_path):
    from oodbench.evaluation.precomputed import PrecomputedScores

    np.save(tmp_path / "a.npy", np.zeros(SHAPE, np.float32))
    np.save(tmp_path / "val_1.npy", np.zeros(SHAPE, np.float32))

    class Split:
        name, split, root, ids = "lostandfound", "test", tmp_path, ["a"]

    method = PrecomputedScores(tmp_path, "X")
    method.bind(Split())
    with pytest.warns(SkippedFileWarning, match=r"val_1\.npy.*other splits"):
        method.setup()


# -- 2. broken score files --------------------------------------------------------------------------------------------
def _npz_bytes():
    buf = io.BytesIO()
    np.savez_compressed(buf, np.ones(SHAPE, np.float32))
    return buf.getvalue()


@pytest.mark.parametrize("case", ["empty_npy", "truncated_npz", "truncated_npy", "npz_named_npy", "text_npy",
                                  "object_npy", "hdf5_group", "hdf5_string", "hdf5_truncated", "int_npy"])
def test_broken_score_files(case, split, capsys):
    _, sco, _, _ = split
    (sco / "a.npy").unlink()
    if case == "empty_npy":
        path, needles = sco / "a.npy", ["is empty (0 bytes)", "np.save"]
        path.write_bytes(b"")
    elif case == "truncated_npz":
        path, needles = sco / "a.npz", ["cannot be read", "BadZipFile", "truncated", "np.savez"]
        path.write_bytes(_npz_bytes()[:60])
    elif case == "truncated_npy":
        path, needles = sco / "a.npy", ["cannot be read", "truncated", "np.save"]
        np.save(path, np.ones(SHAPE, np.float32))
        path.write_bytes(path.read_bytes()[:150])
    elif case == "npz_named_npy":
        path, needles = sco / "a.npy", ["is a .npz file", "rename it to a.npz"]
        path.write_bytes(_npz_bytes())
    elif case == "text_npy":
        path, needles = sco / "a.npy", ["no .npy file", "b'0.1 0.2 '", "np.save"]
        path.write_text("0.1 0.2 0.3")
    elif case == "object_npy":
        path, needles = sco / "a.npy", ["Object arrays", "float16/float32", "np.save"]
        np.save(path, np.full(SHAPE, None, dtype=object), allow_pickle=True)
    elif case == "int_npy":
        path, needles = sco / "a.npy", ["dtype int64", "store float16 or float32"]
        np.save(path, np.ones(SHAPE, np.int64))
    else:
        h5py = pytest.importorskip("h5py")
        path = sco / "a.hdf5"
        with h5py.File(path, "w") as f:
            if case == "hdf5_group":
                f.create_group("value").create_dataset("scores", data=np.ones(SHAPE, np.float32))
                needles = ["'value' is an HDF5 group holding ['scores']", "not a dataset", "create_dataset('value'"]
            elif case == "hdf5_string":
                f["value"] = "not scores"
                needles = ["'value' holds text", "float16 or float32"]
            else:
                f.create_dataset("value", data=np.ones(SHAPE, np.float32))
                needles = ["cannot be read", "truncated", "create_dataset('value'"]
        if case == "hdf5_truncated":
            path.write_bytes(path.read_bytes()[:1000])
    _refused(capsys, split, str(path), "sample 'a'", *needles)


# -- 3. byte order and NaN --------------------------------------------------------------------------------------------
def test_big_endian_scores_are_read_as_native(split, capsys):
    _, sco, _, _ = split
    native = _record(capsys, split)
    for i in IDS:
        np.save(sco / f"{i}.npy", np.load(sco / f"{i}.npy").astype(">f4"))
    swapped = _record(capsys, split)
    assert swapped["metrics"] == native["metrics"] and swapped["method"]["score_dtype"] == "float32"


def test_nan_on_ignore_pixels_is_accepted(split, capsys):
    _, sco, _, labels = split
    finite = _record(capsys, split)
    scores = np.load(sco / "a.npy")
    scores[labels["a"] == 255] = np.nan
    scores[0, 2] = -np.inf  # label 255 there too
    np.save(sco / "a.npy", scores)
    masked = _record(capsys, split)
    assert masked["metrics"]["pixel"] == finite["metrics"]["pixel"]
    assert masked["method"]["nonfinite_on_ignore_maps"] == 1 and finite["method"]["nonfinite_on_ignore_maps"] == 0


def test_nan_on_evaluated_pixels_is_refused_exactly(split, capsys):
    _, sco, _, labels = split
    scores = np.load(sco / "b.npy")
    scores[labels["b"] == 255] = np.nan  # allowed
    scores[0, 1] = np.nan  # label 1: not allowed
    np.save(sco / "b.npy", scores)
    _refused(capsys, split, str(sco / "b.npy"), "1 NaN/inf value(s) on evaluated pixels", "row 0, column 1",
             "label 1", "allowed only on ignore pixels (label 255)", "np.nan_to_num")


def test_nan_in_a_map_to_resize_is_refused(split, capsys):
    lab, sco, out, _ = split
    np.save(sco / "a.npy", np.full((3, 4), np.nan, np.float32))
    before = _tree(out)
    assert main(["evaluate", "--labels", str(lab), "--scores", str(sco), "--name", "X", "--out", str(out),
                 "--quiet", "--resize"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and str(sco / "a.npy") in err and "resizing would spread them" in err
    assert _tree(out) == before


# -- 4. FIFOs are skipped, never opened -------------------------------------------------------------------------------
fifo = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")


@fifo
@pytest.mark.timeout(60)
def test_fifos_in_the_data_folders_are_skipped_and_reported(split, capsys):
    lab, sco, _, _ = split
    os.mkfifo(lab / "c.png")
    os.mkfifo(sco / "c.npy")
    with pytest.warns(SkippedFileWarning) as caught:
        record = _record(capsys, split)
    text = " ".join(str(w.message) for w in caught)
    assert "c.png (a FIFO)" in text and "c.npy (a FIFO)" in text and "without opening it" in text
    assert record["dataset"]["num_images"] == 2


@fifo
@pytest.mark.timeout(60)
def test_data_check_reports_a_fifo_as_a_problem(split, capsys):
    lab = split[0]
    os.mkfifo(lab / "c.png")
    assert main(["data", "check", "folder", "--data-root", str(lab), "--split", "test"]) == 1
    out = capsys.readouterr().out
    assert "c.png (a FIFO)" in out and "PROBLEMS" in out.upper()


@fifo
@pytest.mark.timeout(60)
def test_a_fifo_in_place_of_a_score_file_is_refused(split, capsys):
    _, sco, _, _ = split
    (sco / "a.npy").unlink()
    os.mkfifo(sco / "a.npy")
    with pytest.warns(SkippedFileWarning, match="a FIFO"):
        _refused(capsys, split, "no score file for sample 'a'", str(sco / "a.npy"), "found only a.npy (a FIFO)")


@fifo
@pytest.mark.timeout(60)
def test_readers_refuse_non_regular_files(tmp_path):
    os.mkfifo(tmp_path / "x.png")
    for reader in (read_label, read_rgb):
        with pytest.raises(DatasetError, match=r"x\.png: is a FIFO, not a regular file, so it was not opened"):
            reader(tmp_path / "x.png")


# -- 5. decompression bombs -------------------------------------------------------------------------------------------
def _png_header_only(path, width, height):
    """A PNG whose header claims width x height (8-bit grey): PIL checks the size before decoding any pixel."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("side", [20000, 12000])  # beyond PIL's error limit, and in its warning-only range
def test_decompression_bomb_label_is_refused(side, split, capsys):
    lab, _, _, _ = split
    _png_header_only(lab / "a.png", side, side)
    _refused(capsys, split, str(lab / "a.png"), f"{side * side:,} pixels", "over the limit of 89,478,485 pixels",
             "PIL.Image.MAX_IMAGE_PIXELS", "downscale it")


def test_decompression_bomb_image_is_refused(tmp_path):
    _png_header_only(tmp_path / "big.png", 12000, 12000)
    with pytest.raises(DatasetError, match=r"big\.png: the image has 144,000,000 pixels, over the limit"):
        read_rgb(tmp_path / "big.png")
