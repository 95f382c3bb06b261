"""``oodbench validate-plugin``: run a registered method on a few images of the embedded benchmark and check the
contract the runner and the meta stage rely on, so a contributor learns what is wrong before opening a pull request."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, Callable

import numpy as np

from ..data.base import DATASETS, Sample
from ..leaderboard.digest import canonical_json
from ..leaderboard.record import json_safe
from ..methods.base import META_SUFFIX, METHODS, Method, MethodOutput
from .score_pass import batches as runner_batches

OK, WARN, FAIL, SKIP = "ok", "warn", "fail", "skip"
MARKS = {OK: "✅", WARN: "⚠️ ", FAIL: "❌", SKIP: "➖"}
ASCII_MARKS = {OK: "[ok]  ", WARN: "[warn]", FAIL: "[FAIL]", SKIP: "[skip]"}
SCORE_DTYPES = (np.float16, np.float32)
PROB_TOLERANCE = 1e-3  # |sum_c p_c - 1| allowed per pixel (float16 probabilities stay within it)
SAME_RTOL, SAME_ATOL = 1e-5, 1e-6  # repeated predictions must agree this closely (bit-identical is reported as such)
DEFAULT_IMAGES, QUICK_IMAGES = 8, 4


@dataclass
class Check:
    """One line of the report: ``key`` for programs, ``title`` and ``detail`` for people."""

    key: str
    status: str
    title: str
    detail: str = ""

    def line(self, ascii_only: bool = False) -> str:
        mark = (ASCII_MARKS if ascii_only else MARKS)[self.status]
        return f"{mark} {self.title}" + (f": {self.detail}" if self.detail else "")


@dataclass
class PluginReport:
    """Every check run on one method; ``ok`` unless one failed (warnings do not fail a plugin)."""

    method: str
    checks: list[Check] = field(default_factory=list)
    stopped: bool = False  # a failure ended the run early; the checks after it did not run

    def add(self, key: str, status: str, title: str, detail: str = "") -> Check:
        check = Check(key, status, title, detail)
        self.checks.append(check)
        return check

    def status(self, key: str) -> str | None:
        return next((c.status for c in self.checks if c.key == key), None)

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def render(self, ascii_only: bool = False) -> str:
        fails = sum(c.status == FAIL for c in self.checks)
        warns = sum(c.status == WARN for c in self.checks)
        verdict = f"FAILED ({fails} failed" if fails else "PASSED (0 failed"
        lines = [f"validate-plugin {self.method}"] + [c.line(ascii_only) for c in self.checks]
        if self.stopped:
            lines.append("   (the remaining checks did not run: fix the failure above and run again)")
        return "\n".join(lines + [f"result: {verdict}, {warns} warning(s))"])


class _Stop(Exception):
    """A failed check that later checks depend on; the report so far is returned."""


def _source(name: str) -> str:
    """Where a method name comes from: the entry point and distribution that register it, else built in."""
    for ep in entry_points(group=METHODS.group):
        if ep.name == name:
            dist = getattr(ep, "dist", None)
            owner = f" ({dist.name} {dist.version})" if dist is not None else ""
            return f"entry point {ep.name} = {ep.value}{owner}"
    base = name[: -len(META_SUFFIX)] if name.endswith(META_SUFFIX) else name
    return "registered in code (no entry point of that name)" if base == name else f"meta variant of {base!r}"


def _instance(report: PluginReport, factory: Callable[..., Any], seed: int, key: str) -> Method:
    try:
        method = factory(seed=seed)
    except Exception as exc:  # noqa: BLE001 - any failure is the plugin's to fix
        report.add(key, FAIL, "creates an instance", f"factory(seed={seed}) raised {type(exc).__name__}: {exc}; the "
                   f"runner calls it with seed=<int> (and checkpoint=<path> when given)")
        raise _Stop from exc
    if not isinstance(method, Method):
        report.add(key, FAIL, "creates an instance", f"the factory returned {type(method).__name__}, not a subclass "
                   f"of oodbench.methods.Method")
        raise _Stop
    return method


def _set_up(report: PluginReport, method: Method, dataset, progress: bool) -> tuple[Any, float]:
    start = time.perf_counter()
    try:
        method.bind(dataset)
        info = method.setup(progress=progress)
    except Exception as exc:  # noqa: BLE001
        report.add("setup", FAIL, "bind() and setup()", f"raised {type(exc).__name__}: {exc}")
        raise _Stop from exc
    return info, time.perf_counter() - start


def _predict(report: PluginReport, method: Method, batch: list[Sample], key: str = "output") -> MethodOutput:
    try:
        out = method.predict_samples(batch)
    except Exception as exc:  # noqa: BLE001
        report.add(key, FAIL, "predict", f"raised {type(exc).__name__}: {exc}")
        raise _Stop from exc
    if not isinstance(out, MethodOutput):
        report.add(key, FAIL, "returns a MethodOutput", f"predict returned {type(out).__name__}; return "
                   f"oodbench.methods.MethodOutput(scores=..., probs=...)")
        raise _Stop
    return out


def _compare(a: np.ndarray | None, b: np.ndarray | None) -> tuple[bool, str]:
    """(equal?, how): bit-identical, equal within SAME_RTOL/SAME_ATOL, or the size of the difference."""
    if a is None or b is None:
        return (a is None) == (b is None), "probabilities given by one call and not the other"
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False, f"shapes differ: {a.shape} vs {b.shape}"
    if np.array_equal(a, b, equal_nan=True):
        return True, "bit-identical"
    with np.errstate(invalid="ignore"):
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        close = np.isclose(a, b, rtol=SAME_RTOL, atol=SAME_ATOL, equal_nan=True)
    worst = float(np.nanmax(diff)) if np.isfinite(diff).any() else float("nan")
    if close.all():
        return True, f"equal within rtol {SAME_RTOL:g} (max |diff| {worst:.2g})"
    return False, f"{int((~close).sum())} values differ (max |diff| {worst:.3g})"


def _check_scores(report: PluginReport, batches: list[list[Sample]], outs: list[MethodOutput]) -> bool:
    """Shape, dtype, finiteness and range of every score map; True when the maps are fit for metrics."""
    bad_shape = [(np.shape(o.scores), (len(b), *b[0].label.shape)) for b, o in zip(batches, outs)
                 if np.shape(o.scores) != (len(b), *b[0].label.shape)]
    if bad_shape:
        got, want = bad_shape[0]
        report.add("shape", FAIL, "score shape equals label shape", f"got {got} for a batch whose labels are {want} "
                   f"(B, H, W); return one score per pixel at label resolution (upsample before scoring)")
    else:
        report.add("shape", OK, "score shape equals label shape", f"{np.shape(outs[0].scores)} per batch")
    dtypes = sorted({str(np.asarray(o.scores).dtype) for o in outs})
    if all(np.asarray(o.scores).dtype in SCORE_DTYPES for o in outs):
        report.add("dtype", OK, "score dtype", ", ".join(dtypes))
    else:
        report.add("dtype", FAIL, "score dtype", f"{', '.join(dtypes)}; return float32 (or float16): "
                   f"scores.astype(np.float32)")
    values = [np.asarray(o.scores, dtype=np.float64).ravel() for o in outs]
    flat = np.concatenate(values) if values else np.zeros(0)
    finite = np.isfinite(flat)
    if finite.all():
        report.add("finite", OK, "finite scores", f"{flat.size} values, no NaN or inf")
    else:
        report.add("finite", FAIL, "finite scores", f"{int((~finite).sum())} of {flat.size} values are NaN or inf; "
                   f"the runner rejects them (guard divisions and logs, e.g. clamp before log)")
    if finite.any():
        lo, hi = float(flat[finite].min()), float(flat[finite].max())
        if lo == hi:
            report.add("range", WARN, "score range", f"constant {lo:.6g}: every pixel gets the same score")
        else:
            report.add("range", OK, "score range", f"min {lo:.6g}, max {hi:.6g}")
    return not bad_shape and bool(finite.all())


def _check_direction(report: PluginReport, batches: list[list[Sample]], outs: list[MethodOutput]) -> None:
    """Higher = more OoD: the pooled AUROC on these images should beat chance."""
    from ..metrics.pixel import pixel_metrics

    labels = np.concatenate([np.stack([s.label for s in b]).ravel() for b in batches])
    scores = np.concatenate([np.asarray(o.scores, dtype=np.float32).ravel() for o in outs])
    m = pixel_metrics(labels, scores)
    if m["num_pos"] == 0 or m["num_neg"] == 0:
        report.add("auroc", WARN, "higher = more OoD", "these images lack OoD or in-distribution pixels; use more images")
    elif m["auroc"] > 0.5:
        report.add("auroc", OK, "higher = more OoD", f"AUROC {m['auroc']:.3f}, AP {m['ap']:.3f}, FPR95 "
                   f"{m['fpr95']:.3f} on {m['num_pos'] + m['num_neg']} pixels (a sanity check, not a result)")
    else:
        report.add("auroc", WARN, "higher = more OoD", f"AUROC {m['auroc']:.3f} <= 0.5: OoD pixels score lower than "
                   f"in-distribution ones; if your score is a confidence, negate it")


def _check_probs(report: PluginReport, name: str, method: Method, batch: list[Sample], out: MethodOutput) -> None:
    """Softmax probabilities (B, C, H, W) summing to 1, from the method or its ``_meta`` variant."""
    title, probs, where = "probabilities", out.probs, "predict"
    meta_name = name + META_SUFFIX
    if probs is None and not getattr(method, "provides_probs", False):
        report.add("probs", OK, title, f"none (provides_probs is False, so there is no {meta_name} variant)")
        return
    if probs is None:
        from ..methods.meta import with_meta_stage

        where = f"{meta_name} (the method with a segment stage)"
        probs = _predict(report, with_meta_stage(method), batch, key="probs").probs
        if probs is None:
            report.add("probs", FAIL, title, f"provides_probs is True but {where} returned probs=None; return the "
                       f"softmax (B, C, H, W) whenever self.segment_stage is set")
            return
    probs = np.asarray(probs)
    b, h, w = len(batch), *batch[0].label.shape
    problems = []
    if probs.ndim != 4 or probs.shape[0] != b or probs.shape[2:] != (h, w) or probs.shape[1] < 2:
        problems.append(f"shape {probs.shape}, expected ({b}, C, {h}, {w}) with C >= 2 classes")
    elif not np.issubdtype(probs.dtype, np.floating):
        problems.append(f"dtype {probs.dtype}, expected float32")
    elif not np.isfinite(probs).all():
        problems.append(f"{int((~np.isfinite(probs)).sum())} NaN/inf values")
    else:
        total = probs.sum(axis=1, dtype=np.float64)
        worst = float(np.abs(total - 1).max())
        if worst > PROB_TOLERANCE:
            problems.append(f"sums over classes range {total.min():.4g}..{total.max():.4g}, not 1 (tolerance "
                            f"{PROB_TOLERANCE:g}); return torch.softmax(logits, dim=1), not logits")
        elif probs.min() < -PROB_TOLERANCE:
            problems.append(f"negative values (min {probs.min():.4g})")
    if problems:
        report.add("probs", FAIL, title, f"from {where}: " + "; ".join(problems))
        return
    detail = f"{probs.shape} {probs.dtype} from {where}, sums to 1 within {PROB_TOLERANCE:g}"
    if name.endswith(META_SUFFIX):
        report.add("probs", OK, title, detail + "; its meta stage uses them")
    elif meta_name not in METHODS.names():
        report.add("probs", WARN, title, detail + f"; but {meta_name} is not registered: set provides_probs = True on "
                   f"the entry-point object (the factory or class)")
    else:
        report.add("probs", OK, title, detail + f"; {meta_name} is available")


def _check_record(report: PluginReport, name: str, method: Method, info: Any) -> None:
    """config() and setup()'s provenance go into the record: they must be JSON and name the method."""
    try:
        cfg = method.config()
        canonical_json(json_safe({**cfg, **(info or {})}))  # as make_record and the record digests take them
    except Exception as exc:  # noqa: BLE001
        report.add("record", FAIL, "record fields", f"config() and setup() must return JSON-serializable dicts: {exc}")
        return
    if method.name != name:
        report.add("record", WARN, "record fields", f"method.name is {method.name!r}, not the registered {name!r}: "
                   f"records and the leaderboard will file it under {method.name!r}")
    else:
        report.add("record", OK, "record fields", f"config() {sorted(map(str, cfg))} and setup() info are JSON")


def validate_plugin(name: str, *, factory: Callable[..., Any] | None = None, images: int | None = None,
                    batch_size: int = 4, seed: int = 0, quick: bool = False, dataset: str = "synthetic",
                    split: str = "test", data_root: str | None = None, progress: bool = False) -> PluginReport:
    """Check method ``name`` (looked up in the registry, entry points included, unless ``factory`` is given) on the
    first ``images`` samples of ``dataset/split``. ``quick``: fewer images and no fresh-instance determinism check."""
    report = PluginReport(name)
    n = max(1, images or (QUICK_IMAGES if quick else DEFAULT_IMAGES))
    try:
        if factory is None:
            try:
                factory = METHODS.get(name)
            except Exception as exc:  # noqa: BLE001 - unknown names and broken plugins alike
                report.add("load", FAIL, "loads through the registry", str(exc))
                raise _Stop from exc
            report.add("load", OK, "loads through the registry", _source(name))
        else:
            report.add("load", OK, "loads", "factory given directly (the registry is not consulted)")
        method = _instance(report, factory, seed, "instance")
        ds = DATASETS.create(dataset, root=data_root, split=split)
        samples = [ds[i] for i in range(min(n, len(ds)))]
        info, setup_s = _set_up(report, method, ds, progress)
        batches, outs, spent = list(runner_batches(samples, batch_size)), [], 0.0
        for batch in batches:
            t0 = time.perf_counter()
            outs.append(_predict(report, method, batch))
            spent += time.perf_counter() - t0
        report.add("output", OK, "returns a MethodOutput", f"{len(samples)} images of {dataset}/{split} in "
                   f"{len(batches)} batch(es)")
        if _check_scores(report, batches, outs):
            _check_direction(report, batches, outs)
        else:
            report.add("auroc", SKIP, "higher = more OoD", "not measured: the score maps are unfit for metrics")
        same, how = _compare(outs[0].scores, _predict(report, method, batches[0], "determinism").scores)
        report.add("determinism", OK if same else FAIL, "same batch twice gives the same scores", how if same else
                   f"{how}; carry no state between calls and seed every random generator from the seed argument")
        if not quick:
            fresh = _instance(report, factory, seed, "fresh_instance")
            _set_up(report, fresh, ds, False)
            same, how = _compare(outs[0].scores, _predict(report, fresh, batches[0], "fresh_instance").scores)
            report.add("fresh_instance", OK if same else FAIL, f"a fresh instance with seed={seed} gives the same "
                       f"scores", how if same else f"{how}; derive every random choice from the seed argument")
        else:
            report.add("fresh_instance", SKIP, "a fresh instance gives the same scores", "not checked with --quick")
        report.add("speed", OK, "speed", f"{len(samples) / max(spent, 1e-9):.2f} images/s (batches of {batch_size}; "
                   f"setup {setup_s:.2f} s)")
        _check_probs(report, name, method, batches[0], outs[0])
        _check_record(report, name, method, info)
    except _Stop:
        report.stopped = True
    return report
