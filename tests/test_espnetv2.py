"""ESPNetv2: state dict against the EdgeNets manifest, strict loading of the published Cityscapes weights,
the reference's pixel-accuracy figures on real frames (which a wrong network cannot reach), and input sizes.
Each network is built, and each real frame run, once per module."""
import collections
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from realdata import CITYSCAPES, REFERENCE, espnetv2_weights, needs

import oodbench.models.espnetv2  # noqa: F401  (registers "espnetv2")
from oodbench.errors import CheckpointError
from oodbench.models import create_model
from oodbench.models.checkpoint import load_into
from oodbench.models.network_cards import load_network_card

MANIFEST = REFERENCE / "espnetv2_cityscapes_state_dict.json"
TEST_SIZE = (1024, 512)  # W x H: the training and reference test resolution
FRAME_A = "frankfurt_000001_058914"
FRAME_B = "frankfurt_000000_000294"
LABEL_A = CITYSCAPES / f"{FRAME_A}_gtFine_labelTrainIds_fromcolor.png"
LABEL_B = CITYSCAPES / f"{FRAME_B}_gtFine_labelTrainIds_256x128.png"
IGNORE = 255


@pytest.fixture(scope="module")
def nets():
    """Untrained networks, one per scale, built on first use."""
    cache = {}

    def get(scale: float):
        if scale not in cache:
            torch.manual_seed(0)
            cache[scale] = create_model("espnetv2", scale=scale).eval()
        return cache[scale]
    return get


@pytest.fixture(scope="module")
def pretrained():
    cache = {}

    def get(scale: float):
        if scale not in cache:
            model = create_model("espnetv2", scale=scale).eval()
            load_into(model, espnetv2_weights(scale))
            cache[scale] = model
        return cache[scale]
    return get


def load_frame(name: str, size=TEST_SIZE) -> torch.Tensor:
    """The reference test script's input: PIL bilinear resize to ``size`` (W x H); here as 0..255 floats."""
    img = Image.open(CITYSCAPES / f"{name}_leftImg8bit.png").convert("RGB").resize(size, Image.BILINEAR)
    return torch.from_numpy(np.array(img)).permute(2, 0, 1)[None].float()


@pytest.fixture(scope="module")
def city_logits(pretrained):
    cache = {}

    def get(scale: float, frame: str, size=TEST_SIZE) -> torch.Tensor:
        key = (scale, frame, size)
        if key not in cache:
            with torch.no_grad():
                cache[key] = pretrained(scale)(load_frame(frame, size))
        return cache[key]
    return get


def reference_accuracy(logits: torch.Tensor, label_path) -> float:
    """EdgeNets' test_segmentation.py protocol: argmax over all 20 outputs at network resolution, the label
    map resized to the label's size with PIL NEAREST; accuracy over labelled pixels (background counts wrong)."""
    label = np.array(Image.open(label_path))
    pred = Image.fromarray(logits[0].argmax(0).to(torch.uint8).numpy())
    pred = np.array(pred.resize(label.shape[::-1], Image.NEAREST))
    valid = label != IGNORE
    return float((pred[valid] == label[valid]).mean())


def bilinear_accuracy(logits: torch.Tensor, label_path) -> float:
    """Scores as oodbench computes them: the network card's protocol cuts the logits to the 19 classes and resizes
    them bilinearly to the label's size; then argmax."""
    label = torch.from_numpy(np.array(Image.open(label_path))).long()
    up = load_network_card("espnetv2_cityscapes").protocol.restore(logits, tuple(label.shape))
    valid = label != IGNORE
    return float((up[0].argmax(0)[valid] == label[valid]).float().mean())


@needs(MANIFEST)
@pytest.mark.parametrize("scale", [2.0, 1.0])
def test_state_dict_matches_manifest(nets, scale):
    ref = json.loads(MANIFEST.read_text())["checkpoints"][f"espnetv2_s_{scale:.1f}_city_1024x512.pth"]
    sd = nets(scale).state_dict()
    expected = {e["key"]: e for e in ref["entries"]}
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    assert not missing and not unexpected, f"missing: {missing[:10]}; unexpected: {unexpected[:10]}"
    assert list(sd) == [e["key"] for e in ref["entries"]], "key order differs from the published checkpoint"
    wrong = [(k, tuple(sd[k].shape), str(sd[k].dtype), e["shape"], e["dtype"]) for k, e in expected.items()
             if list(sd[k].shape) != e["shape"] or sd[k].dtype != getattr(torch, e["dtype"])]
    assert not wrong, f"shape/dtype differs (key, ours, ours, manifest, manifest): {wrong[:10]}"
    assert len(sd) == ref["num_entries"]
    assert sum(v.numel() for v in sd.values()) == ref["num_parameters_incl_buffers"]
    per_top = collections.Counter(k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("base_net.") else "")
                                  for k in sd)
    assert dict(per_top) == ref["entries_per_top_module"]
    assert not any("normalize" in k for k in sd)


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_other_scales_run(nets, scale):
    with torch.no_grad():
        out = nets(scale)(torch.rand(1, 3, 64, 128, generator=torch.Generator().manual_seed(0)) * 255)
    assert out.shape == (1, 20, 64, 128) and torch.isfinite(out).all()


@pytest.mark.parametrize("scale", [1.25, 3.0, 0])
def test_unknown_scale_is_refused(scale):
    with pytest.raises(ValueError, match=r"0\.5, 1\.0, 1\.5, 2\.0"):
        create_model("espnetv2", scale=scale)


def test_normalization_matches_reference_transform(nets):
    x = torch.tensor([0.0, 127.0, 255.0]).view(1, 1, 1, 3).expand(1, 3, 2, 3)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    assert torch.equal(nets(2.0).normalize(x), (x / 255.0 - mean) / std)


@needs(espnetv2_weights(2.0), espnetv2_weights(1.0))
@pytest.mark.parametrize("scale", [2.0, 1.0])
def test_published_weights_load_strictly(pretrained, scale):
    sd = torch.load(espnetv2_weights(scale), map_location="cpu", weights_only=True)
    ours = pretrained(scale).state_dict()
    assert list(ours) == list(sd) and all(torch.equal(ours[k], v) for k, v in sd.items())


def test_mismatched_checkpoint_is_refused(nets, tmp_path):
    # Zero-stride views keep the file tiny: only names and shapes matter to the key check.
    sd = collections.OrderedDict((k, torch.zeros((), dtype=v.dtype).expand(v.shape))
                                 for k, v in nets(1.0).state_dict().items())
    del sd["base_net.level4.3.spp_dw.2.conv.weight"]
    sd["bu_dec_l4.merge_layer.3.weights"] = sd.pop("bu_dec_l4.merge_layer.3.weight")
    torch.save(sd, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_into(nets(1.0), tmp_path / "bad.pth")
    msg = str(err.value)
    assert "2 missing keys: base_net.level4.3.spp_dw.2.conv.weight, bu_dec_l4.merge_layer.3.weight;" in msg
    assert "1 unexpected keys: bu_dec_l4.merge_layer.3.weights." in msg and "shape mismatch" not in msg


@needs(espnetv2_weights(2.0), CITYSCAPES / f"{FRAME_A}_leftImg8bit.png", LABEL_A)
def test_s2_reaches_reference_accuracy_full_label(city_logits):
    logits = city_logits(2.0, FRAME_A)
    assert logits.shape == (1, 20, 512, 1024)
    assert reference_accuracy(logits, LABEL_A) == pytest.approx(0.947, abs=0.005)
    assert bilinear_accuracy(logits, LABEL_A) == pytest.approx(0.947, abs=0.005)


@needs(espnetv2_weights(2.0), CITYSCAPES / f"{FRAME_B}_leftImg8bit.png", LABEL_B)
def test_s2_reaches_reference_accuracy_small_label(city_logits):
    assert reference_accuracy(city_logits(2.0, FRAME_B), LABEL_B) == pytest.approx(0.952, abs=0.005)


@needs(espnetv2_weights(1.0), CITYSCAPES / f"{FRAME_A}_leftImg8bit.png", LABEL_A)
def test_s1_is_plausible(city_logits):
    assert reference_accuracy(city_logits(1.0, FRAME_A), LABEL_A) > 0.9  # measured 0.934


def test_sizes_divisible_by_16_match_reference_upsampling(nets):
    """The reference decoder upsamples with scale_factor=2; at sides divisible by 16 ours is bitwise equal."""
    model = nets(1.0)
    x = torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(1)) * 255

    def up(t):
        return F.interpolate(t, scale_factor=2, mode="bilinear", align_corners=True)

    with torch.no_grad():
        s2, s4, s8, s16 = model.base_net(model.normalize(x))
        y = model.bu_dec_l1(s16)
        y = model.bu_dec_l2(model.bu_br_l2(model.merge_enc_dec_l2(s8) + up(y)))
        y = model.bu_dec_l3(model.bu_br_l3(model.merge_enc_dec_l3(s4) + up(y)))
        y = model.bu_dec_l4(model.bu_br_l4(model.merge_enc_dec_l4(s2) + up(y)))
        expected = F.interpolate(y, size=(64, 96), mode="bilinear", align_corners=True)
        assert torch.equal(model(x), expected)


@pytest.mark.parametrize("hw", [(512, 1024), (500, 700)])
def test_logits_at_input_size(nets, hw):
    """Sides not divisible by 16 (where the reference fails) run: features at ceil-halved sizes."""
    model = nets(2.0)
    x = torch.rand(1, 3, *hw, generator=torch.Generator().manual_seed(2)) * 255
    with torch.no_grad():
        feats = model.base_net(model.normalize(x))
        out = model(x)
    sides = [tuple(-(-s // 2 ** i) for s in hw) for i in (1, 2, 3, 4)]
    assert [tuple(f.shape[-2:]) for f in feats] == sides
    assert out.shape == (1, 20, *hw) and torch.isfinite(out).all()


@needs(espnetv2_weights(2.0), CITYSCAPES / f"{FRAME_A}_leftImg8bit.png", LABEL_A)
def test_size_not_divisible_by_16_still_segments(city_logits):
    logits = city_logits(2.0, FRAME_A, size=(1000, 500))
    assert logits.shape == (1, 20, 500, 1000)
    assert reference_accuracy(logits, LABEL_A) > 0.93  # measured 0.947
