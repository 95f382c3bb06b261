"""The `folder` dataset: canonical 0/1/255 label maps a user brings, with or without images."""
import numpy as np
import pytest
from PIL import Image

from oodbench.data import DATASETS
from oodbench.errors import DatasetError


def write(root, ids=("a", "b", "c"), images=True, size=(12, 16), labels_sub=True):
    rng = np.random.default_rng(0)
    lab_dir = root / "labels" if labels_sub else root
    lab_dir.mkdir(parents=True, exist_ok=True)
    for i in ids:
        Image.fromarray(rng.choice(np.array([0, 1, 255], np.uint8), size=size)).save(lab_dir / f"{i}.png")
        if images:
            (root / "images").mkdir(exist_ok=True)
            Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
    return lab_dir


@pytest.mark.parametrize("images", [True, False])
def test_folder_with_and_without_images(tmp_path, images):
    write(tmp_path, images=images)
    ds = DATASETS.create("folder", root=tmp_path, split="test")
    assert ds.ids == ["a", "b", "c"] and len(ds) == 3
    s = ds[1]
    assert s.label.shape == (12, 16) and set(np.unique(s.label)) <= {0, 1, 255}
    assert (s.image is not None) == images
    if images:
        assert s.image.shape == (12, 16, 3) and s.image.dtype == np.uint8


def test_labels_directly_in_root(tmp_path):
    write(tmp_path, images=False, labels_sub=False)
    assert DATASETS.create("folder", root=tmp_path).ids == ["a", "b", "c"]


def test_label_value_7_is_rejected_naming_the_file(tmp_path):
    lab_dir = write(tmp_path, images=False)
    bad = np.zeros((12, 16), np.uint8)
    bad[3, 4] = 7
    Image.fromarray(bad).save(lab_dir / "b.png")
    ds = DATASETS.create("folder", root=tmp_path)
    ds[0]
    with pytest.raises(DatasetError, match=r"b\.png: label values \[7\]"):
        ds[1]


def test_images_and_labels_must_pair_up(tmp_path):
    write(tmp_path)
    (tmp_path / "images" / "c.png").rename(tmp_path / "images" / "z.png")
    with pytest.raises(DatasetError, match=r"do not pair up: 1 labels without image \(e\.g\. \['c'\]\), "
                                           r"1 images without label \(e\.g\. \['z'\]\)"):
        DATASETS.create("folder", root=tmp_path)


def test_image_and_label_sizes_must_match(tmp_path):
    write(tmp_path)
    Image.fromarray(np.zeros((10, 16, 3), np.uint8)).save(tmp_path / "images" / "a.png")
    with pytest.raises(DatasetError, match=r"a\.png: label size 16x12 differs from image a\.png size 16x10"):
        DATASETS.create("folder", root=tmp_path)[0]


def test_no_labels_and_no_folder(tmp_path):
    (tmp_path / "labels").mkdir()
    with pytest.raises(DatasetError, match="no label maps"):
        DATASETS.create("folder", root=tmp_path)
    with pytest.raises(DatasetError, match="no such folder"):
        DATASETS.create("folder", root=tmp_path / "nope")
    with pytest.raises(DatasetError, match=r"the folder dataset has no root: give --data-root DIR"):  # no --data-root given
        DATASETS.create("folder")


def test_expected_count(tmp_path):
    write(tmp_path, images=False)
    with pytest.raises(DatasetError, match="found 3 label maps, expected 4"):
        DATASETS.create("folder", root=tmp_path, expected=4)
