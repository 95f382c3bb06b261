"""Network cards: a score method runs on any published network named by a card, with the card's inference protocol
(input resize, score channels, logits back to the label size), and the record names card, protocol and weights."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from oodbench.cli import main
from oodbench.errors import CheckpointError, OodbenchError
from oodbench.methods import create_method
from oodbench.models import create_model, network_cards
from oodbench.models.network_cards import InferenceProtocol, list_network_cards, load_network_card

from real_layouts import H, W, write_roadanomaly

CARD = """name = "tiny20"
title = "a tiny network with a background channel"
[model]
name = "tiny_deeplab"
options = {{ width = 8 }}
num_classes = 20
checkpoint_file = "tiny20.pth"
checkpoint_url = "{url}"
checkpoint_sha256 = "{sha}"
[protocol]
input_size = [48, 24]
score_channels = 19
"""


def test_shipped_cards():
    assert {"espnetv2_cityscapes", "espnetv2_s1_cityscapes", "deeplabv3plus_wrn38_cityscapes",
            "deeplabv3plus_wrn38_entmax"} <= set(list_network_cards())
    esp = load_network_card("espnetv2_cityscapes")
    assert esp.model == "espnetv2" and esp.options == {"scale": 2.0} and esp.num_classes == 20
    assert esp.protocol == InferenceProtocol(input_size=(1024, 512), score_channels=19)
    assert esp.checkpoint_sha256 == "a72d59699801c7ce8e8b89a53af9097eaaa60dc12180ecde86fd700ba1222fe8"
    assert esp.checkpoint_url.endswith("/model/segmentation/model_zoo/espnetv2/espnetv2_s_2.0_city_1024x512.pth")
    assert "2b232d3f7fb60658755dad1ebca0ffc895cc795e" in esp.checkpoint_url  # pinned to the published commit
    assert sum(p.numel() for p in esp.build().state_dict().values()) == 814351
    with pytest.raises(OodbenchError, match=r"unknown network 'nope'.*espnetv2_cityscapes"):
        load_network_card("nope")


def test_protocol_resizes_the_frame_and_returns_score_channels_at_label_size():
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (2, 30, 40, 3), dtype=np.uint8)
    protocol = InferenceProtocol(input_size=(20, 10), score_channels=3)
    small = protocol.prepare(frames)
    want = np.asarray(Image.fromarray(frames[1]).resize((20, 10), Image.BILINEAR))
    assert small.shape == (2, 10, 20, 3) and np.array_equal(small[1], want)
    logits = torch.randn(2, 4, 10, 20)
    back = protocol.restore(logits, (30, 40))
    assert back.shape == (2, 3, 30, 40)
    assert torch.equal(back, F.interpolate(logits[:, :3], size=(30, 40), mode="bilinear", align_corners=False))
    assert InferenceProtocol().prepare(frames) is frames  # full resolution: untouched
    assert torch.equal(InferenceProtocol().restore(logits, (10, 20)), logits)


def test_bad_cards_are_refused_naming_the_file(tmp_path, monkeypatch):
    monkeypatch.setattr(network_cards, "NETWORKS_DIR", tmp_path)
    (tmp_path / "bad.toml").write_text(CARD.format(url="", sha="").replace("[48, 24]", "[48]"))
    with pytest.raises(CheckpointError, match=r"bad.toml: protocol.input_size \[48\] must be \[width, height\]"):
        load_network_card("bad")
    (tmp_path / "nomodel.toml").write_text('name = "x"\n[model]\nname = "tiny_deeplab"\n')
    with pytest.raises(CheckpointError, match=r"nomodel.toml: the \[model\] table lacks 'checkpoint_file'"):
        load_network_card("nomodel")


@pytest.fixture
def tiny20(tmp_path, monkeypatch):
    """A network card of a 20-output tiny_deeplab, its weights served from a file:// URL with their sha256."""
    torch.manual_seed(0)
    model = create_model("tiny_deeplab", num_classes=20, width=8)
    ckpt = tmp_path / "server" / "tiny20.pth"
    ckpt.parent.mkdir()
    torch.save(model.state_dict(), ckpt)
    import hashlib

    sha = hashlib.sha256(ckpt.read_bytes()).hexdigest()
    cards = tmp_path / "networks"
    cards.mkdir()
    (cards / "tiny20.toml").write_text(CARD.format(url=ckpt.as_uri(), sha=sha))
    monkeypatch.setattr(network_cards, "NETWORKS_DIR", cards)
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    return model.eval(), sha


def test_run_on_a_network_card_follows_its_protocol_and_records_it(tiny20, tmp_path):
    model, sha = tiny20
    data = write_roadanomaly(tmp_path / "ra")
    out = tmp_path / "records"
    assert main(["run", "--method", "maxlogit", "--network", "tiny20", "--dataset", "roadanomaly", "--data-root",
                 str(data), "--option", "expected=3", "--out", str(out), "--quiet", "--no-score-cache"]) == 0
    (path,) = out.glob("*.json")
    m = json.loads(path.read_text())["method"]
    assert m["network"] == "tiny20" and m["model"] == "tiny_deeplab" and m["card"] == "baseline"
    assert m["protocol"]["input_size"] == [48, 24] and m["protocol"]["score_channels"] == 19
    assert m["checkpoint_sha256"] == sha and m["model_info"]["matches_published"] is True

    method = create_method("maxlogit", network="tiny20")
    from oodbench.data import DATASETS

    ds = DATASETS.create("roadanomaly", root=data, expected=3)
    method.bind(ds)
    method.setup(progress=False)
    frame = ds[0].image
    x = torch.from_numpy(np.array(Image.fromarray(frame).resize((48, 24), Image.BILINEAR))).permute(2, 0, 1)
    with torch.no_grad():
        logits = model(x[None].float())[:, :19]
    want = -F.interpolate(logits, size=(H, W), mode="bilinear", align_corners=False).amax(dim=1)[0].numpy()
    np.testing.assert_allclose(method.predict(frame[None]).scores[0], want, rtol=1e-5, atol=1e-5)


def test_network_flag_errors(tiny20, tmp_path, capsys):
    data = str(write_roadanomaly(tmp_path / "ra"))
    common = ["--dataset", "roadanomaly", "--data-root", data, "--option", "expected=3", "--quiet"]
    assert main(["run", "--method", "entmax", "--network", "tiny20", *common]) == 2
    assert "use `--method entropy --network tiny20`" in capsys.readouterr().err
    assert main(["run", "--method", "msp", "--network", "nope", *common]) == 2
    assert "unknown network 'nope'" in capsys.readouterr().err


def test_list_networks(capsys):
    assert main(["list", "networks", "espnet*"]) == 0
    text = capsys.readouterr().out
    assert "espnetv2_cityscapes" in text and "1024x512" in text and "deeplabv3plus_wrn38" not in text


def test_meta_stage_calibrates_on_the_only_split_and_says_so(tiny20, tmp_path, monkeypatch):
    """Road Anomaly has one split: an unbounded score's segment threshold (95 % pixel TPR) is fixed on it, recorded as
    such, and X_meta reads the maps X cached (no second model pass for the calibration)."""
    from oodbench.methods.model_score import ModelScoreMethod
    from oodbench.evaluation.runner import run

    data = write_roadanomaly(tmp_path / "ra")
    kwargs = dict(dataset="roadanomaly", data_root=data, dataset_options={"expected": 3}, progress=False,
                  network="tiny20", batch_size=1)
    plain, _ = run("maxlogit", **kwargs)
    calls = []
    predict = ModelScoreMethod.predict
    monkeypatch.setattr(ModelScoreMethod, "predict", lambda self, images: calls.append(1) or predict(self, images))
    meta, _ = run("maxlogit_meta", **kwargs)
    assert len(calls) == 3  # the segment pass only: one per frame
    seg = meta["metrics"]["segments"]
    assert seg["calibration"]["on_evaluated_split"] is True and seg["calibration"]["split"] == "test"
    assert meta["metrics"]["pixel"] == plain["metrics"]["pixel"]


def test_naming_the_method_cards_own_network_is_the_default_row(tmp_path):
    """`--network` equal to the method card's network is the default configuration: entmax accepts its own network
    without --checkpoint, and the leaderboard row is not split off."""
    from oodbench.leaderboard.store import entry_name

    method = create_method("entmax", network="deeplabv3plus_wrn38_entmax")
    assert method.network_card.name == "deeplabv3plus_wrn38_entmax"
    base = {"name": "msp", "network": "espnetv2_cityscapes", "checkpoint_sha256": "ab" * 32}
    assert entry_name({"method": {**base, "model_info": {"network_source": "--network"}}}) == \
        "msp (espnetv2_cityscapes)"
    assert entry_name({"method": {**base, "model_info": {"network_source": "method card"}}}) == "msp"
    assert entry_name({"method": {**base, "model_info": {"network_source": "--network", "local_override": True,
                                                         "matches_published": True}}}) == "msp (espnetv2_cityscapes)"
    assert entry_name({"method": {**base, "model_info": {"network_source": "--network", "local_override": True,
                                                         "matches_published": False}}}) == \
        "msp (espnetv2_cityscapes, local checkpoint abababab)"


def test_score_channels_and_options_are_checked(tmp_path, monkeypatch):
    monkeypatch.setattr(network_cards, "NETWORKS_DIR", tmp_path)
    (tmp_path / "wide.toml").write_text(CARD.format(url="", sha="").replace("score_channels = 19",
                                                                             "score_channels = 25"))
    with pytest.raises(CheckpointError, match=r"score_channels 25 must be a whole number in 1..20"):
        load_network_card("wide")
    (tmp_path / "typo.toml").write_text(CARD.format(url="", sha="").replace("width = 8", "widht = 8"))
    with pytest.raises(CheckpointError, match=r"typo.toml: model 'tiny_deeplab' cannot be built"):
        load_network_card("typo").build()
