"""Entropy maximization of the published ESPNetv2 s=2.0 Cityscapes network on the real material of
../shared/realdata, then `entmax_meta` (and `maxlogit_meta`, `entropy_meta` on the published network) on all
60 Road Anomaly frames, printed as markdown tables (issue 21).

This is a TINY fine-tune, not the paper's model: 2 labelled Cityscapes frames (frankfurt_000001_058914 and
frankfurt_000000_000294, whose 256x128 train-id label is scaled up with NEAREST) and 3 Pascal VOC objects
(aeroplane, sheep, bird) pasted into the crops as OoD proxies (meta-ood's COCO-proxy layout, each object scaled to
4000 px at the 1024x512 input). The paper fine-tunes a DeepLabV3+ WRN38 on 2975 Cityscapes frames and ~300 COCO
proxies. Training goes through `oodbench train --network espnetv2_cityscapes` (paste mode, lambda 0.9, Adam with
kept moments, batch 2 = both frames, so one epoch is one step), evaluation through `oodbench run`.

Closed-set check: pixel accuracy on 058914 (a TRAINING frame: retention, not generalization), agreement with the
published network's argmax on the 3 unlabelled held-out frames, and mean normalized entropy on the VOC objects
pasted into those held-out frames (the same 3 objects seen in training) against all other pixels.

Usage:  python tools/realdata_entmax.py --realdata ../shared/realdata --work /tmp/entmax_work
Time on 2 CPU cores, one torch thread: 15 min end to end, measured (training 300 steps at crop 384: 551 s, 1.8 s a
step; the 4 Road Anomaly runs 56-103 s each). Everything (layouts, OODBENCH_HOME with its score cache, numba cache,
the run, records) goes under --work; nothing is written under the repository. Rerunning on the same --work reuses a
finished run and the records (a cut-short run resumes from its last.pt).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.dont_write_bytecode = True
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
import realdata_layouts as layouts  # noqa: E402  (shared with tests/test_realdata_training.py)
NET = "espnetv2_cityscapes"


def closed_set(realdata: Path, cs: Path, weights: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Per network: pixel accuracy on 058914 (train ids < 19), argmax agreement with the published network on the
    held-out frames, mean normalized entropy on pasted VOC objects and on the other pixels of those frames."""
    import numpy as np
    import torch
    from oodbench.data import DATASETS
    from oodbench.models.checkpoint import load_into
    from oodbench.models.network_cards import load_network_card
    from oodbench.scores import SCORES
    card = load_network_card(NET)
    frame = DATASETS.create("cityscapes", root=cs, split="val", expected=False)[0]
    clean, pasted, masks = layouts.eval_frames(realdata, card.protocol.input_size)
    out, preds = {}, {}
    for tag, path in weights.items():
        model = card.build()
        load_into(model, path)
        model.eval()

        def logits(image, size):
            x = torch.from_numpy(card.protocol.prepare(image[None])).permute(0, 3, 1, 2).float()
            with torch.no_grad():
                return card.protocol.restore(model(x), size)
        known = frame.label < 19
        acc = float((logits(frame.image, frame.label.shape).argmax(1)[0].numpy()[known] == frame.label[known]).mean())
        preds[tag] = np.stack([logits(im, im.shape[:2]).argmax(1)[0].numpy() for im in clean])
        ent = [SCORES.get("entropy")(logits(im, im.shape[:2]))[0].numpy() for im in pasted]
        out[tag] = {"acc": acc, "ent_obj": float(np.mean([e[m].mean() for e, m in zip(ent, masks)])),
                    "ent_rest": float(np.mean([e[~m].mean() for e, m in zip(ent, masks)]))}
    for tag in out:
        out[tag]["agree"] = float((preds[tag] == preds["published"]).mean())
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--realdata", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--steps", type=int, default=300, help="optimizer steps (= epochs: batch 2 holds both frames)")
    p.add_argument("--lr", default="5e-5")
    p.add_argument("--crop", default="384")
    p.add_argument("--lam", default="0.9")
    p.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default); on 2 shared cores a "
                   "second thread spin-waits: 47 s/step against 1.7 s with one, measured beside another job")
    p.add_argument("--no-eval", action="store_true", help="train and check closed-set only")
    a = p.parse_args()
    realdata, work = a.realdata.resolve(), a.work.resolve()
    if work == REPO or REPO in work.parents:
        p.error("--work must lie outside the repository")
    os.environ["OODBENCH_HOME"] = str(work / "home")  # score cache, fit cache: under --work
    os.environ["NUMBA_CACHE_DIR"] = str(work / "numba")  # numba's cache=True would write beside the sources
    sys.path.insert(0, str(REPO))
    import torch
    from oodbench.cli import main as oodbench
    if a.threads:
        torch.set_num_threads(a.threads)
    published = realdata / "weights" / "espnetv2_s_2.0_city_1024x512.pth"
    ra = realdata / "RoadAnomaly_jpg"
    cs, coco = layouts.write_layouts(realdata, work)
    run = work / f"train-s{a.steps}-lr{a.lr}-c{a.crop}-l{a.lam}"
    start = time.perf_counter()
    done = (run / "log.jsonl").exists() and any(json.loads(line).get("finished") for line in
                                                 (run / "log.jsonl").read_text().splitlines())
    if not done:  # a fresh run, or one cut short: resumed from its last.pt
        rc = oodbench(["train", "--dataset", "cityscapes", "--data-root", str(cs), "--option", "expected=false",
                       "--proxy-root", str(coco), "--network", NET, "--init", str(published),
                       "--proxy-mode", "paste", "--proxy-fraction", "1.0", "--crop", a.crop, "--batch-size", "2",
                       "--lr", a.lr, "--lam", a.lam, "--keep-optimizer", "--epochs", str(a.steps),
                       "--log-every", "25", "--val-every", "0", "--device", "cpu", "--workers", "0", "--seed", "0",
                       "--quiet", "--out", str(run)] + (["--resume"] if (run / "last.pt").exists() else []))
        assert rc == 0, f"oodbench train exited {rc}"
    train_s = time.perf_counter() - start
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in log if r["event"] == "train"]
    print(f"\ntraining: {a.steps} steps (crop {a.crop}, batch 2, lr {a.lr}, lambda {a.lam}, Adam kept) in "
          f"{train_s:.0f} s; loss every 25 steps: {' '.join(f'{v:.3f}' for v in losses)}")
    tuned = run / "model.pt"
    cls = closed_set(realdata, cs, {"published": published, "fine-tuned": tuned})
    print("\n| network | pixel acc. 058914 (train frame) | argmax agreement, 3 held-out frames | "
          "entropy on pasted objects | entropy elsewhere |\n|---|---|---|---|---|")
    for tag, c in cls.items():
        print(f"| {tag} | {c['acc']:.4f} | {c['agree']:.4f} | {c['ent_obj']:.3f} | {c['ent_rest']:.3f} |")
    if a.no_eval:
        return 0
    runs = [("published", "maxlogit_meta", published), ("published", "entropy_meta", published),
            ("fine-tuned", "entmax_meta", tuned), ("fine-tuned", "maxlogit_meta", tuned)]
    recs = []
    for tag, method, ckpt in runs:
        out = work / "records" / f"{tag}-{method}"
        if not list(out.glob("*.json")):
            rc = oodbench(["run", "--method", method, "--network", NET, "--checkpoint", str(ckpt), "--dataset",
                           "roadanomaly", "--data-root", str(ra), "--batch-size", "1", "--out", str(out), "--quiet"])
            assert rc == 0, f"oodbench run {method} exited {rc}"
        recs.append((tag, method, json.loads(next(out.glob("*.json")).read_text())["metrics"]))
    pct = lambda v: f"{100 * v:.2f}"  # noqa: E731
    print("\n| network + method | AUROC | AP | FPR95 | sIoU | PPV | mean F1 | inst. AP / AP50 (components) | "
          "inst. AP / AP50 (meta segments) | FP before -> after | FN before -> after | meta AUROC |\n"
          + "|---" * 12 + "|")
    for tag, method, m in recs:
        px, co, ins, seg = m["pixel"], m["components"], m["instances"], m["segments"]
        print(f"| {tag} `{method}` | {pct(px['auroc'])} | {pct(px['ap'])} | {pct(px['fpr95'])} | {pct(co['siou'])} | "
              f"{pct(co['ppv'])} | {pct(co['f1_mean'])} | {pct(ins['ap'])} / {pct(ins['ap50'])} "
              f"(t {co['threshold']:.3f}, {ins['num_pred_instances']}/{ins['num_gt_instances']}) | "
              f"{pct(seg['instances']['ap'])} / {pct(seg['instances']['ap50'])} "
              f"(t {seg['segment_threshold']:.3f}, {seg['instances']['num_pred_instances']}) | "
              f"{seg['fp_before']} -> {seg['fp_after']} | {seg['fn_before']} -> {seg['fn_after']} | "
              f"{pct(seg['meta_auroc'])} |")
    cats = sorted(recs[0][2]["categories"])
    print("\n| category (pixel AUROC / AP / FPR95 %) | " + " | ".join(f"{t} `{m}`" for t, m, _ in recs) + " |\n"
          + "|---" * (len(recs) + 1) + "|")
    for c in cats:
        cells = [m["categories"][c]["pixel"] for _, _, m in recs]
        print(f"| {c} ({recs[0][2]['categories'][c]['num_images']} frames) | "
              + " | ".join(f"{pct(x['auroc'])} / {pct(x['ap'])} / {pct(x['fpr95'])}" for x in cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
