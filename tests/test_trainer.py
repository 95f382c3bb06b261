"""The one trainer on small Cityscapes + COCO-proxy fixtures in the real layouts: entropy maximization in both
proxy modes, closed-set training, streaming data, bit-identical resume (indexed and stream sampling), weights_only
checkpoints, the JSONL log, AMP, torchrun-style DDP over gloo, and the CLI."""
from __future__ import annotations

import json
import math
import os
import socket

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from oodbench.cli import main
from oodbench.data import DATASETS
from oodbench.errors import CheckpointError, OodbenchError
from oodbench.models import MODELS, create_model
from oodbench.models.checkpoint import load_into, save_checkpoint
from oodbench.models.tiny_deeplab import TinyDeepLab
from oodbench.scores import SCORES
from oodbench.training.config import TrainConfig
from oodbench.training.distributed import init_distributed, shutdown
from oodbench.training.loss import OOD_ID
from oodbench.training.proxy import paste_proxy
from oodbench.training.trainer import Trainer, run_training

from layout_files import write_training_roots

CS_OPTIONS = {"expected": False}
TINY = {"width": 8}


class _DropoutTiny(nn.Module):
    """tiny_deeplab with dropout on its logits, so a resumed run matches only if the torch RNG state is restored."""

    def __init__(self, num_classes: int = 19, width: int = 8):
        super().__init__()
        self.net, self.drop = TinyDeepLab(num_classes, width), nn.Dropout(0.3)

    def forward(self, x):
        return self.drop(self.net(x))


MODELS.add("test_tiny_dropout", _DropoutTiny, overwrite=True)


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    return write_training_roots(tmp_path_factory.mktemp("entmax_data"))


def _cfg(roots, **kw) -> TrainConfig:
    cs, coco = roots
    base = dict(data_root=str(cs), proxy_root=str(coco), dataset_options=CS_OPTIONS, model="tiny_deeplab",
                model_options=TINY, epochs=1, lr=1e-3, batch_size=2, crop=48, workers=0, log_every=1,
                proxy_fraction=0.5)
    return TrainConfig(**{**base, **kw})


def _records(out, event=None):
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if event is None or r["event"] == event]


def _states_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("mode", ["whole", "paste"])
def test_both_proxy_modes_train_log_and_checkpoint(roots, tmp_path, mode):
    summary = run_training(_cfg(roots, proxy_mode=mode, epochs=2), tmp_path, progress=False)
    assert summary["finished"] and summary["epoch"] == 2
    train = _records(tmp_path, "train")
    assert len(train) == summary["step"] and all(math.isfinite(r["loss"]) for r in train)
    epochs = _records(tmp_path, "epoch")
    assert [r["epoch"] for r in epochs] == [1, 2] and all(math.isfinite(r["loss"]) for r in epochs)
    val = _records(tmp_path, "val")
    assert [(r["epoch"], r["step"]) for r in val][0] == (0, 0) and val[-1]["epoch"] == 2
    end = _records(tmp_path, "end")[0]
    assert end["miou_before"] == val[0]["miou"] and end["miou_after"] == val[-1]["miou"]
    state = torch.load(tmp_path / "last.pt", weights_only=True)
    assert state["epoch"] == 2 and state["step_in_epoch"] == 0 and state["global_step"] == summary["step"]
    assert {"torch", "cuda", "numpy", "python"} <= set(state["rng"]) and state["optimizer"]["state"]
    model = create_model("tiny_deeplab", num_classes=19, **TINY)
    meta = load_into(model, tmp_path / "model.pt")
    assert meta["epoch"] == 2 and meta["proxy_mode"] == mode
    assert _states_equal(model.state_dict(), state["model"])


def test_trailing_single_sample_batch_is_dropped(roots, tmp_path):
    summary = run_training(_cfg(roots, proxy_mode="paste", batch_size=7, val_every=0), tmp_path, progress=False)
    assert summary["step"] == 1  # 8 frames: one batch of 7; a lone 8th sample would break BatchNorm on 1x1 features


@pytest.mark.parametrize("recipe", [
    {"model": "test_tiny_dropout", "model_options": {}},  # dropout: matches only if the torch RNG state is restored
    {"objective": "cross_entropy", "schedule": "onecycle", "sampling": "stream", "channels_last": True},  # embedded
], ids=["entmax-indexed", "closed-set-stream-onecycle"])
def test_resume_is_bit_identical(roots, tmp_path, recipe):
    """2 epochs in one go == 1 epoch + resume, and == a run cut mid-epoch by --max-steps + resume (with Adam kept
    across epochs so the restored optimizer state matters; the one-cycle schedule's state and the stream's draws
    too)."""
    def cfg(**kw):
        return _cfg(roots, fresh_optimizer=False, **recipe, **kw)

    full = run_training(cfg(epochs=2), tmp_path / "full", progress=False)
    runs = {}
    if recipe.get("schedule") == "onecycle":  # sized for the run's epochs, which a resume therefore keeps
        with pytest.raises(CheckpointError, match="epochs: checkpoint 2, now 3"):
            run_training(cfg(epochs=3), tmp_path / "full", resume=True, progress=False)
    else:
        run_training(cfg(epochs=1), tmp_path / "split", progress=False)
        runs["split"] = run_training(cfg(epochs=2), tmp_path / "split", resume=True, progress=False)
    cut = run_training(cfg(epochs=2, max_steps=3), tmp_path / "cut", progress=False)
    assert not cut["finished"] and cut["step"] == 3
    runs["cut"] = run_training(cfg(epochs=2), tmp_path / "cut", resume=True, progress=False)
    ref = torch.load(tmp_path / "full" / "last.pt", weights_only=True)
    for name, summary in runs.items():
        other = torch.load(tmp_path / name / "last.pt", weights_only=True)
        assert summary["step"] == full["step"] and summary["miou_after"] == full["miou_after"]
        assert _states_equal(ref["model"], other["model"])
        assert all(_states_equal(ref["optimizer"]["state"][k], other["optimizer"]["state"][k])
                   for k in ref["optimizer"]["state"])
        assert ref["scheduler"] == other["scheduler"]
        assert [r["loss"] for r in _records(tmp_path / name, "epoch")] == \
            [r["loss"] for r in _records(tmp_path / "full", "epoch")]
        assert [r["step"] for r in _records(tmp_path / name, "train")] == list(range(1, full["step"] + 1))
        assert summary["miou_before"] == full["miou_before"]


def test_resume_guards(roots, tmp_path):
    with pytest.raises(CheckpointError, match="no training state to resume"):
        run_training(_cfg(roots), tmp_path, resume=True, progress=False)
    run_training(_cfg(roots, max_steps=1, val_every=0), tmp_path, progress=False)
    with pytest.raises(OodbenchError, match="already holds a run"):
        run_training(_cfg(roots), tmp_path, progress=False)
    with pytest.raises(CheckpointError, match=r"lr: checkpoint 0.001, now 0.01"):
        run_training(_cfg(roots, lr=1e-2), tmp_path, resume=True, progress=False)


def test_resume_takes_its_weights_from_the_state_not_from_init(roots, tmp_path):
    """--init seeds a new run only: a resumed run restores its own weights, even once the init file is gone."""
    torch.manual_seed(0)
    save_checkpoint(create_model("tiny_deeplab", num_classes=19, **TINY).state_dict(), tmp_path / "init.pt")
    cfg = _cfg(roots, init=str(tmp_path / "init.pt"), max_steps=1, val_every=0)
    run_training(cfg, tmp_path / "run", progress=False)
    (tmp_path / "init.pt").unlink()
    summary = run_training(_cfg(roots, init=str(tmp_path / "init.pt"), val_every=0), tmp_path / "run", resume=True,
                           progress=False)
    assert summary["finished"] and summary["step"] > 1


@pytest.fixture(scope="module")
def closed_set(roots, tmp_path_factory):
    """A model of the fixture frames trained closed-set, as the embedded baseline is: cross-entropy, one cycle."""
    out = tmp_path_factory.mktemp("closed_set")
    run_training(_cfg(roots, objective="cross_entropy", schedule="onecycle", fresh_optimizer=False, sampling="stream",
                      channels_last=True, epochs=15, lr=1e-2, batch_size=4, val_every=0), out, progress=False)
    return out / "model.pt"


def test_init_checkpoint_and_amp_keep_miou(roots, closed_set, tmp_path):
    """Fine-tuning a trained model from --init starts at its mIoU and, as in the paper, costs little of it;
    bf16 autocast runs on the CPU."""
    for amp in (False, True):
        out = tmp_path / f"amp{amp}"
        cfg = _cfg(roots, init=str(closed_set), lr=3e-4, epochs=2, amp=amp)
        summary = run_training(cfg, out, progress=False)
        assert summary["miou_before"] > 0.5
        assert summary["miou_after"] > summary["miou_before"] - 0.1
        assert all(math.isfinite(r["loss"]) for r in _records(out, "train"))


def test_entmax_raises_entropy_on_proxies_not_on_known_pixels(roots, closed_set, tmp_path):
    """Same start, same steps: entropy-maximization fine-tuning lifts proxy-pixel entropy far above what
    closed-set fine-tuning gives, while in-distribution entropy stays low."""
    cs, coco = roots
    frames = DATASETS.create("cityscapes", root=cs, split="train", expected=False)
    proxies = DATASETS.create("coco_proxy", root=coco)
    rng = np.random.default_rng(5)
    pairs = [paste_proxy(f.image, f.label, proxies[i % len(proxies)], rng) for i, f in enumerate(frames)]
    x = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float()
    label = np.stack([p[1] for p in pairs])
    results = {}
    for objective in ("cross_entropy", "entmax"):
        cfg = _cfg(roots, init=str(closed_set), objective=objective, proxy_mode="paste", proxy_fraction=1.0,
                   epochs=4, seed=1, val_every=0)
        run_training(cfg, tmp_path / objective, progress=False)
        model = create_model("tiny_deeplab", num_classes=19, **TINY)
        load_into(model, tmp_path / objective / "model.pt")
        with torch.no_grad():
            e = SCORES.get("entropy")(model.eval()(x)).numpy()
        results[objective] = e[label == OOD_ID].mean(), e[label < 19].mean()
    (ce_ood, ce_id), (em_ood, em_id) = results["cross_entropy"], results["entmax"]
    assert em_ood > ce_ood + 0.15
    assert em_id < ce_id + 0.1
    assert em_ood - em_id > ce_ood - ce_id + 0.15


def _ddp_worker(rank: int, world: int, port: int, cfg: TrainConfig, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        trainer = Trainer(cfg, out, progress=False, ctx=ctx)
        trainer.fit()
        torch.save(trainer.model.state_dict(), f"{out}-rank{rank}.pt")
    finally:
        shutdown(ctx)


def test_ddp_two_processes_over_gloo(roots, tmp_path):
    """torchrun's environment with WORLD_SIZE=2: the replicas end equal (weights by DDP, BatchNorm statistics
    rank 0's, as with DataParallel) and only rank 0 writes."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    mp.spawn(_ddp_worker, args=(2, port, _cfg(roots, epochs=1), str(out)), nprocs=2)
    r0 = torch.load(f"{out}-rank0.pt", weights_only=True)
    assert _states_equal(r0, torch.load(f"{out}-rank1.pt", weights_only=True))
    assert sorted(p.name for p in out.iterdir()) == ["last.pt", "log.jsonl", "model.pt"]
    assert [r["world_size"] for r in _records(out, "start")] == [2]
    assert _records(out, "epoch")[0]["step"] == 6  # 8 frames + 4 proxies, global batch 2
    assert _states_equal(r0, torch.load(out / "last.pt", weights_only=True)["model"])


def test_cli_train_on_fixture(roots, tmp_path, capsys):
    cs, coco = roots
    out = tmp_path / "cli"
    argv = ["train", "--dataset", "cityscapes", "--data-root", str(cs), "--option", "expected=false",
            "--proxy-root", str(coco), "--proxy-mode", "paste", "--model", "tiny_deeplab", "--model-option", "width=8",
            "--epochs", "2", "--lr", "1e-3", "--batch-size", "4", "--crop", "48", "--workers", "0", "--seed", "1",
            "--max-steps", "2", "--out", str(out), "--quiet"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "stopped early" in printed and "val mIoU before" in printed and "model.pt" in printed
    assert main(argv[:-5] + ["--out", str(out), "--resume", "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "finished after epoch 2, step 4" in printed
    assert _records(out, "end")[0]["finished"] is True
    nowhere = ["--data-root", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x")]
    assert main(["train", "--dataset", "cityscapes", *nowhere]) == 2
    assert "nowhere: no such folder" in capsys.readouterr().err
    assert main(["train", "--epochs", "2", "--amp"]) == 2
    assert "--epochs, --amp need --dataset" in capsys.readouterr().err
