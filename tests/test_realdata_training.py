"""Smoke test of the real entropy-maximization training path on real material: `oodbench train --network
espnetv2_cityscapes` fine-tunes the published ESPNetv2 Cityscapes weights on the two labelled real Cityscapes
frames with three real Pascal VOC objects pasted in as OoD proxies. The loss falls, the normalized entropy on VOC
objects pasted into held-out frames rises while in-distribution pixels stay confident, a cut and resumed run ends
bit-identical to an uninterrupted one, and the weights load strictly into the card's network. A smoke test of the
training path on real inputs, not a result: a handful of steps on two frames.

Everything derived from the real material (layouts, JPEG proxies, evaluation frames) is written under tmp_path only.

Resolution: the trainer resizes frames to the card's protocol input size (1024x512; image PIL bilinear, label
nearest) before its 256 crops, so the layout holds the frames as published (2048x1024) and 000294's 256x128
train-id label scaled up to 2048x1024 with NEAREST. Evaluation frames are resized to 1024x512 as the protocol does
and the objects pasted at that resolution, at the size they were pasted in training.

Proxies: meta-ood's COCO-proxy layout (the input of paste mode): each VOC image cut to its object's bounding box
and scaled so the object covers OBJECT_AREA pixels, mask 254 on object pixels and 0 elsewhere. VOC's void band
(boundary, 255 in index form) becomes 0, and paste mode copies only 254 pixels, so it is never pasted and never
a target. Equal object areas keep the OoD share of every crop alike (about 6 %), so the logged loss follows what
the network learns rather than which object a step drew; small objects keep the shift of the BatchNorm running
statistics (which 256 crops with batch 2 move by themselves) from swamping a few steps of learning."""
from __future__ import annotations

import json
import shutil
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
import realdata_layouts as layouts
from realdata import CITYSCAPES, OOD_OBJECTS, REALDATA, espnetv2_weights, needs
from realdata_layouts import VAL_FRAME
from torch.utils.data import DataLoader

from oodbench.cli import main
from oodbench.data import DATASETS
from oodbench.models.checkpoint import load_into, read_state_dict, sha256_file
from oodbench.models.network_cards import load_network_card
from oodbench.scores import SCORES
from oodbench.training.distributed import DistContext
from oodbench.training.loss import IGNORE_ID, OOD_ID, entropy_maximization_loss, split_entmax_loss
from oodbench.training.network_setup import ProtocolFrames
from oodbench.training.validation import evaluate_miou

NETWORK = "espnetv2_cityscapes"
WEIGHTS = espnetv2_weights(2.0)
STEPS = 10  # optimizer steps of the main run (one epoch = both frames = one batch of 2)
REF_STEPS, CUT = 4, 2  # the resume check: an uninterrupted run of REF_STEPS against one cut after CUT and resumed
K = 3  # the loss falls: mean of the last K logged steps below the mean of the first K
TRAIN_ARGS = ["--proxy-mode", "paste", "--proxy-fraction", "1.0", "--crop", "256", "--batch-size", "2",
              "--lr", "2e-3", "--keep-optimizer", "--log-every", "1", "--val-every", "0", "--device", "cpu",
              "--workers", "0", "--seed", "0", "--quiet"]


def eval_frames() -> tuple[np.ndarray, np.ndarray]:
    """(3,512,1024,3) held-out frames at the protocol's input size, each with one VOC object pasted at a fixed
    place, and (3,512,1024) masks of the pasted pixels."""
    return layouts.eval_frames(REALDATA, load_network_card(NETWORK).protocol.input_size)[1:]


def card_network(weights):
    """The card's network with ``weights``, strictly loaded, in eval mode."""
    model = load_network_card(NETWORK).build()
    load_into(model, weights)
    return model.eval()


@torch.no_grad()
def mean_entropies(weights, frames: np.ndarray, masks: np.ndarray) -> tuple[float, float]:
    """Mean normalized entropy (the `entropy` score over the card's 19 score channels, as `oodbench run` computes
    it) on the pasted pixels and on all other pixels, the network in eval mode with the card's protocol."""
    protocol, model = load_network_card(NETWORK).protocol, card_network(weights)
    x = torch.from_numpy(protocol.prepare(frames)).permute(0, 3, 1, 2).float()
    scores = torch.cat([SCORES.get("entropy")(protocol.restore(model(x[i:i + 1]), frames.shape[1:3]))
                        for i in range(len(x))]).numpy()
    return float(scores[masks].mean()), float(scores[~masks].mean())


def records(out, event=None) -> list[dict]:
    recs = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    return [r for r in recs if event is None or r["event"] == event]


def comparable(recs: list[dict]) -> list[dict]:
    """Log records less what differs between two runs by design: wall times, the command line, output paths and
    the --max-steps that cut one of them."""
    drop = {"time", "seconds", "command", "model", "state", "log"}
    out = [{k: v for k, v in r.items() if k not in drop} for r in recs]
    for r in out:
        if "config" in r:
            r["config"] = {k: v for k, v in r["config"].items() if k != "max_steps"}
    return out


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread: on two shared cores a second one mostly waits for the other's work."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """The reference (REF_STEPS uninterrupted); the cut run (stopped by --max-steps after CUT, resumed to
    REF_STEPS, a copy kept), then resumed with more epochs to STEPS: the main run."""
    base = tmp_path_factory.mktemp("realdata_training")
    cs, coco = layouts.write_layouts(REALDATA, base)
    argv = ["train", "--dataset", "cityscapes", "--data-root", str(cs), "--option", "expected=false",
            "--proxy-root", str(coco), "--network", NETWORK, "--init", str(WEIGHTS), *TRAIN_ARGS]
    ref, run, resumed = base / "reference", base / "run", base / "resumed"
    start = time.perf_counter()
    assert main([*argv, "--epochs", str(REF_STEPS), "--out", str(ref)]) == 0
    assert main([*argv, "--epochs", str(REF_STEPS), "--max-steps", str(CUT), "--out", str(run)]) == 0
    assert main([*argv, "--epochs", str(REF_STEPS), "--resume", "--out", str(run)]) == 0
    shutil.copytree(run, resumed)
    assert main([*argv, "--epochs", str(STEPS), "--resume", "--out", str(run)]) == 0
    print(f"\n{REF_STEPS + STEPS} training steps in {time.perf_counter() - start:.1f} s")
    return SimpleNamespace(ref=ref, resumed=resumed, run=run, cityscapes=cs)


@pytest.fixture(scope="module")
def evaluation():
    """The fixed evaluation frames and their pasted-object masks, built once."""
    return eval_frames()


@needs(CITYSCAPES, OOD_OBJECTS, WEIGHTS)
def test_loss_falls_and_the_run_records_its_network(runs):
    train = records(runs.run, "train")
    losses = [r["loss"] for r in train]
    print(f"\nloss per step: {' '.join(f'{v:.4f}' for v in losses)}")
    assert [r["step"] for r in train] == list(range(1, STEPS + 1)) and all(np.isfinite(losses))
    assert np.mean(losses[-K:]) < np.mean(losses[:K])
    card = load_network_card(NETWORK)
    start, end = records(runs.run, "start")[0], records(runs.run, "end")[-1]
    assert start["config"]["network"] == NETWORK and start["config"]["model"] == card.model
    assert start["config"]["model_options"] == card.options and start["config"]["num_classes"] == 20
    assert start["config"]["score_channels"] == 19 and start["config"]["input_size"] == [1024, 512]
    assert start["init"]["network"] == NETWORK and start["init"]["local_override"] is True
    assert start["init"]["sha256"] == card.checkpoint_sha256 == sha256_file(WEIGHTS)
    assert start["init"]["matches_published"] is True
    assert end["finished"] and end["step"] == STEPS  # a resumed run still names its initial weights
    assert end["network"] == NETWORK and end["init_sha256"] == card.checkpoint_sha256


@needs(CITYSCAPES, OOD_OBJECTS, WEIGHTS)
def test_entropy_rises_on_pasted_objects_and_stays_low_elsewhere(runs, evaluation):
    frames, masks = evaluation
    ood_before, id_before = mean_entropies(WEIGHTS, frames, masks)
    ood_after, id_after = mean_entropies(runs.run / "model.pt", frames, masks)
    print(f"\nmean normalized entropy on pasted objects {ood_before:.3f} -> {ood_after:.3f}, "
          f"on the other pixels {id_before:.3f} -> {id_after:.3f}")
    assert ood_after > ood_before + 0.05
    assert id_after < 0.25 and id_after < ood_after  # in-distribution pixels keep confident predictions


@needs(CITYSCAPES, OOD_OBJECTS, WEIGHTS)
def test_validation_with_the_protocol_and_known_classes_kept(runs):
    """The trainer's validation for a card (frame at the input size, logits of the 19 score classes resized to the
    label) against a direct computation, which reproduces the reference's pixel accuracy of the published network
    on this frame (0.947, ../shared/realdata/README.md); after the fine-tune most pixels keep their class."""
    card = load_network_card(NETWORK)
    val = DATASETS.create("cityscapes", root=runs.cityscapes, split="val", expected=False)
    frame = val[0]
    known = frame.label < 19
    found = {}
    for name, weights in (("published", WEIGHTS), ("fine-tuned", runs.run / "model.pt")):
        with torch.no_grad():
            x = torch.from_numpy(card.protocol.prepare(frame.image[None])).permute(0, 3, 1, 2).float()
            pred = card.protocol.restore(card_network(weights)(x), frame.label.shape).argmax(1)[0].numpy()
        classes = [c for c in range(19) if ((frame.label == c) | ((pred == c) & known)).any()]
        miou = np.mean([((pred == c) & (frame.label == c)).sum() / (((pred == c) & known) | (frame.label == c)).sum()
                        for c in classes])
        found[name] = float((pred[known] == frame.label[known]).mean()), float(miou)
    print(f"\n{VAL_FRAME} pixel accuracy, mIoU: {found}")
    loader = DataLoader(ProtocolFrames(val, 1, card.protocol), batch_size=1)
    assert evaluate_miou(card_network(WEIGHTS), loader, 19, DistContext(), protocol=card.protocol) == \
        pytest.approx(found["published"][1], abs=1e-9)
    assert found["published"][0] == pytest.approx(0.947, abs=0.002)
    assert found["fine-tuned"][0] > 0.85


@needs(CITYSCAPES, OOD_OBJECTS, WEIGHTS)
def test_cut_and_resumed_run_is_bit_identical(runs):
    ref, resumed = runs.ref, runs.resumed
    a, meta_a = read_state_dict(ref / "model.pt")
    b, meta_b = read_state_dict(resumed / "model.pt")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a) and meta_a == meta_b
    sa, sb = (torch.load(p / "last.pt", weights_only=True) for p in (ref, resumed))
    assert sa["optimizer"]["state"].keys() == sb["optimizer"]["state"].keys()
    assert all(torch.equal(sa["optimizer"]["state"][k][m], sb["optimizer"]["state"][k][m])
               for k in sa["optimizer"]["state"] for m in ("step", "exp_avg", "exp_avg_sq"))
    assert [r["event"] for r in records(resumed)].count("resume") == 1
    assert comparable([r for r in records(resumed) if r["event"] != "resume"]) == comparable(records(ref))
    assert records(ref, "end")[0]["sha256"] == records(resumed, "end")[0]["sha256"]  # model.pt byte for byte


@needs(CITYSCAPES, OOD_OBJECTS, WEIGHTS)
def test_trained_weights_serve_oodbench_run(runs, evaluation, tmp_path, capsys):
    """model.pt loads strictly into the card's network, and `oodbench run --method entmax --network
    espnetv2_cityscapes --checkpoint model.pt` scores with it (here one held-out frame with a pasted object)."""
    card = load_network_card(NETWORK)
    meta = load_into(card.build(), runs.run / "model.pt")
    assert meta["network"] == NETWORK and meta["init_sha256"] == card.checkpoint_sha256
    assert meta["global_step"] == STEPS and meta["arch"] == card.model
    frames, masks = evaluation
    for folder, array in (("images", frames[0]), ("labels", masks[0].astype(np.uint8))):
        (tmp_path / "frames" / folder).mkdir(parents=True)
        Image.fromarray(array).save(tmp_path / "frames" / folder / "f0.png")
    assert main(["run", "--method", "entmax", "--network", NETWORK, "--checkpoint", str(runs.run / "model.pt"),
                 "--dataset", "folder", "--data-root", str(tmp_path / "frames"), "--out", str(tmp_path / "records"),
                 "--quiet"]) == 0
    capsys.readouterr()
    record = json.loads(next((tmp_path / "records").glob("*.json")).read_text())
    assert record["method"]["network"] == NETWORK and record["method"]["protocol"]["score_channels"] == 19
    assert record["method"]["checkpoint_sha256"] == records(runs.run, "end")[-1]["sha256"]
    assert record["metrics"]["pixel"]["num_pos"] == masks[0].sum()


def test_network_conflicts_with_model(tmp_path, capsys):
    argv = ["train", "--dataset", "cityscapes", "--data-root", str(tmp_path), "--network", NETWORK]
    assert main([*argv, "--model", "tiny_deeplab"]) == 2
    assert f"--network {NETWORK} conflicts with --model" in capsys.readouterr().err
    assert main([*argv, "--model-option", "scale=1.0"]) == 2
    assert "conflicts with --model-option" in capsys.readouterr().err
    assert main(["train", "--network", NETWORK]) == 2
    assert "--network need --dataset" in capsys.readouterr().err


def test_split_loss_keeps_background_out_of_the_ood_term():
    """ESPNetv2's 20 outputs, 19 score classes: in-distribution cross-entropy over all 20, the OoD term over the
    19 only (background gets no gradient there), never background as a target; all outputs: the paper's loss."""
    torch.manual_seed(0)
    logits = torch.randn(2, 20, 4, 5)
    labels = torch.randint(0, 19, (2, 4, 5))
    labels[0, :2], labels[1, 0, :3] = OOD_ID, IGNORE_ID
    assert torch.equal(split_entmax_loss(logits, labels, 0.9), entropy_maximization_loss(logits, labels, 0.9))
    assert torch.equal(split_entmax_loss(logits, labels, 0.9, 20), entropy_maximization_loss(logits, labels, 0.9))
    # a background that never wins (logit -1e4) makes the general path the paper's loss over the 19 classes
    silent = torch.cat([logits[:, :19], torch.full((2, 1, 4, 5), -1e4)], dim=1)
    assert float(split_entmax_loss(silent, labels, 0.9, 19)) == pytest.approx(
        float(entropy_maximization_loss(logits[:, :19], labels, 0.9)), rel=1e-6)
    zeros = torch.zeros(1, 20, 2, 2)
    ood, known = torch.full((1, 2, 2), OOD_ID), torch.full((1, 2, 2), 3)
    assert float(split_entmax_loss(zeros, ood, 0.9, 19)) == pytest.approx(0.9 * np.log(19) / 19)
    assert float(split_entmax_loss(zeros, known, 0.9, 19)) == pytest.approx(0.1 * np.log(20) / 19)
    logits.requires_grad_(True)
    only_ood = torch.where(labels == OOD_ID, labels, IGNORE_ID)
    split_entmax_loss(logits, only_ood, 0.9, 19).backward()
    assert torch.all(logits.grad[:, 19] == 0) and logits.grad[:, :19].abs().sum() > 0
    with pytest.raises(ValueError, match="outside the 19 score classes"):
        split_entmax_loss(logits, torch.full((2, 4, 5), 19), 0.9, 19)
