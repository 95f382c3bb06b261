"""DeepLabV3+ WiderResNet38: state dict and geometry against the reference manifest, published checkpoint
structure through the strict loader, and a finite forward pass. The model (137 M parameters) is built once."""
import collections
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from oodbench.errors import CheckpointError
from oodbench.models import create_model
from oodbench.models.checkpoint import load_into

REFERENCE_DIR = Path(os.environ.get("OODBENCH_REFERENCE_DIR", Path(__file__).resolve().parents[2] / "shared" / "reference"))
MANIFEST_PATH = REFERENCE_DIR / "deeplabv3plus_wrn38_state_dict.json"
needs_manifest = pytest.mark.skipif(not MANIFEST_PATH.is_file(), reason=f"reference manifest not found at {MANIFEST_PATH}")

# Manifest feature-shape entries -> (module, "in" for its input or "out" for its output); None = model output.
FEATURE_TAPS = {
    "mod1": ("mod1", "out"), "pool2": ("pool2", "out"), "mod2 (m2)": ("mod2", "out"), "pool3": ("pool3", "out"),
    "mod3": ("mod3", "out"), "mod4": ("mod4", "out"), "mod5": ("mod5", "out"), "mod6": ("mod6", "out"),
    "mod7": ("mod7", "out"), "aspp": ("aspp", "out"), "bot_aspp": ("bot_aspp", "out"), "bot_fine": ("bot_fine", "out"),
    "concat(bot_fine, upsampled bot_aspp)": ("final", "in"), "final": ("final", "out"), "output": None,
}


@pytest.fixture(scope="module")
def manifest():
    return json.loads(MANIFEST_PATH.read_text())


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("deeplabv3plus_wrn38", num_classes=19).eval()


def synthetic_state_dict(model: nn.Module, seed: int = 1) -> dict[str, torch.Tensor]:
    """Seeded weights unlike the model's init: He-scaled convs, non-trivial BN affine and running stats."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, v in model.state_dict().items():
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(1234, dtype=torch.int64)
        elif k.endswith(("running_var", ".weight")) and v.dim() == 1:
            sd[k] = torch.rand(v.shape, generator=g) + 0.5
        elif v.dim() == 1:
            sd[k] = torch.randn(v.shape, generator=g) * 0.1
        else:
            sd[k] = torch.randn(v.shape, generator=g) * (2.0 / v[0].numel()) ** 0.5
    return sd


@needs_manifest
def test_state_dict_matches_manifest(model, manifest):
    sd = model.state_dict()
    expected = {e["key"]: e for e in manifest["entries"]}
    missing, unexpected = sorted(set(expected) - set(sd)), sorted(set(sd) - set(expected))
    assert not missing and not unexpected, f"missing: {missing}; unexpected: {unexpected}"
    assert list(sd) == [e["key"] for e in manifest["entries"]], "key order differs from the reference"
    wrong = [(k, tuple(sd[k].shape), str(sd[k].dtype), e["shape"], e["dtype"]) for k, e in expected.items()
             if list(sd[k].shape) != e["shape"] or sd[k].dtype != getattr(torch, e["dtype"])]
    assert not wrong, f"shape/dtype differs (key, ours, ours, manifest, manifest): {wrong[:10]}"
    assert len(sd) == manifest["num_entries"]
    assert sum(p.numel() for p in model.parameters()) == manifest["num_parameters"]
    per_module = collections.Counter()
    for name, p in model.named_parameters():
        per_module[name.split(".")[0]] += p.numel()
    assert dict(per_module) == manifest["parameters_per_top_level_module"]


@needs_manifest
def test_layer_geometry_matches_manifest(model, manifest):
    convs = {n + ".weight": m for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == manifest["num_conv2d"] and len(bns) == manifest["num_batchnorm2d"]
    for ref in manifest["conv_layers"]:
        c = convs[ref["key"]]
        ours = {"in": c.in_channels, "out": c.out_channels, "kernel": list(c.kernel_size), "stride": list(c.stride),
                "padding": list(c.padding), "dilation": list(c.dilation), "groups": c.groups, "bias": c.bias is not None}
        assert ours == {k: ref[k] for k in ours}, ref["key"]
    assert all(m.eps == 1e-5 and m.momentum == 0.1 and m.affine and m.track_running_stats for m in bns)
    dropouts = {n: m.p for n, m in model.named_modules() if isinstance(m, nn.modules.dropout._DropoutNd)}
    assert dropouts == {"mod6.block1.convs.dropout": 0.3, "mod7.block1.convs.dropout": 0.5}
    assert all(isinstance(m, nn.Dropout2d) for n, m in model.named_modules() if n in dropouts)
    for name in ("pool2", "pool3"):
        pool = getattr(model, name)
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 2, 1)


def run_with_taps(model: nn.Module, x: torch.Tensor, names) -> tuple[dict, dict, torch.Tensor]:
    """Forward ``x`` once, recording the first input and the output of each named submodule."""
    inputs, outputs, handles = {}, {}, []

    def record(name):
        def hook(module, args, out):
            inputs[name], outputs[name] = args[0], out
        return hook

    for name in names:
        handles.append(model.get_submodule(name).register_forward_hook(record(name)))
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        for h in handles:
            h.remove()
    return inputs, outputs, out


@needs_manifest
def test_feature_shapes_match_manifest(model, manifest):
    expected = manifest["feature_shapes_for_1x3x128x256"]
    assert set(expected) == set(FEATURE_TAPS), "manifest lists feature maps this test does not tap"
    names = {tap[0] for tap in FEATURE_TAPS.values() if tap is not None}
    inputs, outputs, out = run_with_taps(model, torch.rand(1, 3, 128, 256) * 255, names)
    seen = {label: list((inputs if tap[1] == "in" else outputs)[tap[0]].shape) for label, tap in FEATURE_TAPS.items() if tap}
    assert {**seen, "output": list(out.shape)} == expected

    # Wiring the shapes cannot show: skip from mod2, no BN/ReLU after mod7, pooled ASPP branch first,
    # align_corners=True resizes.
    assert inputs["bot_fine"] is outputs["mod2"] and inputs["aspp"] is outputs["mod7"]
    pooled = outputs["aspp"][:, :256]
    assert torch.equal(pooled, pooled[:, :, :1, :1].expand_as(pooled))
    assert not torch.equal(outputs["aspp"][:, 256:512], outputs["aspp"][:, 256:512, :1, :1].expand(1, 256, 16, 32))
    up = nn.functional.interpolate(outputs["bot_aspp"], size=(64, 128), mode="bilinear", align_corners=True)
    assert torch.equal(inputs["final"], torch.cat([outputs["bot_fine"], up], dim=1))
    assert torch.equal(out, nn.functional.interpolate(outputs["final"], size=(128, 256), mode="bilinear", align_corners=True))


def test_normalization_is_inside_and_not_in_state_dict(model):
    assert not any("normalize" in k for k in model.state_dict())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    x = torch.tensor([0.0, 127.0, 255.0]).view(1, 1, 1, 3).expand(1, 3, 2, 3)
    assert torch.equal(model.normalize(x), (x / 255.0 - mean) / std)
    assert model.num_classes == 19 and model.output_stride == 8


def test_published_checkpoint_loads_and_runs(model, tmp_path):
    sd = synthetic_state_dict(model)
    path = tmp_path / "DeepLabV3+_WideResNet38_epoch_4_alpha_0.9.pth"
    torch.save({"epoch": 4, "state_dict": collections.OrderedDict(("module." + k, v) for k, v in sd.items()),
                "optimizer_state_dict": {"state": {}, "param_groups": [{"lr": 1e-5, "params": [0, 1]}]},
                "loss": torch.tensor(0.25, requires_grad=True)}, path)
    info = load_into(model, path)
    assert info["epoch"] == 4 and len(info["sha256"]) == 64
    loaded = model.state_dict()
    assert set(loaded) == set(sd)
    assert all(torch.equal(loaded[k], v) and loaded[k].dtype == v.dtype for k, v in sd.items())
    model.eval()
    with torch.no_grad():
        out = model(torch.rand(1, 3, 64, 96, generator=torch.Generator().manual_seed(0)) * 255)
    assert out.shape == (1, 19, 64, 96) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.std() > 0


def test_missing_and_renamed_keys_are_listed(model, tmp_path):
    # Zero-stride views keep the file tiny: only names and shapes matter to the key check.
    sd = collections.OrderedDict((k, torch.zeros((), dtype=v.dtype).expand(v.shape)) for k, v in model.state_dict().items())
    del sd["mod4.block3.convs.conv1.weight"]
    sd["aspp.img_conv.0.weights"] = sd.pop("aspp.img_conv.0.weight")
    torch.save({"state_dict": {"module." + k: v for k, v in sd.items()}}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as err:
        load_into(model, tmp_path / "bad.pth")
    msg = str(err.value)
    assert "2 missing keys" in msg and "mod4.block3.convs.conv1.weight" in msg and "aspp.img_conv.0.weight," in msg
    assert "1 unexpected keys: aspp.img_conv.0.weights" in msg
    assert "shape mismatch" not in msg
