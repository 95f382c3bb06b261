"""``sml`` (standardized max logit): class statistics fitted on the in-distribution split equal an independent
computation over the same frames, the score standardizes the max logit by them, the fit is cached by content key
and recorded with the split and its fingerprint; sml_bs_ds post-processes exactly that map with the same fit."""
import numpy as np
import pytest
import torch

from oodbench.data import load_dataset
from oodbench.evaluation.runner import run
from oodbench.methods import create_method
from oodbench.methods.boundary_smoothing import BoundarySmoothing
from oodbench.methods.sml import StandardizedMaxLogit
from oodbench.training.embedded import ensure_model


@pytest.fixture(scope="module")
def fitted():
    method = create_method("sml")
    method.bind(load_dataset("synthetic", split="test"))
    info = method.setup(progress=False)
    return method, info


def test_statistics_equal_an_independent_pass_over_the_fit_split(fitted):
    method, info = fitted
    model, _ = ensure_model("baseline", progress=False)
    frames = load_dataset("synthetic_cityscapes", split="train")
    top_all, cls_all = [], []
    with torch.no_grad():
        for sample in frames:
            logits = model(torch.from_numpy(sample.image[None].copy()).permute(0, 3, 1, 2).float())
            top, cls = logits.max(dim=1)
            top_all.append(top.double().ravel().numpy())
            cls_all.append(cls.ravel().numpy())
    top, cls = np.concatenate(top_all), np.concatenate(cls_all)
    fit = info["fit"]
    assert (fit["dataset"], fit["split"], fit["num_images"]) == ("synthetic_cityscapes", "train", len(frames))
    assert fit["fingerprint"] == frames.fingerprint()
    assert fit["pixels_per_class"] == np.bincount(cls, minlength=len(fit["pixels_per_class"])).tolist()
    assert fit["pixels"] == len(cls) and fit["kind"] == "sml" and "mean" not in fit
    for c in np.unique(cls):
        assert method.stats["mean"][c] == pytest.approx(top[cls == c].mean(), rel=1e-6, abs=1e-6)
        assert method.stats["std"][c] == pytest.approx(top[cls == c].std(ddof=1), rel=1e-5, abs=1e-6)
    unseen = [c for c, n in enumerate(fit["pixels_per_class"]) if n < 2]
    assert fit["classes_pooled"] == len(unseen)
    for c in unseen:
        assert method.stats["mean"][c] == pytest.approx(top.mean(), rel=1e-6)


def test_score_is_the_standardized_max_logit(fitted):
    method, _ = fitted
    images = np.stack([s.image for s in load_dataset("synthetic", split="test")][:2])
    logits = method.logits(images)
    top, cls = logits.max(dim=1)
    mean, std = torch.tensor(method.stats["mean"]), torch.tensor(method.stats["std"])
    want = ((mean[cls] - top) / std[cls]).numpy()
    np.testing.assert_allclose(method.predict(images).scores, want, rtol=1e-6, atol=1e-6)


def test_fit_is_cached_and_recorded(fitted, monkeypatch, tmp_path):
    again = create_method("sml")
    again.bind(load_dataset("synthetic", split="test"))
    with monkeypatch.context() as patch:
        patch.setattr(StandardizedMaxLogit, "logits", lambda *a, **k: pytest.fail("fitted again, not read back"))
        info = again.setup(progress=False)
    assert info["fit"] == fitted[1]["fit"] and again.stats == fitted[0].stats
    record, _ = run("sml", score_cache=False, progress=False, out_dir=tmp_path)
    assert record["method"]["fit"]["fingerprint"] == info["fit"]["fingerprint"]
    assert record["method"]["score"] == "standardized max logit"


def test_boundary_suppression_and_smoothing_post_process_the_same_fit(fitted, monkeypatch):
    method, info = fitted
    full = create_method("sml_bs_ds")
    full.bind(load_dataset("synthetic", split="test"))
    with monkeypatch.context() as patch:
        patch.setattr(StandardizedMaxLogit, "logits", lambda *a, **k: pytest.fail("fitted again, not read back"))
        assert full.setup(progress=False)["fit"] == info["fit"]
    images = np.stack([s.image for s in load_dataset("synthetic", split="test")][:2])
    plain = torch.from_numpy(method.predict(images).scores)
    want = BoundarySmoothing()(plain, method.logits(images).argmax(dim=1))
    np.testing.assert_allclose(full.predict(images).scores, want.numpy(), rtol=1e-5, atol=1e-5)
    assert full.config()["post_processing"] == {"boundary_suppression": True, "boundary_width": 4,
                                                "boundary_iterations": 4, "dilated_smoothing": True,
                                                "kernel_size": 7, "dilation": 6, "sigma": 1.0}
    assert full.maps_config() != method.maps_config() and full.cache_identity() != method.cache_identity()
