"""Method cards: on real data a model-based method runs the card's network with the card's checkpoint, fetched by
URL and checked against its sha256, or given locally with --checkpoint; the embedded benchmark keeps its own."""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest
import torch

from oodbench.cli import main
from oodbench.errors import CheckpointError, OodbenchError
from oodbench.methods import cards, create_method
from oodbench.methods.cards import card_network, list_method_cards, load_method_card
from oodbench.models import network_cards
from oodbench.models import create_model
from oodbench.evaluation.runner import run

from real_layouts import H, W, write_laf

LAF = {"04_Maurener_Weg_8_000000_000030": [2, 33], "02_Hanns_Klemm_Str_44_000001_000100": [17]}


def published_checkpoint(path, arch: str, seed: int = 0):
    """Weights saved the way the released files are: {"state_dict": {"module.<key>": tensor}, "epoch": 4}."""
    torch.manual_seed(seed)
    model = create_model(arch, num_classes=19)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 4}, path)
    return model.state_dict(), hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def tiny_cards(tmp_path, monkeypatch):
    """A copy of the shipped method and WRN38 network cards whose model is tiny_deeplab, served from a file:// URL."""
    ckpt = tmp_path / "server" / "released.pth"
    ckpt.parent.mkdir()
    weights, digest = published_checkpoint(ckpt, "tiny_deeplab")
    folder = tmp_path / "cards"
    (folder / "networks").mkdir(parents=True)
    for name in list_method_cards():
        shutil.copy(cards.CARDS_DIR / f"{name}.toml", folder)
        network = card_network(load_method_card(name))
        text = Path(network.path).read_text()
        text = text.replace('name = "deeplabv3plus_wrn38"', 'name = "tiny_deeplab"')
        text = text.replace('checkpoint_sha256 = ""', f'checkpoint_sha256 = "{digest}"')
        (folder / "networks" / Path(network.path).name).write_text(text.replace(network.checkpoint_url, ckpt.as_uri()))
    monkeypatch.setattr(cards, "CARDS_DIR", folder)
    monkeypatch.setattr(network_cards, "NETWORKS_DIR", folder / "networks")
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    return ckpt, weights, digest


@pytest.fixture
def laf(tmp_path):
    return write_laf(tmp_path / "lost_and_found", "test", LAF, h=H, w=W)


def test_shipped_cards_name_the_paper_configuration():
    assert {"entmax", "baseline"} <= set(list_method_cards())
    entmax = load_method_card("entmax")
    spec = card_network(entmax)
    assert spec.name == "deeplabv3plus_wrn38_entmax" and spec.model == "deeplabv3plus_wrn38" and spec.num_classes == 19
    assert spec.protocol.input_size is None and spec.protocol.score_channels is None  # full resolution, 19 outputs
    assert spec.checkpoint_file == "DeepLabV3+_WideResNet38_epoch_4_alpha_0.9.pth"
    assert spec.checkpoint_url.startswith("https://") and spec.checkpoint_sha256 is None  # unpublished
    assert entmax["score"] == create_method("entmax").score_name == "entropy"
    for name in ("entmax", "baseline"):
        assert load_method_card(name)["embedded_model"] == create_method(name if name == "entmax" else "msp").model_label
    with pytest.raises(OodbenchError, match=r"no method card .*nope.toml; cards present: baseline, entmax"):
        load_method_card("nope")


def test_real_dataset_fetches_verifies_and_loads_the_card_checkpoint(tiny_cards, laf, tmp_path):
    ckpt, weights, digest = tiny_cards
    record, _ = run("entmax_meta", dataset="lostandfound", data_root=laf, progress=False,
                    dataset_options={"expected": 2}, out_dir=tmp_path / "records")
    method = record["method"]
    assert method["model"] == "tiny_deeplab" and method["card"] == "entmax"
    info = method["model_info"]
    assert method["checkpoint_sha256"] == info["sha256"] == digest and info["matches_published"] is True
    assert info["checkpoint_url"] == ckpt.as_uri() and info["local_override"] is False
    cached = tmp_path / "home" / "checkpoints" / "DeepLabV3+_WideResNet38_epoch_4_alpha_0.9.pth"
    assert hashlib.sha256(cached.read_bytes()).hexdigest() == digest
    m = create_method("entmax")
    m.bind(type("Real", (), {"domain": "real"})())
    m.setup(progress=False)
    for k, v in m.model.state_dict().items():
        assert torch.equal(v, weights[k]), k
    assert record["metrics"]["segments"]["segment_threshold"] == 0.7


def test_a_changed_download_is_refused(tiny_cards, laf):
    ckpt, _, digest = tiny_cards
    published_checkpoint(ckpt, "tiny_deeplab", seed=1)
    with pytest.raises(CheckpointError, match=rf"sha256.*{digest}"):
        run("entmax", dataset="lostandfound", data_root=laf, progress=False, dataset_options={"expected": 2})
    assert not list((cards.CARDS_DIR.parent / "home" / "checkpoints").glob("*.pth"))


def test_local_checkpoint_wins_and_is_recorded(tiny_cards, laf, tmp_path):
    ckpt, _, digest = tiny_cards
    local = tmp_path / "mine.pth"
    shutil.copy(ckpt, local)
    record, _ = run("msp", dataset="lostandfound", data_root=laf, progress=False, dataset_options={"expected": 2},
                    checkpoint=local)
    info = record["method"]["model_info"]
    assert info["card"] == "baseline" and info["local_override"] is True and info["sha256"] == digest
    assert not (tmp_path / "home" / "checkpoints").exists()  # nothing downloaded
    with pytest.raises(CheckpointError, match=r"gone.pth"):
        run("msp", dataset="lostandfound", data_root=laf, progress=False, dataset_options={"expected": 2},
            checkpoint=tmp_path / "gone.pth")


def test_show_with_the_runs_checkpoint_reads_the_runs_maps(tiny_cards, laf, tmp_path, monkeypatch):
    """`show --checkpoint F` keys the score cache as `run --checkpoint F` did: the panel needs no model pass."""
    from oodbench.methods.model_score import ModelScoreMethod
    from oodbench.show.panel import panel_data

    local, options = tmp_path / "mine.pth", {"expected": 2}
    published_checkpoint(local, "tiny_deeplab", seed=3)
    kwargs = dict(dataset="lostandfound", data_root=laf, dataset_options=options, cache_root=tmp_path / "cache")
    run("msp", progress=False, checkpoint=local, **kwargs)
    calls = []
    predict = ModelScoreMethod.predict
    monkeypatch.setattr(ModelScoreMethod, "predict", lambda self, images: calls.append(1) or predict(self, images))
    image_id = sorted(LAF)[0]
    panel_data("msp", image_id=image_id, checkpoint=local, **kwargs)
    assert calls == []
    panel_data("msp", image_id=image_id, checkpoint=tiny_cards[0], **kwargs)  # other weights: other maps
    assert calls == [1]


def test_checkpoint_is_refused_where_it_cannot_apply(tiny_cards, tmp_path):
    with pytest.raises(CheckpointError, match=r"embedded benchmark trains and caches its own models"):
        run("entmax", progress=False, checkpoint=tiny_cards[0])


def test_wrn38_card_runs_the_paper_model_on_real_layout(laf, tmp_path):
    """The shipped card, unmodified, with the released file structure given locally (no download)."""
    local = tmp_path / "DeepLabV3+_WideResNet38_epoch_4_alpha_0.9.pth"
    _, digest = published_checkpoint(local, "deeplabv3plus_wrn38")
    record, _ = run("entmax", dataset="lostandfound", data_root=laf, progress=False, dataset_options={"expected": 2},
                    checkpoint=local)
    assert record["method"]["model"] == "deeplabv3plus_wrn38" and record["method"]["checkpoint_sha256"] == digest
    assert record["metrics"]["pixel"]["num_pos"] > 0


def test_cli_checkpoint_flag(tiny_cards, laf, tmp_path, capsys):
    out = tmp_path / "records"
    assert main(["run", "--method", "entmax", "--dataset", "lostandfound", "--data-root", str(laf), "--option",
                 "expected=2", "--checkpoint", str(tiny_cards[0]), "--out", str(out), "--quiet"]) == 0
    (path,) = out.glob("*.json")
    assert json.loads(path.read_text())["method"]["model_info"]["local_override"] is True
    assert main(["run", "--method", "entmax", "--checkpoint", str(tiny_cards[0]), "--quiet"]) == 2
    assert "embedded benchmark trains and caches its own models" in capsys.readouterr().err


def test_mixed_precision_inference_is_recorded_and_close(tmp_path):
    """bf16 autocast with channels-last on CPU (fp16 on CUDA, the default there) stays close to fp32."""
    import numpy as np

    from oodbench.data import DATASETS

    images = np.stack([DATASETS.create("synthetic", split="val")[i].image for i in range(2)])
    full, mixed = create_method("entmax", device="cpu"), create_method("entmax", device="cpu", amp=True)
    for m in (full, mixed):
        m.setup(progress=False)
    assert full.config()["precision"] == "fp32" and mixed.config()["precision"] == "bf16-autocast"
    a, b = full.predict(images).scores, mixed.predict(images).scores
    assert a.dtype == b.dtype == np.float32 and np.abs(a - b).mean() < 0.02
