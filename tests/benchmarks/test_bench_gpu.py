"""GPU throughput (issue 7), measured when a GPU is lent; without CUDA every test here skips.

The paper's network (deeplabv3plus_wrn38, 137 M parameters, random weights in the released file structure) on
1024x2048 frames: forward passes alone in fp32 and in fp16-autocast channels-last, and ``run`` end to end (score
cache, pixel state, component metrics, loading and metrics overlapping the model) on a LostAndFound-layout split. Images/s and ratios are printed and kept
in ``extra_info``:  python -m pytest tests/benchmarks/test_bench_gpu.py --benchmark-only -s
"""
import time

import pytest
import torch

from oodbench.models import create_model
from oodbench.evaluation.runner import run

from real_layouts import write_laf

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="no CUDA device: GPU throughput is measured when one is lent")
H, W, FRAMES, PASSES = 1024, 2048, 24, 8


@pytest.fixture(scope="module")
def laf(tmp_path_factory):
    stems = {f"04_Maurener_Weg_8_{i:06d}_{30 + i:06d}": [2, 33] for i in range(FRAMES)}
    return write_laf(tmp_path_factory.mktemp("gpu") / "lost_and_found", "test", stems, h=H, w=W)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "DeepLabV3+_WideResNet38_epoch_4_alpha_0.9.pth"
    torch.manual_seed(0)
    model = create_model("deeplabv3plus_wrn38", num_classes=19)
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}, "epoch": 4}, path)
    return path


def _report(benchmark, **figures):
    benchmark.extra_info.update(figures)
    print("\n" + ", ".join(f"{k} {v:.3g}" for k, v in figures.items()))


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "fp16-channels-last"])
def test_forward_images_per_second(benchmark, amp):
    model = create_model("deeplabv3plus_wrn38", num_classes=19).cuda().eval()
    x = torch.rand(1, 3, H, W, device="cuda") * 255
    if amp:
        model, x = model.to(memory_format=torch.channels_last), x.contiguous(memory_format=torch.channels_last)

    @torch.no_grad()
    def forward():
        with torch.autocast("cuda", dtype=torch.float16, enabled=amp):
            for _ in range(PASSES):
                out = model(x)
        torch.cuda.synchronize()
        return out

    out = benchmark.pedantic(forward, rounds=3, warmup_rounds=1, iterations=1)
    assert out.shape == (1, 19, H, W) and torch.isfinite(out.float()).all()
    if benchmark.stats is not None:
        _report(benchmark, images_per_second=PASSES / benchmark.stats.stats.min)


@pytest.mark.parametrize("amp", [False, True], ids=["fp32", "fp16-channels-last"])
def test_run_images_per_second(benchmark, laf, checkpoint, tmp_path, amp, monkeypatch):
    """`run --method entmax` with components at the oracle threshold, everything on."""
    from oodbench.methods import model_score

    init = model_score.ModelScoreMethod.__init__
    monkeypatch.setattr(model_score.ModelScoreMethod, "__init__",
                        lambda self, *a, **k: init(self, *a, **{**k, "amp": amp}))
    records = []

    def evaluate():
        record, _ = run("entmax", dataset="lostandfound", data_root=laf, progress=False,
                        dataset_options={"expected": FRAMES}, checkpoint=checkpoint,
                        cache_root=tmp_path / f"c{time.time_ns()}")
        records.append(record)

    benchmark.pedantic(evaluate, rounds=2, warmup_rounds=0, iterations=1)
    best = min(records, key=lambda r: r["cost"]["evaluation_seconds"])
    assert best["metrics"]["pixel"]["num_pos"] > 0 and best["method"]["precision"].startswith("fp16" if amp else "fp32")
    cost = best["cost"]
    _report(benchmark, images_per_second=cost["images_per_second"],
            model_images_per_second=FRAMES / cost["model_seconds"],
            overhead_over_model_seconds=cost["evaluation_seconds"] / cost["model_seconds"] - 1)
