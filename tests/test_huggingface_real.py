"""The ``huggingface`` loader's revision, id column and public-API fingerprint: the real Road Anomaly copy converted
to a ``datasets`` folder gives the same record through ``oodbench run`` as the ``roadanomaly`` loader on the original
files, and small ``save_to_disk`` folders check the errors and the fingerprint's stability."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from oodbench.cli import main
from oodbench.data import DATASETS
from oodbench.errors import DatasetError
from oodbench.methods import METHODS

from real_layouts import H, W, label_map
from layout_files import random_rgb
from realdata import REALDATA, ROAD_ANOMALY, needs
from red_method import Red

REVISION = "0123456789abcdef0123456789abcdef01234567"  # a commit hash, as a researcher pins one


def _hf():
    hf = pytest.importorskip("datasets")
    if not hasattr(hf, "Features"):  # only the repository's datasets/ folder, not the package
        pytest.skip("the `datasets` package is not installed")
    return hf


def _save(path: Path, names: list, labels: list[np.ndarray] | None = None) -> Path:
    """A DatasetDict with a test split: image, mask (RoadAnomaly's 0/2) and name columns, one row per name."""
    hf = _hf()
    labels = labels or [label_map((0, 2)) for _ in names]
    kind = "string" if all(isinstance(n, str) for n in names) else "int64"
    features = hf.Features({"image": hf.Image(), "mask": hf.Image(), "name": hf.Value(kind)})
    data = hf.Dataset.from_dict({"image": [Image.fromarray(random_rgb(i, H, W)) for i in range(len(names))],
                                 "mask": [Image.fromarray(x) for x in labels], "name": names}, features=features)
    hf.DatasetDict({"test": data}).save_to_disk(str(path))
    return path


def _create(path: Path, **options):
    return DATASETS.create("huggingface", split="test", path=str(path), label_column="mask", mapping="roadanomaly",
                           **options)


# -- the real Road Anomaly copy through the CLI ---------------------------------------------------------------
def _convert(folder: Path) -> tuple[Path, list[str]]:
    """Road Anomaly's release files (frame_list.json order) as a save_to_disk folder: the JPEG frames and native label
    PNGs as ``datasets.Image()`` columns, the frame names as the id column."""
    hf = _hf()
    listed = json.loads((ROAD_ANOMALY / "frame_list.json").read_text())
    frames = ROAD_ANOMALY / "frames"
    stems = [Path(name).stem for name in listed]
    data = hf.Dataset.from_dict(
        {"image": [str(frames / name) for name in listed],
         "label": [str(frames / f"{stem}.labels" / "labels_semantic.png") for stem in stems], "frame": stems},
        features=hf.Features({"image": hf.Image(), "label": hf.Image(), "frame": hf.Value("string")}))
    hf.DatasetDict({"test": data}).save_to_disk(str(folder))
    return folder, stems


def _run(out: Path, *dataset_args: str) -> dict:
    assert main(["run", "--method", Red.name, *dataset_args, "--out", str(out), "--quiet"]) == 0
    (path,) = out.glob("*.json")
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def road_anomaly_records(tmp_path_factory):
    """Records of the red-channel score on the original copy, on its save_to_disk conversion, and on the conversion
    loaded as if from the hub at a pinned revision (``datasets.load_dataset`` answered from the folder: no network)."""
    hf = _hf()
    tmp = tmp_path_factory.mktemp("hf_roadanomaly")
    folder, stems = _convert(tmp / "road_anomaly_hf")
    hf_options = ["--option", "label_column=label", "--option", "mapping=roadanomaly", "--option", "id_column=frame",
                  "--option", "expected=60"]
    asked = {}

    def from_the_folder(path, split=None, revision=None, **kwargs):
        asked.update(path=path, split=split, revision=revision)
        return hf.load_from_disk(str(folder))[split]

    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(METHODS._items, Red.name, Red)
        records = {"roadanomaly": _run(tmp / "ra", "--dataset", "roadanomaly", "--data-root", str(REALDATA)),
                   "huggingface": _run(tmp / "hf", "--dataset", "huggingface", "--option", f"path={folder}",
                                       *hf_options)}
        mp.setattr(hf, "load_dataset", from_the_folder)
        records["hub"] = _run(tmp / "hub", "--dataset", "huggingface", "--option", "path=cvlab/road_anomaly",
                              "--option", f"revision={REVISION}", *hf_options)
    return records, folder, stems, asked


@needs(ROAD_ANOMALY)
def test_converted_road_anomaly_gives_the_original_loaders_record(road_anomaly_records):
    records, _, _, _ = road_anomaly_records
    original = records["roadanomaly"]
    pixel = original["metrics"]["pixel"]
    print(f"\nred channel on Road Anomaly: AP {100 * pixel['ap']:.2f} %, AUROC {100 * pixel['auroc']:.2f} %, "
          f"FPR95 {100 * pixel['fpr95']:.2f} %, OoD / in-dist. pixels {pixel['num_pos']} / {pixel['num_neg']}")
    assert (pixel["num_pos"], pixel["num_neg"]) == (5446413, 49849587)  # every pixel of the 60 frames
    for name in ("huggingface", "hub"):
        record = records[name]
        assert record["dataset"]["num_images"] == original["dataset"]["num_images"] == 60
        assert record["metrics"]["pixel"] == pixel, name
        # the component metrics too; per-category results and instance labels need the roadanomaly loader's files
        assert "categories" in original["metrics"] and "categories" not in record["metrics"]
        assert original["metrics"]["instances"]["ground_truth"].startswith("dataset instance labels on 46 of 60")
        assert record["metrics"]["instances"]["ground_truth"].startswith("dataset instance labels on 0 of 60")
        assert {k: v for k, v in record["metrics"].items() if k != "instances"} == \
            {k: v for k, v in original["metrics"].items() if k not in ("categories", "instances")}, name


@needs(ROAD_ANOMALY)
def test_record_names_the_revision_and_id_column(road_anomaly_records):
    records, folder, _, asked = road_anomaly_records
    local, hub = records["huggingface"]["dataset"], records["hub"]["dataset"]
    assert local["id_column"] == hub["id_column"] == "frame" and local["label_column"] == "label"
    assert local["source_kind"] == "save_to_disk" and local["source"] == folder.name and local["revision"] is None
    assert str(folder.parent) not in json.dumps(local["source"])
    assert hub["source_kind"] == "hub" and hub["source"] == "cvlab/road_anomaly" and hub["revision"] == REVISION
    assert asked == {"path": "cvlab/road_anomaly", "split": "test", "revision": REVISION}
    assert len(local["fingerprint"]) == len(hub["fingerprint"]) == 64
    assert local["fingerprint"] != hub["fingerprint"]  # the revision and hub id are part of it


@needs(ROAD_ANOMALY)
def test_converted_frames_equal_the_original_frames_by_id(road_anomaly_records):
    _, folder, stems, _ = road_anomaly_records
    converted = DATASETS.create("huggingface", split="test", path=str(folder), mapping="roadanomaly", id_column="frame")
    original = DATASETS.create("roadanomaly", root=REALDATA, split="test")
    assert converted.ids == stems and sorted(converted.ids) == original.ids
    by_id = {original.ids[i]: i for i in range(len(original))}
    for index in range(len(converted)):
        a, b = converted[index], original[by_id[converted.ids[index]]]
        assert a.id == b.id and np.array_equal(a.image, b.image) and np.array_equal(a.label, b.label), a.id


# -- id column and revision errors -----------------------------------------------------------------------------
def test_id_column_gives_the_sample_ids(tmp_path):
    ds = _create(_save(tmp_path / "hf", ["frame_b", "frame_a", "frame_c"]), id_column="name", expected=3)
    assert ds.ids == ["frame_b", "frame_a", "frame_c"] and ds[1].id == "frame_a"
    assert ds.describe()["id_column"] == "name" and ds.describe()["revision"] is None
    assert _create(tmp_path / "hf").ids == ["000000", "000001", "000002"]


def test_missing_id_column_names_the_source_and_column(tmp_path):
    path = _save(tmp_path / "hf", ["a", "b"])
    with pytest.raises(DatasetError, match=rf"{path}: no column 'frame'; columns: image, mask, name .*id_column="):
        _create(path, id_column="frame")


def test_duplicated_ids_are_refused(tmp_path):
    path = _save(tmp_path / "hf", ["a", "b", "a", "b"])
    with pytest.raises(DatasetError, match=r"column 'name': 2 ids are duplicated, e\.g\. 'a' \(rows 0 and 2\), "
                                           r"'b' \(rows 1 and 3\)"):
        _create(path, id_column="name")


@pytest.mark.parametrize("names, shown", [([3, 4], r"row 0 holds 3 \(int\), not a string"),
                                          (["a", "../b"], r"row 1 holds '\.\./b', which cannot be a sample id"),
                                          (["", "b"], r"row 0 holds '', which cannot be a sample id")])
def test_ids_that_cannot_name_a_file_are_refused(tmp_path, names, shown):
    with pytest.raises(DatasetError, match=shown):
        _create(_save(tmp_path / "hf", names), id_column="name")


def test_revision_of_a_local_folder_is_refused(tmp_path):
    path = _save(tmp_path / "hf", ["a"])
    with pytest.raises(DatasetError, match=rf"{path}: revision='v1' applies to hub ids only.*Drop the revision"):
        _create(path, revision="v1")
    with pytest.raises(DatasetError, match=r"revision=123 .* must be a branch, tag or commit hash string"):
        _create(path, revision=123)  # what --option revision=0123 gives
    with pytest.raises(DatasetError, match=r"no_such_folder: no such folder"):
        _create(tmp_path / "no_such_folder")


def test_revision_is_passed_to_the_hub_and_recorded(monkeypatch):
    hf = _hf()
    asked = []
    rows = {"image": [Image.fromarray(random_rgb(0, H, W))], "mask": [Image.fromarray(label_map((0, 2)))]}

    def load_dataset(path, split=None, revision=None, **kwargs):
        asked.append((path, split, revision))
        return hf.Dataset.from_dict(rows, features=hf.Features({"image": hf.Image(), "mask": hf.Image()}))

    monkeypatch.setattr(hf, "load_dataset", load_dataset)
    pinned, latest = (DATASETS.create("huggingface", split="test", path="user/name", label_column="mask",
                                      mapping="roadanomaly", revision=rev) for rev in (REVISION, None))
    assert asked == [("user/name", "test", REVISION), ("user/name", "test", None)]
    assert pinned.describe()["revision"] == REVISION and pinned.describe()["source"] == "user/name"
    assert pinned.fingerprint() != latest.fingerprint()  # in memory, no Arrow files: hashed rows, and the revision


# -- fingerprint ------------------------------------------------------------------------------------------------
FINGERPRINT = ("import sys; from oodbench.data import DATASETS; ds = DATASETS.create('huggingface', path=sys.argv[1], "
               "label_column='mask', mapping='roadanomaly', id_column='name'); print(ds.fingerprint(), "
               "ds.fingerprint(deep=True))")


def test_fingerprint_is_stable_across_processes_and_folders(tmp_path):
    a = _save(tmp_path / "a", ["x", "y"])
    b = _save(tmp_path / "elsewhere" / "b", ["x", "y"])
    got = [subprocess.run([sys.executable, "-c", FINGERPRINT, str(p)], capture_output=True, text=True, check=True
                          ).stdout.split() for p in (a, a, b)]
    ds = _create(a, id_column="name")
    assert got[0] == got[1] == got[2] == [ds.fingerprint(), ds.fingerprint(deep=True)]
    assert ds.fingerprint() != ds.fingerprint(deep=True)


def test_fingerprint_changes_with_the_data_and_options(tmp_path):
    base = _create(_save(tmp_path / "a", ["x", "y"]), id_column="name")
    changed = label_map((0, 2))
    changed[0, 0] = 2  # one label pixel
    edited = _create(_save(tmp_path / "b", ["x", "y"], [label_map((0, 2)), changed]), id_column="name")
    renamed = _create(_save(tmp_path / "c", ["x", "z"]), id_column="name")
    for other in (edited, renamed):
        assert other.fingerprint() != base.fingerprint() and other.fingerprint(deep=True) != base.fingerprint(deep=True)
    assert _create(tmp_path / "a").fingerprint() != base.fingerprint()  # row-number ids
    assert DATASETS.create("huggingface", path=str(tmp_path / "a"), label_column="mask", mapping={0: 0, 2: 1},
                           id_column="name").fingerprint() != base.fingerprint()
