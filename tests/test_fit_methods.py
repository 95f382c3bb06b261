"""Methods with a fit stage: the Mahalanobis score against scikit-learn's closed form, its streaming fit against the
batch formulas, SML's boundary suppression and dilated smoothing on hand-built maps, the networks' penultimate
features, the fit cache by content key, the fit split, and a plugin-style method with its own fit."""
import json
import warnings

import numpy as np
import pytest
import scipy.ndimage
import scipy.spatial.distance
import torch
from PIL import Image
from realdata import CITYSCAPES, ROAD_ANOMALY, espnetv2_weights, needs
from sklearn.covariance import EmpiricalCovariance
from torch import nn

from oodbench.data import load_dataset
from oodbench.data.base import Sample
from oodbench.errors import OodbenchError
from oodbench.evaluation.runner import run
from oodbench.methods import METHODS, create_method
from oodbench.methods.boundary_smoothing import BoundarySmoothing, class_boundaries, gaussian_kernel
from oodbench.methods.fit_split import LOOSE, LooseFrames, fit_split
from oodbench.methods.fitted import FittedMethod
from oodbench.methods.mahalanobis import GaussianFit, Mahalanobis
from oodbench.methods.model_score import ModelScoreMethod
from oodbench.models import create_model
from oodbench.models.network_cards import InferenceProtocol

D, K, H, W = 4, 3, 6, 7


def hand_made(frames: int = 2, seed: int = 0):
    """Per frame: features (D,H,W) with class-dependent offsets, logits whose argmax is a known class map."""
    rng = np.random.default_rng(seed)
    classes = rng.integers(0, K, size=(frames, H, W))
    offsets = rng.normal(0, 3, size=(K, D))
    feats = rng.normal(size=(frames, D, H, W)) + offsets[classes].transpose(0, 3, 1, 2)
    logits = np.eye(K)[classes].transpose(0, 3, 1, 2) * 5.0
    return torch.tensor(feats, dtype=torch.float32), torch.tensor(logits, dtype=torch.float32), classes


def fake_mahalanobis(feats, logits, **options) -> tuple[Mahalanobis, list[list[Sample]]]:
    """A Mahalanobis whose network is replaced by the hand-made maps: frame i's image is filled with i."""
    m = Mahalanobis(device="cpu", **options)
    index = lambda images: torch.from_numpy(images[:, 0, 0, 0].astype(np.int64))  # noqa: E731
    m.logits_and_features = lambda images: (logits[index(images)], feats[index(images)])
    images = [np.full((H, W, 3), i, dtype=np.uint8) for i in range(len(feats))]
    return m, [[Sample(str(i), im, None)] for i, im in enumerate(images)]


def test_mahalanobis_score_equals_the_closed_form():
    feats, logits, classes = hand_made()
    m, batches = fake_mahalanobis(feats, logits)
    stats = m.fit(batches)
    m.use_fit(stats)
    x = feats.permute(0, 2, 3, 1).reshape(-1, D).double().numpy()
    c = classes.ravel()
    mu = np.stack([x[c == k].mean(axis=0) for k in range(K)])
    ec = EmpiricalCovariance(assume_centered=True).fit(x - mu[c])
    np.testing.assert_allclose(stats["means"], mu, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(stats["precision"], ec.precision_, rtol=1e-6, atol=1e-9)
    want = np.sqrt(np.min([ec.mahalanobis(x - mu[k]) for k in range(K)], axis=0)).reshape(2, H, W)
    got = m.distance(feats).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    first = min(scipy.spatial.distance.mahalanobis(x[0], mu[k], ec.precision_) for k in range(K))
    assert got[0, 0, 0] == pytest.approx(first, rel=1e-4)
    assert stats["pixels_per_class"] == np.bincount(c, minlength=K).tolist() and stats["pixels"] == 2 * H * W


def test_streaming_fit_equals_the_batch_fit():
    feats, _, classes = hand_made(frames=3, seed=1)
    x = feats.permute(0, 2, 3, 1).reshape(-1, D)
    c = torch.as_tensor(classes.ravel())
    whole = GaussianFit(K, D)
    whole.update(x, c)
    first, second = GaussianFit(K, D), GaussianFit(K, D)
    for i, part in enumerate(torch.arange(len(x)).chunk(5)):
        (first if i < 3 else second).update(x[part], c[part])
    first.merge(second)
    for a, b in zip(whole.result(), first.result()):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    xn, cn = x.double().numpy(), classes.ravel()
    mu = np.stack([xn[cn == k].mean(axis=0) for k in range(K)])
    np.testing.assert_allclose(whole.result()[2], np.cov((xn - mu[cn]).T, bias=True), rtol=1e-10, atol=1e-12)
    ignored = GaussianFit(K, D)
    ignored.update(x, torch.where(c == 0, -1, c))  # pixels without a class (label 255 -> -1) are left out
    assert ignored.result()[0].tolist() == [0, *np.bincount(cn, minlength=K)[1:].tolist()]


def test_subsampled_fit_is_deterministic_by_seed():
    feats, logits, _ = hand_made()
    fits = []
    for seed in (0, 0, 1):
        m, batches = fake_mahalanobis(feats, logits, pixels_per_image=10, seed=seed)
        fits.append(m.fit(batches))
    assert fits[0] == fits[1] and fits[0]["means"] != fits[2]["means"] and fits[0]["pixels"] == 20
    with pytest.raises(OodbenchError, match="pixels_per_image=0 must be a whole number"):
        Mahalanobis(pixels_per_image=0)
    with pytest.raises(OodbenchError, match="by='size'; group the fit pixels by one of predicted, label"):
        Mahalanobis(by="size")


def test_boundaries_and_suppression_on_a_step_map():
    classes = torch.zeros(1, 5, 16, dtype=torch.long)
    classes[..., 8:] = 1
    assert class_boundaries(classes)[0].nonzero()[:, 1].unique().tolist() == [7, 8]
    step = torch.where(classes == 0, 1.0, 3.0)
    noisy = step.clone()
    noisy[..., 4:12] += torch.arange(40.0).reshape(5, 8)  # anything inside the width-4 band on each side
    suppressed = BoundarySmoothing(dilated_smoothing=False).suppress(noisy, classes)
    torch.testing.assert_close(suppressed, step)
    one_round = BoundarySmoothing(boundary_width=1, boundary_iterations=1, dilated_smoothing=False)
    once = one_round.suppress(noisy, classes)  # only columns 7 and 8 replaced, by their outer neighbours
    want = noisy.clone()
    want[..., 7], want[..., 8] = box_mean(noisy, 6), box_mean(noisy, 9)
    torch.testing.assert_close(once, want)


def box_mean(x: torch.Tensor, col: int) -> torch.Tensor:
    """Mean of column ``col`` over each pixel's rows r-1..r+1, the border row repeated."""
    c = x[0, :, col]
    padded = torch.cat([c[:1], c, c[-1:]])
    return ((padded[:-2] + padded[1:-1] + padded[2:]) / 3)[None]


def test_dilated_smoothing_spreads_a_delta_on_the_dilated_gaussian_grid():
    post = BoundarySmoothing(boundary_suppression=False)
    delta = torch.zeros(1, 41, 41)
    delta[0, 20, 20] = 1.0
    out = post(delta, torch.zeros(1, 41, 41, dtype=torch.long))[0].numpy()
    r = np.arange(-3, 4)
    g = np.exp(-(r[:, None] ** 2 + r[None, :] ** 2) / 2.0)
    want = np.zeros((41, 41))
    want[20 + 6 * r[:, None], 20 + 6 * r[None, :]] = g / g.sum()
    np.testing.assert_allclose(out, want, atol=1e-7)
    rand = torch.rand(2, 30, 50)
    kernel = np.zeros((37, 37))
    kernel[::6, ::6] = gaussian_kernel(7, 1.0).numpy()
    ref = np.stack([scipy.ndimage.correlate(m, kernel, mode="nearest") for m in rand.numpy()])
    np.testing.assert_allclose(post.smooth(rand).numpy(), ref, rtol=1e-5, atol=1e-6)
    flat = torch.full((1, 20, 20), 2.5)
    torch.testing.assert_close(BoundarySmoothing()(flat, torch.arange(400).reshape(1, 20, 20) % 3), flat)


def test_post_processing_options_are_checked():
    with pytest.raises(OodbenchError, match="boundary_width=3 must be a multiple of boundary_iterations=2"):
        BoundarySmoothing(boundary_width=3, boundary_iterations=2)
    with pytest.raises(OodbenchError, match="kernel_size=4 must be odd"):
        BoundarySmoothing(kernel_size=4)
    with pytest.raises(OodbenchError, match="method 'sml' takes no option dilation"):
        create_method("sml", dilation=3)
    with pytest.raises(OodbenchError, match="method 'sml_bs_ds' takes no option radius"):
        create_method("sml_bs_ds", radius=3)
    m = create_method("sml_bs_ds", dilation=3)
    assert m.config()["post_processing"] == {**BoundarySmoothing().describe(), "dilation": 3}
    assert set(create_method("sml_bs").config()["post_processing"]) == {
        "boundary_suppression", "boundary_width", "boundary_iterations", "dilated_smoothing"}
    assert {"sml", "sml_bs", "sml_ds", "sml_bs_ds", "sml_bs_ds_meta", "mahalanobis", "mahalanobis_meta"} <= set(
        METHODS.names())


@pytest.mark.parametrize("arch, options", [("tiny_deeplab", {}), ("espnetv2", {"scale": 0.5, "num_classes": 20}),
                                           ("deeplabv3plus_wrn38", {}), ("deeplabv3plus_resnet18", {"pretrained": False})])
def test_networks_expose_penultimate_features_aligned_with_their_logits(arch, options):
    if arch.endswith("resnet18"):
        pytest.importorskip("timm", reason="timm is not installed (extra timm)")
    torch.manual_seed(0)
    net = create_model(arch, **options).eval()
    x = torch.rand(1, 3, 48, 80) * 255
    with torch.no_grad():
        assert torch.equal(net(x), net.resize(net.classifier(net.features(x)), x.shape[-2:]))
    m = ModelScoreMethod("x", "maxlogit", "baseline", "baseline", device="cpu")
    m.model, m.protocol, m.channels_last = net, InferenceProtocol(input_size=(80, 48), score_channels=19), False
    images = np.random.default_rng(0).integers(0, 256, size=(2, 45, 70, 3), dtype=np.uint8)
    logits, feats = m.logits_and_features(images)
    assert feats.shape == (2, net.classifier.in_channels, 45, 70)
    torch.testing.assert_close(logits, m.logits(images))
    projected = torch.einsum("cd,bdhw->bchw", net.classifier.weight[:19, :, 0, 0], feats)
    bias = net.classifier.bias  # WRN38's classifier has none
    torch.testing.assert_close(logits, projected + (0 if bias is None else bias[:19, None, None]), rtol=1e-4,
                               atol=1e-4)


def test_a_network_without_features_is_refused_by_name():
    m = ModelScoreMethod("x", "maxlogit", "baseline", "baseline", device="cpu")
    m.model = nn.Conv2d(3, 19, 1)
    with pytest.raises(OodbenchError, match="exposes none .*--network espnetv2_cityscapes"):
        m.logits_and_features(np.zeros((1, 4, 4, 3), dtype=np.uint8))


def write_frames(folder, sizes=((32, 48), (32, 48))):
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        frame = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        Image.fromarray(frame).save(folder / f"f_{i:02d}_leftImg8bit.png")
    (folder / "f_00_gtFine_labelTrainIds.png").write_bytes(b"not read")
    return folder


def test_fit_split_is_chosen_and_missing_frames_are_named(tmp_path, monkeypatch):
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    frames = write_frames(tmp_path / "eval" / "cityscapes")
    near = fit_split(None, None, None, embedded=False, near=tmp_path / "eval")
    assert isinstance(near, LooseFrames) and near.ids == ["f_00", "f_01"] and near.name == LOOSE
    assert fit_split(LOOSE, None, frames, embedded=False).fingerprint() == near.fingerprint()
    with pytest.raises(OodbenchError, match=r"no in-distribution frames to fit on; tried .*home/data/cityscapes"):
        fit_split(None, None, None, embedded=False, near=tmp_path)
    with pytest.raises(OodbenchError, match="no Cityscapes frames"):
        LooseFrames(tmp_path)


class MeanMaxLogit(FittedMethod):
    """A plugin's fitted method: the max logit below its mean over the fit frames."""

    fit_kind = "plugin_mean_max_logit"
    fit_params = ("mean",)
    calls = 0

    def __init__(self, shift: float = 0.0, **kwargs):
        super().__init__("plugin_fitted", **kwargs)
        self.shift = shift

    def fit(self, batches):
        type(self).calls += 1
        tops = [self.logits(np.stack([s.image for s in b])).max(dim=1).values.double().mean() for b in batches]
        return {"mean": float(torch.stack(tops).mean()) + self.shift}

    def fit_options(self):
        return {"shift": self.shift}

    def use_fit(self, stats):
        self.score_fn = lambda logits: stats["mean"] - logits.max(dim=1).values


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    """The plugin registered as an entry point would register it, on a random tiny_deeplab, fitting on loose frames."""
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setitem(METHODS._items, "plugin_fitted", MeanMaxLogit)
    torch.manual_seed(0)
    net = create_model("tiny_deeplab")
    monkeypatch.setattr(ModelScoreMethod, "_load", lambda self, progress: (net, {"sha256": "weights-a"}))
    monkeypatch.setattr(MeanMaxLogit, "calls", 0)
    return write_frames(tmp_path / "frames")


def setup(frames, **options):
    m = create_method("plugin_fitted", fit_dataset=LOOSE, fit_root=frames, device="cpu", **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info = m.setup(progress=False)
    assert any("a tiny fit set" in str(w.message) for w in caught)
    return m, info


def test_a_plugin_method_uses_the_fit_stage_and_its_record(plugin, tmp_path):
    m, info = setup(plugin)
    fit = info["fit"]
    assert (fit["kind"], fit["dataset"], fit["num_images"]) == ("plugin_mean_max_logit", LOOSE, 2)
    assert fit["fingerprint"] == LooseFrames(plugin).fingerprint() and "mean" not in fit and len(fit["params"]) == 16
    images = np.stack([LooseFrames(plugin)[0].image])
    top = m.logits(images).max(dim=1).values
    np.testing.assert_allclose(m.predict(images).scores, (m.stats["mean"] - top).numpy(), rtol=1e-6)
    assert [p.name.split("-")[0] for p in (tmp_path / "home" / "fit").iterdir()] == ["plugin_mean_max_logit"]
    assert m.maps_config()["fit"]["stats"] == fit["params"]


def test_fit_cache_hits_on_the_same_content_key_and_misses_on_any_change(plugin, monkeypatch, tmp_path):
    first, _ = setup(plugin)
    again, _ = setup(plugin)
    assert MeanMaxLogit.calls == 1 and again.stats == first.stats
    setup(plugin, shift=1.0)  # a fit option
    assert MeanMaxLogit.calls == 2
    write_frames(plugin, sizes=((32, 48), (32, 48), (16, 16)))  # the fit frames
    setup(plugin)
    assert MeanMaxLogit.calls == 3
    net = create_model("tiny_deeplab")
    monkeypatch.setattr(ModelScoreMethod, "_load", lambda self, progress: (net, {"sha256": "weights-b"}))
    setup(plugin)  # the weights
    assert MeanMaxLogit.calls == 4
    setup(plugin)
    assert MeanMaxLogit.calls == 4
    newest = max((tmp_path / "home" / "fit").iterdir(), key=lambda p: p.stat().st_mtime_ns)
    newest.write_text("{not json")
    setup(plugin)  # a damaged cache entry is fitted again
    assert MeanMaxLogit.calls == 5 and json.loads(newest.read_text())["kind"] == "plugin_mean_max_logit"


@pytest.mark.slow
def test_mahalanobis_runs_on_the_embedded_benchmark_fitted_on_its_training_split(tmp_path):
    record, _ = run("mahalanobis", score_cache=False, components=False, progress=False, out_dir=tmp_path)
    train = load_dataset("synthetic_cityscapes", split="train")
    fit = record["method"]["fit"]
    assert (fit["dataset"], fit["split"], fit["fingerprint"]) == ("synthetic_cityscapes", "train", train.fingerprint())
    assert fit["pixels"] == len(train) * 128 * 256 and fit["dim"] == 64 and fit["by"] == "predicted"
    assert record["method"]["features"] == "penultimate" and 0.5 < record["metrics"]["pixel"]["auroc"] <= 1


@pytest.mark.slow
@needs(CITYSCAPES, ROAD_ANOMALY, espnetv2_weights(2.0))
def test_realdata_fit_on_the_loose_cityscapes_frames(monkeypatch, tmp_path):
    """As `oodbench run --network espnetv2_cityscapes --data-root ../shared/realdata` fits: on the 5 loose frames."""
    monkeypatch.setenv("OODBENCH_HOME", str(tmp_path / "home"))
    frames = LooseFrames(CITYSCAPES)
    infos = {}
    for name in ("sml", "mahalanobis"):
        m = create_method(name, network="espnetv2_cityscapes", checkpoint=espnetv2_weights(2.0), device="cpu")
        m.bind(type("RoadAnomaly", (), {"domain": "real", "root": CITYSCAPES.parent})())
        with pytest.warns(UserWarning, match="fits on 5 frames of cityscapes_frames/frames: a tiny fit set"):
            infos[name] = m.setup(progress=False)["fit"]
        assert (infos[name]["dataset"], infos[name]["num_images"]) == (LOOSE, 5)
        assert infos[name]["fingerprint"] == frames.fingerprint() and infos[name]["pixels"] == 5 * 2048 * 1024
    assert infos["sml"]["pixels_per_class"] == infos["mahalanobis"]["pixels_per_class"]
    road = int(np.argmax(infos["sml"]["pixels_per_class"]))
    assert road == 0 and infos["mahalanobis"]["dim"] == 10  # road dominates street frames; ESPNetv2's head is 10-wide
    means = torch.tensor(m.stats["means"], dtype=torch.float32)
    head = m.model.classifier
    mean_logits = means @ head.weight[:19, :, 0, 0].T + head.bias[:19]  # the mean logit of each class's pixels
    seen = [c for c, n in enumerate(infos["mahalanobis"]["pixels_per_class"]) if n > 0]
    assert mean_logits[seen].argmax(dim=1).tolist() == seen  # {argmax = c} is convex, so holds its mean
    scores = m.predict(np.stack([frames[0].image])).scores
    assert scores.shape == (1, 1024, 2048) and np.isfinite(scores).all() and scores.min() >= 0
