"""DeepLabV3+ on timm backbones: head logic on a fake features_only backbone (always runs), the
registry fallback with a fake timm module, errors for a missing timm, and the real timm path
(skipped, with the reason, wherever ``import timm`` fails for any reason)."""
import os
import subprocess
import sys
import types

import pytest
import torch
from torch import nn

from oodbench.errors import CheckpointError, UnknownNameError
from oodbench.models import timm_deeplab as td
from oodbench.models.registry import MODELS, create_model, list_models


class FakeInfo:
    """The part of timm's FeatureInfo the head reads."""

    def __init__(self, channels, reductions):
        self._c, self._r = list(channels), list(reductions)

    def channels(self):
        return self._c

    def reduction(self):
        return self._r


class FakeBackbone(nn.Module):
    """A features_only-style stack of strided convs: features at strides 2, 4, 8, 16."""

    def __init__(self, channels=(8, 12, 16, 24), output_fmt=None, declare=True, mean=None):
        super().__init__()
        cins = (3,) + tuple(channels[:-1])
        self.stages = nn.ModuleList(nn.Conv2d(a, b, 3, stride=2, padding=1) for a, b in zip(cins, channels))
        self.feature_info = FakeInfo(channels, [2 ** (i + 1) for i in range(len(channels))])
        self.nhwc = output_fmt == "NHWC"
        if declare and output_fmt:
            self.output_fmt = output_fmt
        if mean:
            self.pretrained_cfg = {"mean": mean, "std": (0.5, 0.25, 0.125)}

    def forward(self, x):
        feats = []
        for stage in self.stages:
            x = torch.relu(stage(x))
            feats.append(x.permute(0, 2, 3, 1) if self.nhwc else x)
        return feats


def small_head(backbone, num_classes=5, seed=0):
    torch.manual_seed(seed)
    return td.DeepLabV3Plus(backbone, num_classes, aspp_channels=16, low_channels=8, decoder_channels=16)


def test_select_features_by_reduction():
    assert td.select_features([2, 4, 8, 16, 32]) == (1, 4)
    assert td.select_features([4, 8, 16, 32]) == (0, 3)
    assert td.select_features([8, 16, 32]) == (0, 2)  # no stride 4: the nearest
    assert td.select_features([16, 16, 16]) == (0, 2)  # ViT-like: deepest is the last
    with pytest.raises(ValueError):
        td.select_features([])


def test_logits_at_input_resolution_from_uint8_range():
    torch.manual_seed(0)
    model = small_head(FakeBackbone()).eval()
    assert (model.low_index, model.deep_index) == (1, 3)
    assert model.atrous_rates == (6, 12, 18)  # deepest stride is 16
    x = torch.randint(0, 256, (2, 3, 37, 53), dtype=torch.uint8)
    with torch.no_grad():
        out_u8 = model(x)
        out_f = model(x.float())
    assert out_u8.shape == (2, 5, 37, 53) and out_u8.dtype == torch.float32
    assert torch.isfinite(out_u8).all()
    torch.testing.assert_close(out_u8, out_f)


def test_normalization_uses_backbone_cfg_in_non_persistent_buffers():
    model = small_head(FakeBackbone(mean=(0.5, 0.4, 0.3)))
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.5, 0.4, 0.3]) * 255)
    torch.testing.assert_close(model.std.flatten(), torch.tensor([0.5, 0.25, 0.125]) * 255)
    assert not {"mean", "std"} & set(model.state_dict())
    default = small_head(FakeBackbone())  # no pretrained_cfg: ImageNet statistics
    torch.testing.assert_close(default.mean.flatten(), torch.tensor(td.IMAGENET_MEAN) * 255)


def test_gradients_reach_backbone_and_head_with_batch_of_one():
    model = small_head(FakeBackbone()).train()
    out = model(torch.rand(1, 3, 32, 32) * 255)  # batch 1 in train mode: pooled ASPP branch has no BN
    out.logsumexp(dim=1).mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
    assert model.backbone.stages[0].weight.grad.abs().sum() > 0


@pytest.mark.parametrize("declare", [True, False])
def test_nhwc_backbones_match_nchw(declare):
    nchw = small_head(FakeBackbone()).eval()
    nhwc = small_head(FakeBackbone(output_fmt="NHWC", declare=declare)).eval()
    nhwc.load_state_dict(nchw.state_dict())
    assert nhwc.nhwc is declare
    x = torch.rand(2, 3, 40, 24) * 255
    with torch.no_grad():
        torch.testing.assert_close(nhwc(x), nchw(x))


def fake_timm(created):
    """A stand-in for the timm module: one model name, recording create_model calls."""

    def create_model(name, pretrained=False, features_only=False, **kwargs):
        created.append(dict(name=name, pretrained=pretrained, features_only=features_only, **kwargs))
        if kwargs.pop("bogus", None):
            raise TypeError("unexpected keyword argument 'bogus'")
        if pretrained:
            raise OSError("Name or service not known")
        return FakeBackbone(**kwargs)

    return types.SimpleNamespace(
        is_model=lambda n: n == "fakenet", list_models=lambda: ["fakenet", "othernet"], create_model=create_model
    )


@pytest.fixture
def created(monkeypatch):
    calls = []
    monkeypatch.setattr(td, "import_timm", lambda: fake_timm(calls))
    return calls


def test_registry_falls_back_to_timm_factory(created):
    model = create_model("deeplabv3plus_fakenet", num_classes=7, decoder_channels=32, channels=(4, 6, 8))
    assert isinstance(model, td.DeepLabV3Plus)
    assert created == [dict(name="fakenet", pretrained=False, features_only=True, channels=(4, 6, 8))]
    assert model(torch.zeros(1, 3, 20, 30)).shape == (1, 7, 20, 30)
    assert "deeplabv3plus_fakenet" not in list_models("deeplabv3plus_*")  # timm names are not enumerated


def test_unknown_timm_name_suggests_close_names(created):
    with pytest.raises(UnknownNameError) as err:
        create_model("deeplabv3plus_fakenett")
    msg = str(err.value)
    assert "'deeplabv3plus_fakenett'" in msg and "'deeplabv3plus_fakenet'" in msg and "timm" in msg
    with pytest.raises(UnknownNameError, match="registered"):  # other names never reach timm
        create_model("tiny_deeplb")
    assert created == []


def test_explicit_registration_wins(created, monkeypatch):
    sentinel = object()
    monkeypatch.setitem(MODELS._items, "deeplabv3plus_fakenet", lambda **kw: sentinel)
    assert create_model("deeplabv3plus_fakenet", num_classes=19) is sentinel
    assert created == []


def test_failed_pretrained_fetch_names_model_and_fix(created):
    with pytest.raises(td.PretrainedWeightsError) as err:
        create_model("deeplabv3plus_fakenet", pretrained=True)
    msg = str(err.value)
    assert isinstance(err.value, CheckpointError)
    assert "'fakenet'" in msg and "pretrained=False" in msg and "HF_HOME" in msg
    with pytest.raises(TypeError):  # a bad keyword is not reported as a weights problem
        create_model("deeplabv3plus_fakenet", pretrained=True, bogus=True)


def test_missing_timm_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm -> ImportError
    with pytest.raises(ImportError, match=r'pip install "oodbench\[timm\]"'):
        create_model("deeplabv3plus_resnet18")


def test_broken_timm_import_says_how_to_install(monkeypatch):
    def broken(name):
        raise RuntimeError("operator torchvision::nms does not exist")

    monkeypatch.setattr(td, "importlib", types.SimpleNamespace(import_module=broken))
    with pytest.raises(td.MissingExtraError, match="torchvision::nms") as err:
        create_model("deeplabv3plus_resnet18")
    assert 'pip install "oodbench[timm]"' in str(err.value)


# --- the real timm path ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def timm():
    try:
        import timm as real
    except Exception as exc:  # noqa: BLE001 - e.g. a torchvision built for another torch
        pytest.skip(f"timm unavailable ({type(exc).__name__}: {exc}); install oodbench[timm]")
    return real


@pytest.mark.parametrize(
    "backbone", ["resnet18", pytest.param("convnext_tiny", marks=pytest.mark.slow), "efficientnet_b0"]
)
def test_real_timm_backbones(timm, backbone):
    torch.manual_seed(0)
    model = create_model(f"deeplabv3plus_{backbone}", num_classes=19)
    assert model.backbone.feature_info.reduction()[model.low_index] == 4
    cfg = model.backbone.pretrained_cfg
    torch.testing.assert_close(model.mean.flatten(), torch.tensor(cfg["mean"], dtype=torch.float32) * 255)
    model.train()
    out = model(torch.randint(0, 256, (2, 3, 72, 88), dtype=torch.uint8))
    assert out.shape == (2, 19, 72, 88)
    out.mean().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_real_timm_nhwc_backbone(timm):
    model = create_model("deeplabv3plus_swin_tiny_patch4_window7_224", num_classes=3).eval()
    assert model.nhwc
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 3, 224, 224)


def test_real_timm_unknown_name(timm):
    with pytest.raises(UnknownNameError, match="'deeplabv3plus_resnet18'"):
        create_model("deeplabv3plus_resnt18")


@pytest.mark.slow
def test_real_timm_pretrained_offline_is_cached_or_clear(timm):
    """Offline: weights come from the local cache, or the error names the model and the fix."""
    code = (
        "from oodbench.models.registry import create_model\n"
        "from oodbench.models.timm_deeplab import PretrainedWeightsError\n"
        "try:\n    create_model('deeplabv3plus_resnet18', pretrained=True); print('CACHED')\n"
        "except PretrainedWeightsError as e:\n    print('ERROR', e)\n"
    )
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = res.stdout.strip()
    assert out == "CACHED" or ("'resnet18'" in out and "pretrained=False" in out), out
