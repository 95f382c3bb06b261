"""Real-data loaders on small fixtures written in the real layouts and names, including broken copies."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodbench.data import DATASETS
from oodbench.data.cards import list_cards, load_card
from oodbench.data.cityscapes import CITYSCAPES_COUNTS, CityscapesDataset
from oodbench.data.coco_proxy import CocoProxyDataset
from oodbench.data.lostandfound import EMPTY_TEST_INDICES, LAF_COUNTS, LostAndFoundDataset
from oodbench.errors import DatasetError
from oodbench.evaluation.map_store import MapStore
from oodbench.evaluation.score_pass import score_pass

from layout_files import random_rgb, write_png
from real_layouts import LafObjectBlobs, write_laf

H, W = 8, 16


_png = write_png


def _rgb(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return random_rgb(seed, h, w)


LAF_STEMS = {"04_Maurener_Weg_8_000000_000030": [2, 33], "02_Hanns_Klemm_Str_44_000001_000100": [17]}


@pytest.fixture
def laf(tmp_path):
    return write_laf(tmp_path / "lost_and_found", "test", LAF_STEMS)


def test_laf_mappings(laf):
    smiyc = LostAndFoundDataset(laf, "test", expected=2)
    assert smiyc.ids == sorted(LAF_STEMS)
    s = smiyc[1]
    assert s.id == "04_Maurener_Weg_8_000000_000030" and s.meta["mapping"] == "smiyc" and s.meta["dataset"] == "lostandfound"
    assert s.label[0, 0] == 255 and s.label[4, 0] == 0
    assert s.label[5, 2] == 1 and s.label[5, 5] == 1  # hazard 2 and non-hazard 33 are both OoD
    meta = LostAndFoundDataset(laf, "test", mapping="metaood", expected=2)[1]
    assert meta.meta["mapping"] == "metaood"
    assert meta.label[5, 2] == 1 and meta.label[5, 5] == 255  # 33 (post, lying) is excluded
    assert set(np.unique(meta.label)) == {0, 1, 255}
    assert LostAndFoundDataset(laf, "test", mapping="metaood", expected=2).describe()["mapping"] == "metaood"


def test_laf_metaood_segments_keep_non_hazards_as_false_positives(laf):
    """meta-ood ignores random non-hazards in the pixel metrics but keeps them in its segments, where a segment on one
    is a false positive; SegmentMeIfYouCan's mapping makes every object OoD, so both segments are true positives."""
    targets = {}
    for mapping in ("metaood", "smiyc"):
        ds = LostAndFoundDataset(laf, "test", mapping=mapping, expected=2)
        sample = ds[ds.ids.index("04_Maurener_Weg_8_000000_000030")]  # hazard 2 at columns 2-3, non-hazard 33 at 5-6
        assert sample.label[5, 5] == (255 if mapping == "metaood" else 1)
        got = []
        score_pass(LafObjectBlobs(), [sample], 1, False, "test", [lambda item: got.append(item.segments)],
                   MapStore(None, 0.7))
        (segs,) = got
        assert segs.num_gt == (1 if mapping == "metaood" else 2)
        targets[mapping] = segs.targets.tolist()  # segments in raster order: hazard first
    assert targets == {"metaood": [0, 1], "smiyc": [0, 0]}
    assert LostAndFoundDataset(laf, "test", expected=2)[0].segment_label is None  # smiyc: the pixel labels serve


def test_laf_registered_and_default_count(laf):
    ds = DATASETS.create("lostandfound", root=laf, split="test", expected=False)
    assert len(ds) == 2 and ds.name == "lostandfound" and ds.component_track == "obstacle"
    with pytest.raises(DatasetError, match=r"found 2 test frames, expected 1203"):
        LostAndFoundDataset(laf, "test")
    with pytest.raises(DatasetError, match="unknown lostandfound split 'val'.*train, test, testValid, testNoKnown"):
        LostAndFoundDataset(laf, "val")
    with pytest.raises(DatasetError, match="unknown LostAndFound mapping 'fishy'"):
        LostAndFoundDataset(laf, "test", mapping="fishy")


def test_laf_subsets_need_full_list(laf):
    with pytest.raises(DatasetError, match="1203"):
        LostAndFoundDataset(laf, "testValid")


def test_laf_subset_rules():
    scenes = ["02_Hanns_Klemm_Str_44"] * 1000 + ["15_Rechbergstr_Deckenpfronn"] * 203
    files = [(None, None, f"{sc}_{i:06d}_000010") for i, sc in enumerate(scenes)]
    valid = LostAndFoundDataset._subset(files, "testValid", Path("x"))
    assert len(valid) == 1203 - len(EMPTY_TEST_INDICES)
    assert files[17] not in valid and files[16] in valid
    no_known = LostAndFoundDataset._subset(files, "testNoKnown", Path("x"))
    assert len(no_known) == 1000 - sum(i < 1000 for i in EMPTY_TEST_INDICES)
    assert not any(f[2].startswith("15_") for f in no_known)
    # the official rule also drops three bicycle frames by id prefix (of train-split scenes: a no-op on real test data)
    bikes = [(None, None, "01_Hanns_Klemm_Str_45_000006_000010"), (None, None, "10_Schlossberg_9_000004_000030"),
             (None, None, "10_Schlossberg_9_000005_000030")]
    kept = LostAndFoundDataset._subset(files[:-3] + bikes, "testNoKnown", Path("x"))
    assert [f[2] for f in kept if f[2].startswith(("01_", "10_"))] == ["10_Schlossberg_9_000005_000030"]


def _full_laf_test_stems() -> tuple[dict[str, list[int]], set[str]]:
    """1203 frame stems of the five real test scenes; the 143 with known classes (children) are scene 15's, which
    sorts after every empty-label index (17..793), so the subsets have their published sizes 1186 and 1043."""
    groups = [("02_Hanns_Klemm_Str_44", 0, 400, False), ("04_Maurener_Weg_8", 1, 300, False),
              ("05_Schafgasse_1", 2, 200, False), ("07_Festplatz_Flugfeld", 3, 160, False),
              ("15_Rechbergstr_Deckenpfronn", 4, 143, True)]
    stems, known = {}, set()
    for scene, seq, n, is_known in groups:
        for frame in range(n):
            stem = f"{scene}_{seq:06d}_{30 * frame:06d}"
            stems[stem] = [2] if frame % 2 else []
            if is_known:
                known.add(stem)
    return stems, known


def test_laf_subsets_on_a_complete_test_copy(tmp_path):
    stems, known = _full_laf_test_stems()
    root = write_laf(tmp_path / "lost_and_found", "test", stems, h=4, w=8)
    on_disk = sorted(p.name.replace("_leftImg8bit.png", "") for p in (root / "leftImg8bit/test").rglob("*.png"))
    assert len(on_disk) == 1203 and len(known) == 143
    test = DATASETS.create("lostandfound", root=root, split="test")
    valid = DATASETS.create("lostandfound", root=root, split="testValid")
    no_known = DATASETS.create("lostandfound", root=root, split="testNoKnown")
    assert (len(test), len(valid), len(no_known)) == (1203, 1186, 1043)
    assert test.ids == on_disk
    assert set(test.ids) - set(valid.ids) == {on_disk[i] for i in EMPTY_TEST_INDICES}
    assert on_disk[17] == "02_Hanns_Klemm_Str_44_000000_000510" and on_disk[17] not in valid.ids
    assert set(valid.ids) - set(no_known.ids) == known
    assert no_known.ids == [i for i in valid.ids if i not in known]  # order kept
    assert valid.fingerprint() != test.fingerprint() != no_known.fingerprint()
    assert no_known[0].id == "02_Hanns_Klemm_Str_44_000000_000000"


def test_laf_converted_copies_load(laf, tmp_path):
    """Copies converted to webp or jpg (as the SegmentMeIfYouCan loader accepts) load like the PNG release; where a
    frame exists in several formats, the PNG wins."""
    png = {p.name: p for p in (laf / "leftImg8bit/test").rglob("*.png")}
    want = {s.id: (s.image, s.label) for s in LostAndFoundDataset(laf, "test", expected=2)}
    for i, (name, path) in enumerate(sorted(png.items())):
        image = np.asarray(Image.open(path))
        if i == 0:
            Image.fromarray(image).save(path.with_suffix(".webp"), lossless=True)
            path.unlink()
        else:
            Image.fromarray(image).save(path.with_suffix(".jpg"), quality=95)
    ds = LostAndFoundDataset(laf, "test", expected=2)
    assert ds.ids == sorted(want) and sorted(f[0].suffix for f in ds.files) == [".png", ".webp"]
    for s in ds:
        np.testing.assert_array_equal(s.image, want[s.id][0])  # lossless webp, and the png over its jpg twin
        np.testing.assert_array_equal(s.label, want[s.id][1])
    png[min(png)].with_suffix(".webp").rename(tmp_path / "away.webp")
    with pytest.raises(DatasetError, match=r"1 label files have no image \(_leftImg8bit.png or _leftImg8bit.webp or "
                                           r"_leftImg8bit.jpg\)"):
        LostAndFoundDataset(laf, "test", expected=2)


def test_laf_wrong_label_value(laf):
    stem = "05_Schafgasse_1_000002_000200"
    write_laf(laf, "test", {stem: [250]})
    ds = LostAndFoundDataset(laf, "test", expected=3)
    with pytest.raises(DatasetError, match=rf"{stem}_gtCoarse_labelIds.png: label values \[250\]"):
        ds[ds.ids.index(stem)]


def test_laf_missing_label_names_image(laf):
    (laf / "gtCoarse/test/04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_gtCoarse_labelIds.png").unlink()
    with pytest.raises(DatasetError, match=r"1 images have no label file.*04_Maurener_Weg_8_000000_000030_leftImg8bit.png"):
        LostAndFoundDataset(laf, "test", expected=False)


def test_laf_label_without_image(laf):
    (laf / "leftImg8bit/test/04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"label files have no image.*04_Maurener_Weg_8_000000_000030_gtCoarse_labelIds"):
        LostAndFoundDataset(laf, "test", expected=False)


def test_laf_pairs_within_the_scene_folder(laf):
    """A frame is paired only with the label in its own scene folder; an id in two scene folders is an error."""
    stem = "04_Maurener_Weg_8_000000_000030"
    image = laf / f"leftImg8bit/test/04_Maurener_Weg_8/{stem}_leftImg8bit.png"
    stray = laf / f"leftImg8bit/test/05_Schafgasse_1/{stem}_leftImg8bit.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(image.read_bytes())
    with pytest.raises(DatasetError, match=rf"1 images have no label file.*05_Schafgasse_1/{stem}_leftImg8bit.png"):
        LostAndFoundDataset(laf, "test", expected=False)
    label = laf / f"gtCoarse/test/04_Maurener_Weg_8/{stem}_gtCoarse_labelIds.png"
    (laf / "gtCoarse/test/05_Schafgasse_1").mkdir(parents=True)
    (laf / f"gtCoarse/test/05_Schafgasse_1/{stem}_gtCoarse_labelIds.png").write_bytes(label.read_bytes())
    with pytest.raises(DatasetError, match=rf"1 frame ids appear in more than one subfolder: .*04_Maurener_Weg_8/{stem}"):
        LostAndFoundDataset(laf, "test", expected=False)


def test_laf_stray_file_count_mismatch(laf):
    write_laf(laf, "test", {"07_Festplatz_Flugfeld_000003_000050": [3]})
    with pytest.raises(DatasetError, match=r"found 3 test frames, expected 2"):
        LostAndFoundDataset(laf, "test", expected=2)


def test_laf_size_mismatch(laf):
    stem = "04_Maurener_Weg_8_000000_000030"
    _png(laf / f"leftImg8bit/test/04_Maurener_Weg_8/{stem}_leftImg8bit.png", _rgb(h=H, w=W + 2))
    ds = LostAndFoundDataset(laf, "test", expected=2)
    with pytest.raises(DatasetError, match=rf"{stem}_gtCoarse_labelIds.png: label size 16x8 differs"):
        ds[ds.ids.index(stem)]


def test_missing_root_says_what_and_where(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*leftImg8bit/ and gtCoarse/.*6d-vision"):
        LostAndFoundDataset(tmp_path / "nowhere", "test")
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*gtFine/.*cityscapes-dataset.com"):
        CityscapesDataset(tmp_path / "nowhere", "val")
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*ood_seg_train2017.*cocodataset.org"):
        CocoProxyDataset(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"leftImg8bit[/\\]train: no such folder"):
        CityscapesDataset(tmp_path / "empty", "train")


def test_cityscapes_label_ids_converted(tmp_path):
    root = tmp_path / "cityscapes"
    ids = np.array([[7, 8, 26, 0], [33, 9, 23, 24]], np.uint8).repeat(4, 0).repeat(4, 1)
    _png(root / "leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png", _rgb(h=8, w=16))
    _png(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelIds.png", ids)
    _png(root / "leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png", _rgb(1, h=8, w=16))
    _png(root / "gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png", ids)
    _png(root / "gtFine/val/lindau/lindau_000001_000019_gtFine_labelTrainIds.png", np.full((8, 16), 18, np.uint8))
    ds = DATASETS.create("cityscapes", root=root, split="val", expected=2)
    assert ds.ids == ["frankfurt_000000_000294", "lindau_000001_000019"] and ds.label_kind == "train_ids"
    expected = np.array([[0, 1, 13, 255], [18, 255, 10, 11]], np.uint8).repeat(4, 0).repeat(4, 1)
    np.testing.assert_array_equal(ds[0].label, expected)
    assert (ds[1].label == 18).all()  # generated trainIds win over labelIds
    with pytest.raises(DatasetError, match="found 2 val images, expected 500"):
        CityscapesDataset(root, "val")
    _png(root / "gtFine/val/lindau/lindau_000001_000019_gtFine_labelTrainIds.png", np.full((8, 16), 19, np.uint8))
    with pytest.raises(DatasetError, match=r"lindau_000001_000019_gtFine_labelTrainIds.png: label values \[19\]"):
        ds[1]


def test_cityscapes_broken_copies(tmp_path):
    root = tmp_path / "cityscapes"
    ids = np.full((8, 16), 7, np.uint8)
    for i, stem in enumerate(["frankfurt_000000_000294", "frankfurt_000000_000576"]):
        _png(root / f"leftImg8bit/val/frankfurt/{stem}_leftImg8bit.png", _rgb(i, h=8, w=16))
        _png(root / f"gtFine/val/frankfurt/{stem}_gtFine_labelIds.png", ids)
    label = root / "gtFine/val/frankfurt/frankfurt_000000_000576_gtFine_labelIds.png"
    label.unlink()
    with pytest.raises(DatasetError, match=r"1 images have no label file.*frankfurt_000000_000576_leftImg8bit.png"):
        CityscapesDataset(root, "val", expected=2)
    _png(label, ids)
    _png(root / "gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png", ids)
    with pytest.raises(DatasetError, match=r"label files have no image.*lindau_000001_000019_gtFine_labelIds"):
        CityscapesDataset(root, "val", expected=2)
    (root / "gtFine/val/lindau/lindau_000001_000019_gtFine_labelIds.png").unlink()
    _png(label, np.full((8, 18), 7, np.uint8))
    with pytest.raises(DatasetError, match=r"frankfurt_000000_000576_gtFine_labelIds.png: label size 18x8 differs"):
        CityscapesDataset(root, "val", expected=2)[1]


def test_coco_proxy(tmp_path):
    root = tmp_path / "coco"
    mask = np.zeros((8, 16), np.uint8)
    mask[2:5, 3:9] = 254
    for i, img_id in enumerate(["000000000009", "000000000025", "000000000030"]):
        (root / "train2017").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(i)).save(root / "train2017" / f"{img_id}.jpg", quality=95)
    (root / "annotations/ood_seg_train2017").mkdir(parents=True)
    with pytest.raises(DatasetError, match=r"ood_seg_train2017: no proxy masks.*prepare_coco_segmentation.py"):
        CocoProxyDataset(root)  # the preparation step has not run: not a training set of no images
    _png(root / "annotations/ood_seg_train2017/000000000009.png", mask)
    _png(root / "annotations/ood_seg_train2017/000000000030.png", mask)
    ds = DATASETS.create("coco_proxy", root=root, expected=2)
    assert ds.ids == ["000000000009", "000000000030"] and ds.label_kind == "proxy"
    np.testing.assert_array_equal(ds[0].label, mask)
    _png(root / "annotations/ood_seg_train2017/000000000031.png", mask)
    with pytest.raises(DatasetError, match=r"1 masks .* have no image <id>.jpg: 000000000031.png"):
        CocoProxyDataset(root)
    (root / "annotations/ood_seg_train2017/000000000031.png").unlink()
    _png(root / "annotations/ood_seg_train2017/000000000025.png", np.full((8, 16), 255, np.uint8))
    with pytest.raises(DatasetError, match=r"000000000025.png: label values \[255\]"):
        CocoProxyDataset(root)[1]
    _png(root / "annotations/ood_seg_train2017/000000000025.png", mask[:, :12])
    with pytest.raises(DatasetError, match=r"000000000025.png: label size 12x8 differs"):
        CocoProxyDataset(root)[1]


def test_cards_match_loader_constants():
    assert {"cityscapes", "lostandfound", "coco_proxy", "synthetic"} <= set(list_cards())
    laf = load_card("lostandfound")
    assert {k: v["count"] for k, v in laf["splits"].items()} == LAF_COUNTS
    assert laf["splits"]["testValid"]["exclude_indices"] == list(EMPTY_TEST_INDICES)
    cs = load_card("cityscapes")
    assert {k: v["count"] for k, v in cs["splits"].items()} == CITYSCAPES_COUNTS
    for name in list_cards():
        card = load_card(name)
        assert card["name"] == name and card["description"] and "layout" in card
