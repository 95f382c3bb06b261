"""Ground-truth instances from the datasets that annotate them: LostAndFound's ``_gtCoarse_instanceIds.png`` and
OoDIS's Fishyscapes Lost & Found instance labels (``fs_lost_found_instance``), in their real on-disk layouts."""
import numpy as np
import pytest
from PIL import Image

from oodbench.data.base import DATASETS
from oodbench.errors import DatasetError

from layout_files import write_png
from real_layouts import FS_STEMS, H, W, laf_label, write_fs_laf, write_laf

STEMS = {"04_Maurener_Weg_8_000000_000030": [2, 33], "04_Maurener_Weg_8_000001_000040": [5]}


def cityscapes_ids(labels: np.ndarray) -> np.ndarray:
    """Cityscapes-style instanceIds of ``laf_label`` maps: labelId * 1000 + the object's index (from 0, left to
    right) on objects, the labelId elsewhere (16-bit)."""
    index = (np.arange(labels.shape[1]) >= 5)[None, :]  # objects sit in columns 2-3 and 5-6
    return np.where(labels >= 2, labels.astype(np.uint16) * 1000 + index, labels).astype(np.uint16)


def test_lostandfound_instance_ids_on_ood_pixels(tmp_path):
    root = write_laf(tmp_path / "laf", "test", STEMS)
    first = next(iter(STEMS))
    scene = "_".join(first.split("_")[:-2])
    ids = cityscapes_ids(laf_label(STEMS[first]))
    Image.fromarray(ids).save(root / "gtCoarse" / "test" / scene / f"{first}_gtCoarse_instanceIds.png")
    ds = DATASETS.create("lostandfound", root=root, split="test", expected=2)
    with_ids, without = ds[0], ds[1]
    assert without.instance_label is None  # no instanceIds file: the OoD components stand in
    assert sorted(np.unique(with_ids.instance_label).tolist()) == [0, 2000, 33001]
    np.testing.assert_array_equal(with_ids.instance_label > 0, with_ids.label == 1)
    Image.fromarray(ids[:, :8]).save(root / "gtCoarse" / "test" / scene / f"{first}_gtCoarse_instanceIds.png")
    with pytest.raises(DatasetError, match=r"_gtCoarse_instanceIds.png: instance ids 8x8 differ from the labels 16x8"):
        ds[0]


def test_fishyscapes_laf_reads_oodis_instance_labels(tmp_path):
    root, laf = write_fs_laf(tmp_path / "fs", tmp_path / "laf")
    inst = tmp_path / "fs_lost_found_instance"
    names = list(FS_STEMS)
    with pytest.raises(DatasetError, match=r"2 instance label files are missing from gtCoarse"):
        DATASETS.create("fishyscapes_laf", root=root, laf_root=laf, instance_root=inst.mkdir() or inst, expected=2)
    for i, name in enumerate(names):  # OoDIS's layout: flat under gtCoarse/<split>/, or in scene folders
        stem = name.split("_", 1)[1]
        sub = "" if i == 0 else stem.rsplit("_", 2)[0]
        ids = np.zeros((H, W), np.uint16)
        ids[4:8, 10:15], ids[4:8, 15:20] = 7, 9  # two touching objects on the release label's OoD box
        write_png(inst / "gtCoarse" / FS_STEMS[name] / sub / f"{stem}_gtCoarse_instanceIds.png", ids)
    plain = DATASETS.create("fishyscapes_laf", root=root, laf_root=laf, expected=2)
    ds = DATASETS.create("fishyscapes_laf", root=root, laf_root=laf, instance_root=inst, expected=2)
    assert plain[0].instance_label is None and ds.describe()["instances"].startswith("OoDIS")
    sample = ds[0]
    on_ood = sample.label == 1
    assert sorted(np.unique(sample.instance_label[on_ood]).tolist()) == [7, 9]
    assert not sample.instance_label[~on_ood].any()
    fingerprint = ds.fingerprint()
    assert fingerprint != plain.fingerprint()  # the instance labels are part of the data's identity
    moved = tmp_path / "elsewhere"
    inst.rename(moved)
    assert DATASETS.create("fishyscapes_laf", root=root, laf_root=laf, instance_root=moved,
                           expected=2).fingerprint() == fingerprint  # relative names only
