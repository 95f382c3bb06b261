"""RoadAnomaly, SegmentMeIfYouCan, Fishyscapes and Hugging Face loaders on small fixtures written in the real
layouts and file names, including broken copies, plus one end-to-end run per loader."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from oodbench.data import DATASETS
from oodbench.data.cards import load_card
from oodbench.data.fishyscapes import FS_LAF_COUNTS, FishyscapesLafDataset, FishyscapesStaticDataset
from oodbench.data.roadanomaly import ROADANOMALY_COUNTS, RoadAnomalyDataset
from oodbench.data.smiyc import TRACKS
from oodbench.errors import DatasetError

from layout_files import random_rgb, write_png
from real_layouts import (ANOMALY_TEST, ANOMALY_VAL, FS_STEMS, H, OBSTACLE_TEST, OBSTACLE_VAL, RA_NAMES, W,
                          label_map as _label, save_image as _save_image, write_fs_laf, write_metaood_fishyscapes,
                          write_preprocessed,
                          write_huggingface, write_roadanomaly, write_smiyc, write_static)

_png = write_png


def _rgb(seed: int = 0, h: int = H, w: int = W) -> np.ndarray:
    return random_rgb(seed, h, w)


# -- RoadAnomaly ---------------------------------------------------------------------------------
@pytest.fixture
def ra(tmp_path):
    write_roadanomaly(tmp_path / "ra" / "RoadAnomaly_jpg")
    return tmp_path / "ra"


def test_roadanomaly_ids_mapping_counts(ra):
    ds = DATASETS.create("roadanomaly", root=ra, split="test", expected=3)
    assert ds.name == "roadanomaly" and ds.ids == sorted(RA_NAMES)
    s = ds[0]
    assert s.image.shape == (H, W, 3) and s.label.shape == (H, W)
    assert s.label[0, 0] == 0 and s.label[5, 12] == 1 and set(np.unique(s.label)) == {0, 1}  # no void
    # the top folder itself, and dataset_RoadAnomaly/, are accepted as well
    assert RoadAnomalyDataset(ra / "RoadAnomaly_jpg", expected=3).ids == ds.ids
    with pytest.raises(DatasetError, match=r"found 3 test frames, expected 60"):
        RoadAnomalyDataset(ra)
    assert ROADANOMALY_COUNTS == {"test": 60}
    with pytest.raises(DatasetError, match=r"unknown roadanomaly split 'val'; valid splits: test"):
        RoadAnomalyDataset(ra, "val")


def test_roadanomaly_other_top_folder(tmp_path):
    write_roadanomaly(tmp_path / "x" / "dataset_RoadAnomaly", RA_NAMES[:1])
    assert RoadAnomalyDataset(tmp_path / "x", expected=1).ids == RA_NAMES[:1]


def test_roadanomaly_pebal_preprocessed_copy(ra, tmp_path):
    """PEBAL's copy: original/<name>.jpg + labels/<name>.png with 0 background, 1 anomaly; the same frames and
    canonical labels as the release (whose anomaly is 2)."""
    release = RoadAnomalyDataset(ra, expected=3)
    top = tmp_path / "pebal" / "road_anomaly"
    for s in release:
        _save_image(top / "original" / f"{s.id}.jpg", s.image)
        _png(top / "labels" / f"{s.id}.png", s.label)  # canonical 0/1 is PEBAL's encoding
    ds = RoadAnomalyDataset(tmp_path / "pebal", expected=3)
    assert ds.ids == release.ids and ds.describe()["layout"] == "preprocessed" and release.describe()["layout"] == "release"
    for a, b in zip(ds, release):
        np.testing.assert_array_equal(a.label, b.label)
        assert a.image.shape == b.image.shape
    _png(top / "labels" / f"{release.ids[0]}.png", _label((0, 2)))
    with pytest.raises(DatasetError, match=rf"{release.ids[0]}.png: label values \[2\].*0 background, 1 anomaly"):
        ds[0]
    (top / "original" / f"{release.ids[1]}.jpg").unlink()
    with pytest.raises(DatasetError, match=rf"1 labels have no image .* in original/: labels/{release.ids[1]}.png"):
        RoadAnomalyDataset(tmp_path / "pebal", expected=3)


def test_roadanomaly_broken(ra, tmp_path):
    top = ra / "RoadAnomaly_jpg"
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*frame_list.json.*epfl"):
        RoadAnomalyDataset(tmp_path / "nowhere")
    (top / "frames" / "cones03.labels" / "labels_semantic.png").unlink()
    with pytest.raises(DatasetError, match=r"missing: .*cones03.labels[/\\]labels_semantic.png"):
        RoadAnomalyDataset(ra, expected=3)
    _png(top / "frames" / "cones03.labels" / "labels_semantic.png", _label((0, 1)))
    ds = RoadAnomalyDataset(ra, expected=3)
    with pytest.raises(DatasetError, match=r"cones03.labels[/\\]labels_semantic.png: label values \[1\]"):
        ds[2]
    Image.fromarray(_rgb(9)).save(top / "frames" / "stray_frame.jpg")
    with pytest.raises(DatasetError, match=r"1 images are not listed in frame_list.json: stray_frame.jpg"):
        RoadAnomalyDataset(ra, expected=3)
    (top / "frames" / "stray_frame.jpg").unlink()
    _png(top / "frames" / "cones03.labels" / "labels_semantic.png", _label((0, 2), w=W + 2))
    with pytest.raises(DatasetError, match=r"labels_semantic.png: label size 66x32 differs from image cones03.jpg"):
        RoadAnomalyDataset(ra, expected=3)[2]
    (top / "frames" / "cones03.jpg").unlink()
    with pytest.raises(DatasetError, match=r"missing: .*cones03.jpg"):
        RoadAnomalyDataset(ra, expected=3)


# -- SegmentMeIfYouCan ---------------------------------------------------------------------------
@pytest.fixture
def smiyc(tmp_path):
    return write_smiyc(tmp_path / "smiyc")


def test_smiyc_anomaly_track(smiyc):
    val = DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation", expected=2)
    assert val.name == "smiyc_roadanomaly21" and val.ids == ANOMALY_VAL
    lab = val[0].label
    assert lab[0, 0] == 255 and lab[5, 12] == 0 and lab[11, 12] == 1
    assert lab[17, 12] == 255  # a value other than 0/1/255 is ignored, as in the official code
    test = DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="test", expected=3)
    assert test.ids == ANOMALY_TEST and test[0].label is None and test[0].image.shape == (H, W, 3)
    assert TRACKS["smiyc_roadanomaly21"]["counts"] == {"validation": 10, "test": 100}
    with pytest.raises(DatasetError, match=r"found 2 validation frames, expected 10"):
        DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation")
    with pytest.raises(DatasetError, match=r"unknown smiyc_roadanomaly21 split 'val'; valid splits: validation, test"):
        DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="val")


def test_smiyc_obstacle_track_splits(smiyc):
    val = DATASETS.create("smiyc_roadobstacle21", root=smiyc, split="validation", expected=2)
    assert val.ids == OBSTACLE_VAL  # validation_19, validation_21..29 excluded as in the official code
    assert set(np.unique(val[1].label)) == {0, 1, 255}
    test = DATASETS.create("smiyc_roadobstacle21", root=smiyc, split="test", expected=3)
    assert test.ids == sorted(OBSTACLE_TEST)  # night and snowstorm extras excluded
    assert TRACKS["smiyc_roadobstacle21"]["counts"] == {"validation": 30, "test": 327}
    # the track folder itself is accepted as root
    assert DATASETS.create("smiyc_roadobstacle21", root=smiyc / "dataset_ObstacleTrack", split="test", expected=3).ids == test.ids


def test_smiyc_broken(smiyc, tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*dataset_AnomalyTrack/images.*segmentmeifyoucan"):
        DATASETS.create("smiyc_roadanomaly21", root=tmp_path / "nowhere", split="validation")
    labels = smiyc / "dataset_AnomalyTrack/labels_masks"
    (labels / "validation0001_labels_semantic.png").unlink()
    with pytest.raises(DatasetError, match=r"validation0001_labels_semantic.png: missing label of validation frame validation0001.jpg"):
        DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation", expected=2)
    _png(labels / "validation0001_labels_semantic.png", _label((0, 1)))
    _png(labels / "validation0002_labels_semantic.png", _label((0, 1)))
    with pytest.raises(DatasetError, match=r"1 validation labels have no image.*validation0002_labels_semantic.png"):
        DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation", expected=2)
    (labels / "validation0002_labels_semantic.png").unlink()
    _save_image(smiyc / "dataset_AnomalyTrack/images/validation0002.jpg", _rgb(5))
    _png(labels / "validation0002_labels_semantic.png", _label((0, 1), w=W - 4))
    with pytest.raises(DatasetError, match=r"found 3 validation frames, expected 2"):
        DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation", expected=2)
    ds = DATASETS.create("smiyc_roadanomaly21", root=smiyc, split="validation", expected=3)
    with pytest.raises(DatasetError, match=r"validation0002_labels_semantic.png: label size 60x32 differs"):
        ds[2]
    _save_image(smiyc / "dataset_ObstacleTrack/images/parking-lot_0001.webp", _rgb(6))
    with pytest.raises(DatasetError, match=r"parking-lot_0001.webp: unknown scene 'parking-lot'"):
        DATASETS.create("smiyc_roadobstacle21", root=smiyc, split="test", expected=3)


# -- Fishyscapes Lost & Found --------------------------------------------------------------------
@pytest.fixture
def fs_laf(tmp_path):
    return write_fs_laf(tmp_path / "fishyscapes_lostandfound", tmp_path / "lost_and_found")


def test_fs_laf_release(fs_laf):
    root, laf = fs_laf
    ds = DATASETS.create("fishyscapes_laf", root=root, split="val", laf_root=laf, expected=2)
    assert ds.name == "fishyscapes_laf" and ds.ids == sorted(FS_STEMS) and ds.describe()["layout"] == "release"
    assert ds.component_track == "anomaly"  # SegmentMeIfYouCan's size filters for FishyLAFAnomaly-val: 500/100 px
    s = ds[1]
    assert s.image.shape == (H, W, 3) and set(np.unique(s.label)) == {0, 1, 255}
    assert s.label[5, 12] == 1 and s.label[11, 12] == 255
    labels_only = FishyscapesLafDataset(root, expected=2)
    assert labels_only[0].image is None and labels_only[0].label.shape == (H, W)
    assert labels_only.fingerprint() != ds.fingerprint() and len(ds.fingerprint()) == 64
    assert FS_LAF_COUNTS == {"val": 100}
    with pytest.raises(DatasetError, match=r"found 2 val frames, expected 100"):
        FishyscapesLafDataset(root, laf_root=laf)
    with pytest.raises(DatasetError, match=r"unknown fishyscapes_laf split 'test'; valid splits: val"):
        FishyscapesLafDataset(root, "test")
    frame = laf / "leftImg8bit/test/04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_leftImg8bit.png"
    want = ds[0].image
    Image.open(frame).save(frame.with_suffix(".webp"), lossless=True)  # a converted LostAndFound copy
    frame.unlink()
    np.testing.assert_array_equal(FishyscapesLafDataset(root, laf_root=laf, expected=2)[0].image, want)


def test_fs_laf_broken(fs_laf, tmp_path):
    root, laf = fs_laf
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*_labels.png.*fishyscapes.com"):
        FishyscapesLafDataset(tmp_path / "nowhere")
    img = laf / "leftImg8bit/test/04_Maurener_Weg_8/04_Maurener_Weg_8_000000_000030_leftImg8bit.png"
    img.unlink()
    with pytest.raises(DatasetError, match=r"1 LostAndFound frames are missing.*04_Maurener_Weg_8_000000_000030_leftImg8bit.png"):
        FishyscapesLafDataset(root, laf_root=laf, expected=2)
    _png(img, _rgb(0, w=W + 2))
    with pytest.raises(DatasetError, match=r"0000_04_Maurener_Weg_8_000000_000030_labels.png: label size 64x32 differs"):
        FishyscapesLafDataset(root, laf_root=laf, expected=2)[0]
    _png(root / "0001_01_Hanns_Klemm_Str_45_000002_000060_labels.png", _label((0, 2)))
    with pytest.raises(DatasetError, match=r"0001_01_Hanns_Klemm_Str_45_000002_000060_labels.png: label values \[2\]"):
        FishyscapesLafDataset(root, expected=2)[1]
    _png(root / "stray_labels.png", _label((0, 1)))
    with pytest.raises(DatasetError, match=r"stray_labels.png: label file name does not match"):
        FishyscapesLafDataset(root, expected=2)


def test_fs_preprocessed_layout(tmp_path):
    root = tmp_path / "fs"
    write_preprocessed(root / "LostAndFound", ["0000", "0001", "0002"])
    ds = FishyscapesLafDataset(root, expected=3)
    assert ds.ids == ["0000", "0001", "0002"] and ds.describe()["layout"] == "preprocessed"
    assert ds[2].image.shape == (H, W, 3) and ds[2].label[5, 12] == 1
    _png(root / "LostAndFound/original/0003.png", _rgb(3))
    with pytest.raises(DatasetError, match=r"1 images of original/ have no label <id>.png: original/0003.png"):
        FishyscapesLafDataset(root, expected=3)
    (root / "LostAndFound/original/0003.png").unlink()
    (root / "LostAndFound/original/0001.png").unlink()
    with pytest.raises(DatasetError, match=r"1 labels have no image \(.png\) in original/: labels/0001.png"):
        FishyscapesLafDataset(root, expected=3)
    write_preprocessed(root / "Static", ["0000"])
    st = FishyscapesStaticDataset(root / "Static", expected=1, version="v2")
    assert st.describe()["version"] == "v2" and st[0].meta["version"] == "v2"


def test_fs_metaood_layout(tmp_path):
    """meta-ood's copy: <root>/{LostAndFound,Static}/**/<name>.png labels beside <name>.jpg images."""
    root = tmp_path / "fishyscapes"
    write_metaood_fishyscapes(root / "LostAndFound", ["0001", "0000", "scene/0002"])
    write_metaood_fishyscapes(root / "Static", ["0000"])
    ds = FishyscapesLafDataset(root, expected=3)
    assert ds.ids == ["0000", "0001", "0002"] and ds.describe()["layout"] == "metaood"
    assert ds.describe()["images"] == "<name>.jpg beside the labels"
    sample = ds[2]
    assert np.array_equal(sample.image, np.asarray(Image.open(root / "LostAndFound/scene/0002.jpg").convert("RGB")))
    assert np.array_equal(sample.label, _label((0, 1, 255)))
    static = FishyscapesStaticDataset(root, expected=1)
    assert static.ids == ["0000"] and static.describe()["layout"] == "metaood"
    assert FishyscapesLafDataset(root / "LostAndFound", expected=3).ids == ds.ids  # root at the split folder
    (root / "LostAndFound/0001.jpg").unlink()
    with pytest.raises(DatasetError, match=r"1 labels have no <name>.jpg beside them .*: 0001.png; re-extract"):
        FishyscapesLafDataset(root, expected=3)
    (root / "LostAndFound/0001.png").rename(root / "LostAndFound/moved.jpg")
    with pytest.raises(DatasetError, match=r"1 images have no <name>.png beside them .*: moved.jpg"):
        FishyscapesLafDataset(root, expected=3)
    (root / "LostAndFound/moved.jpg").unlink()
    write_metaood_fishyscapes(root / "LostAndFound/other", ["0002"])
    with pytest.raises(DatasetError, match=r"frame '0002' lies in two folders"):
        FishyscapesLafDataset(root, expected=2)
    (tmp_path / "other").mkdir()
    _save_image(tmp_path / "other/photo.jpg", _rgb())
    with pytest.raises(DatasetError, match=r"nor meta-ood's \(<name>.png labels beside <name>.jpg images"):
        FishyscapesLafDataset(tmp_path / "other")


# -- Fishyscapes Static --------------------------------------------------------------------------
@pytest.fixture
def static(tmp_path):
    return write_static(tmp_path / "fs_val_v3", tmp_path / "cityscapes")


def test_fs_static_overlay_and_version(static):
    root, cs = static
    ds = DATASETS.create("fishyscapes_static", root=root, split="val", cityscapes_root=cs, expected=2)
    assert ds.name == "fishyscapes_static" and ds.ids == ["0000_frankfurt_000000_000294", "0001_lindau_000001_000019"]
    s = ds[0]
    assert s.image[5, 12, 0] == 255 and s.image[0, 0, 0] == 0 and s.image[20, 30, 1] == 100  # clip(base + rgb)
    assert s.label[5, 12] == 1 and s.label[11, 12] == 255 and s.meta["version"] == "v3"
    d3 = ds.describe()
    assert d3["name"] == "fishyscapes_static" and d3["version"] == "v3"
    d1 = FishyscapesStaticDataset(root, version="v1", cityscapes_root=cs, expected=2).describe()
    assert d1["version"] == "v1" and d1["fingerprint"] != d3["fingerprint"]
    assert FishyscapesStaticDataset(root).describe()["num_images"] == 2  # no default count (unverified)
    with pytest.raises(DatasetError, match=r"unknown fishyscapes_static version 'v4'; valid versions: v1, v2, v3"):
        FishyscapesStaticDataset(root, version="v4")


def test_fs_static_broken(static, tmp_path):
    root, cs = static
    with pytest.raises(DatasetError, match=r"nowhere: no such folder.*rgb.npz.*fishyscapes.com"):
        FishyscapesStaticDataset(tmp_path / "nowhere")
    np.savez(root / "0002_munster_000000_000019_rgb.npz", rgb=np.zeros((H, W, 3), np.int16))
    with pytest.raises(DatasetError, match=r"1 overlays have no label file: 0002_munster_000000_000019_rgb.npz"):
        FishyscapesStaticDataset(root, cityscapes_root=cs, expected=2)
    (root / "0002_munster_000000_000019_rgb.npz").unlink()
    (root / "0001_lindau_000001_000019_rgb.npz").unlink()
    with pytest.raises(DatasetError, match=r"0001_lindau_000001_000019_labels.png: no overlay 0001_\*rgb.npz"):
        FishyscapesStaticDataset(root, cityscapes_root=cs, expected=2)
    np.savez(root / "0001_lindau_000001_000019_rgb.npz", rgb=np.zeros((H, W + 2, 3), np.int16))
    with pytest.raises(DatasetError, match=r"0001_lindau_000001_000019_rgb.npz: overlay shape \(32, 66, 3\) differs"):
        FishyscapesStaticDataset(root, cityscapes_root=cs, expected=2)[1]
    (cs / "leftImg8bit/val/lindau/lindau_000001_000019_leftImg8bit.png").unlink()
    with pytest.raises(DatasetError, match=r"1 Cityscapes frames are missing.*lindau_000001_000019_leftImg8bit.png"):
        FishyscapesStaticDataset(root, cityscapes_root=cs, expected=2)
    _png(root / "0000_frankfurt_000000_000294_labels.png", _label((0, 3)))
    with pytest.raises(DatasetError, match=r"0000_frankfurt_000000_000294_labels.png: label values \[3\]"):
        FishyscapesStaticDataset(root, expected=2)[0]
    with pytest.raises(DatasetError, match=r"found 2 val frames, expected 5"):
        FishyscapesStaticDataset(root, expected=5)


# -- Hugging Face --------------------------------------------------------------------------------
@pytest.fixture
def hf_dir(tmp_path):
    return write_huggingface(tmp_path / "hf")


def test_huggingface_loader(hf_dir):
    ds = DATASETS.create("huggingface", split="test", path=str(hf_dir), label_column="mask", mapping="roadanomaly", expected=3)
    assert len(ds) == 3 and ds.ids == ["000000", "000001", "000002"]
    s = ds[0]
    assert s.image.shape == (H, W, 3) and s.label[5, 12] == 1 and s.label[0, 0] == 0
    with pytest.raises(DatasetError, match=r"label values \[2\]"):
        DATASETS.create("huggingface", split="test", path=str(hf_dir), label_column="mask", mapping={0: 0, 1: 1})[0]
    with pytest.raises(DatasetError, match=r"unknown huggingface split 'val'.*test"):
        DATASETS.create("huggingface", split="val", path=str(hf_dir), label_column="mask")
    with pytest.raises(DatasetError, match=r"no column 'label'; columns: image, mask"):
        DATASETS.create("huggingface", split="test", path=str(hf_dir))
    with pytest.raises(DatasetError, match=r"found 3 test rows, expected 4"):
        DATASETS.create("huggingface", split="test", path=str(hf_dir), label_column="mask", mapping="roadanomaly", expected=4)


# -- cards ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["roadanomaly", "smiyc_roadanomaly21", "smiyc_roadobstacle21", "fishyscapes_laf",
                                  "fishyscapes_static", "huggingface"])
def test_cards_present_and_registered(name):
    card = load_card(name)
    assert card["name"] == name and card["registered_as"] in DATASETS and card["url"] and "layout" in card
