"""Checkpoint loading: published structure, strict keys with a readable diff, no code unpickling."""
import collections
import os

import numpy as np
import pytest
import torch

from oodbench.errors import CheckpointError
from oodbench.models import create_model
from oodbench.models.checkpoint import load_into, read_state_dict, save_checkpoint, sha256_file


class NotAllowed:
    pass


@pytest.fixture
def model():
    torch.manual_seed(0)
    return create_model("tiny_deeplab", num_classes=19, width=8)


def test_published_structure_with_module_prefix_and_numpy_meta(model, tmp_path):
    sd = {"module." + k: v for k, v in model.state_dict().items()}
    path = tmp_path / "DeepLabV3+_published.pth"
    torch.save({"state_dict": sd, "epoch": np.int64(4), "best_miou": np.float64(0.8151)}, path)
    fresh = create_model("tiny_deeplab", num_classes=19, width=8)
    info = load_into(fresh, path)
    assert info["sha256"] == sha256_file(path) and int(info["epoch"]) == 4
    for k, v in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[k], v)


def test_save_roundtrip_and_plain_state_dict(model, tmp_path):
    digest = save_checkpoint(model.state_dict(), tmp_path / "a.pt", meta={"stage": "x"})
    assert digest == sha256_file(tmp_path / "a.pt")
    torch.save(model.state_dict(), tmp_path / "plain.pt")
    sd, meta = read_state_dict(tmp_path / "plain.pt")
    assert set(sd) == set(model.state_dict()) and meta == {}
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_and_renamed_keys_are_listed(model, tmp_path):
    sd = collections.OrderedDict(model.state_dict())
    sd["classifier.weight_renamed"] = sd.pop("classifier.weight")
    del sd["stem.0.0.weight"]
    torch.save({"state_dict": sd}, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError) as err:
        load_into(create_model("tiny_deeplab", num_classes=19, width=8), tmp_path / "bad.pt")
    msg = str(err.value)
    assert "2 missing keys" in msg and "classifier.weight" in msg and "stem.0.0.weight" in msg
    assert "1 unexpected keys: classifier.weight_renamed" in msg


def test_shape_mismatch_is_reported(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"classifier.weight \(19, 16, 1, 1\) vs model \(7, 16, 1, 1\)"):
        load_into(create_model("tiny_deeplab", num_classes=7, width=8), tmp_path / "m.pt")


def test_arbitrary_pickle_is_refused(tmp_path):
    torch.save({"state_dict": {"w": torch.ones(1)}, "payload": NotAllowed()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="refused to load.*NotAllowed"):
        read_state_dict(tmp_path / "evil.pt")


def test_corrupt_and_missing_files(model, tmp_path):
    torch.save(model.state_dict(), tmp_path / "ok.pt")
    (tmp_path / "trunc.pt").write_bytes((tmp_path / "ok.pt").read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        read_state_dict(tmp_path / "trunc.pt")
    with pytest.raises(CheckpointError, match="not found"):
        read_state_dict(tmp_path / "absent.pt")
    torch.save([1, 2, 3], tmp_path / "list.pt")
    with pytest.raises(CheckpointError, match="not a state dict"):
        read_state_dict(tmp_path / "list.pt")


def test_a_cached_checkpoint_is_hashed_once_until_it_changes(model, tmp_path, monkeypatch):
    """oodbench's own download cache takes the sha256 from the sidecar (keyed on size, mtime, ctime and inode): a
    multi-GB file is not re-read every run, and a file copied over it, even with its mtime kept, is hashed again.
    A user's own file is hashed on every load and gets no sidecar."""
    from oodbench.models import hashing

    path = tmp_path / "m.pt"
    torch.save(model.state_dict(), path)
    calls = []
    monkeypatch.setattr(hashing, "sha256_file", lambda p: calls.append(p) or sha256_file(p))

    def load(cached=True):
        return load_into(create_model("tiny_deeplab", num_classes=19, width=8), path, cached_hash=cached)["sha256"]

    first, again = load(), load()
    assert first == again == sha256_file(path) and len(calls) == 1
    other = tmp_path / "elsewhere" / "m.pt"  # the same name inside the archive: the same size, other content
    other.parent.mkdir()
    torch.manual_seed(1)
    torch.save(create_model("tiny_deeplab", num_classes=19, width=8).state_dict(), other)
    st = path.stat()
    os.replace(other, path)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # as cp -p or rsync -a keep it
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    changed = load()
    assert changed == sha256_file(path) != first and len(calls) == 2
    own = tmp_path / "mine" / "m.pt"
    own.parent.mkdir()
    torch.save(model.state_dict(), own)
    path = own
    assert load(cached=False) == load(cached=False) == first and len(calls) == 2  # hashed directly, no sidecar
    assert not list(own.parent.glob("*.sha256"))
