"""The method plugin template installs with plain pip into a fresh venv, is listed by `oodbench list methods` and
passes `validate-plugin`; and each contract violation a plugin can make gives its own ❌ line."""
import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import venv
from pathlib import Path

import numpy as np
import pytest

import oodbench
from oodbench.commands.validate_plugin import register
from oodbench.methods import METHODS, Method, MethodOutput
from oodbench.evaluation.plugin_check import DEFAULT_IMAGES, FAIL, OK, QUICK_IMAGES, SKIP, WARN, validate_plugin
from oodbench.training.embedded import ensure_model

REPO = Path(oodbench.__file__).resolve().parents[1]
TEMPLATE = REPO / "templates" / "oodbench-method-template"
VALIDATE = ("import argparse, sys; from oodbench.commands.validate_plugin import register; "
            "p = argparse.ArgumentParser(prog='oodbench'); register(p.add_subparsers()); "
            "a = p.parse_args(sys.argv[1:]); sys.exit(a.func(a))")


@pytest.fixture(scope="module")
def template_venv(tmp_path_factory):
    """A venv over the system site-packages with a copy of the template pip-installed (not editable) into it.
    The venv gets no pip of its own: its bundled setuptools would shadow the system one, which builds the wheel."""
    missing = [m for m in ("pip", "setuptools") if importlib.util.find_spec(m) is None]  # found, not imported
    if missing:
        pytest.skip(f"installing the template needs {' and '.join(missing)} in this python")
    root = tmp_path_factory.mktemp("plugin_venv")
    src = root / "oodbench-method-template"
    shutil.copytree(TEMPLATE, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    ensure_model("baseline", progress=False)  # trained here (once per $OODBENCH_HOME), not in the timed subprocess
    venv.create(root / "venv", system_site_packages=True, with_pip=False)
    python = root / "venv" / "bin" / "python"
    env = {**os.environ, "OODBENCH_HOME": os.environ["OODBENCH_HOME"],
           "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    res = subprocess.run([str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(src)],
                         capture_output=True, text=True, env=env, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    return python, src, env


def in_venv(template_venv, *args, timeout=600):
    python, src, env = template_venv
    return subprocess.run([str(python), *args], capture_output=True, text=True, env=env, cwd=src, timeout=timeout)


def test_installed_template_is_listed_with_its_meta_variant(template_venv):
    res = in_venv(template_venv, "-m", "oodbench.cli", "list", "methods", "my_method*", "--json")
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout) == {"methods": ["my_method", "my_method_meta"]}


def test_installed_template_passes_validate_plugin_and_its_own_tests(template_venv):
    res = in_venv(template_venv, "-c", VALIDATE, "validate-plugin", "my_method", "--quiet")
    assert res.returncode == 0, res.stdout + res.stderr
    out = res.stdout
    assert "✅ loads through the registry: entry point my_method = oodbench_method_template:create" in out
    assert "result: PASSED (0 failed, 0 warning(s))" in out and "❌" not in out and "⚠️" not in out
    assert "my_method_meta is available" in out and "images/s" in out
    own = in_venv(template_venv, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests")
    assert own.returncode == 0, own.stdout + own.stderr


class Saturation(Method):
    """A cheap, sensible method (anomalies in the embedded set are vivid); the broken variants below each break it."""

    name = "saturation"

    def __init__(self, seed=0):
        self.seed = seed

    def scores(self, images):
        x = images.astype(np.float32) / 255.0
        return x.max(-1) - x.min(-1)

    def predict(self, images):
        return MethodOutput(scores=self.scores(images))


def variant(predict, **attrs):
    return type("Variant", (Saturation,), {"predict": predict, **attrs})


def _nan(self, images):
    s = self.scores(images)
    s[:, 3, 5] = np.nan
    return MethodOutput(scores=s)


class SeedIgnoring(Saturation):
    def __init__(self, seed=0):
        super().__init__(seed)
        self.offset = np.float32(np.random.default_rng().random())  # ignores the seed

    def predict(self, images):
        return MethodOutput(scores=self.scores(images) + self.offset)


def _probs(total):
    def predict(self, images):
        s = self.scores(images)
        return MethodOutput(scores=s, probs=np.full((len(s), 3, *s.shape[1:]), total / 3, np.float32))
    return predict


BROKEN = {
    "shape": (variant(lambda self, im: MethodOutput(scores=self.scores(im)[:, ::2, ::2])), "❌ score shape equals label shape: got (4, 64, 128)"),
    "finite": (variant(_nan), "❌ finite scores: 4 of"),
    "dtype": (variant(lambda self, im: MethodOutput(scores=self.scores(im).astype(np.float64))), "❌ score dtype: float64"),
    "determinism": (variant(lambda self, im: MethodOutput(scores=self.scores(im) + np.random.default_rng().random(
        im.shape[:3], np.float32))), "❌ same batch twice gives the same scores:"),
    "fresh_instance": (SeedIgnoring, "❌ a fresh instance with seed=0 gives the same scores:"),
    "probs": (variant(_probs(1.5), provides_probs=True), "❌ probabilities: from predict: sums over classes range 1.5..1.5"),
    "output": (variant(lambda self, im: {"scores": self.scores(im)}), "❌ returns a MethodOutput: predict returned dict"),
    "instance": (lambda seed=0: object(), "❌ creates an instance: the factory returned object"),
    "record": (variant(Saturation.predict, config=lambda self: {"name": "saturation", "layers": {1, 2}}),
               "❌ record fields: config() and setup() must return JSON-serializable dicts"),
}


@pytest.mark.parametrize("key", sorted(BROKEN))
def test_each_broken_method_fails_its_own_check(key):
    factory, line = BROKEN[key]
    report = validate_plugin(f"broken_{key}", factory=factory, quick=key != "fresh_instance")
    failed = [c.key for c in report.checks if c.status == FAIL]
    assert failed == [key], report.render()
    assert any(c.line().startswith(line) for c in report.checks), report.render()
    assert not report.ok and "result: FAILED (1 failed" in report.render()


def test_good_method_passes_and_warnings_do_not_fail():
    good = validate_plugin("saturation", factory=Saturation)
    assert good.ok and all(c.status == OK for c in good.checks), good.render()
    assert good.status("probs") == OK and "no saturation_meta variant" in good.render()
    flipped = validate_plugin("saturation", factory=variant(lambda self, im: MethodOutput(scores=-self.scores(im))),
                              quick=True)
    assert flipped.ok and flipped.status("auroc") == WARN and "AUROC" in flipped.render()
    assert flipped.status("fresh_instance") == SKIP
    constant = validate_plugin("saturation", factory=variant(lambda self, im: MethodOutput(
        scores=np.zeros(im.shape[:3], np.float16))), quick=True)
    assert constant.ok and constant.status("range") == WARN and constant.status("record") == OK
    unnamed = validate_plugin("other_name", factory=Saturation, quick=True)
    assert unnamed.ok and unnamed.status("record") == WARN
    tuple_key = validate_plugin("saturation", factory=variant(Saturation.predict, config=lambda self: {
        "name": "saturation", (1, 2): 3}), quick=True)  # make_record writes the key as a string: not a failure
    assert tuple_key.ok and tuple_key.status("record") == OK, tuple_key.render()


def test_cli_through_the_registry_exits_1_on_failure(capsys):
    parser = argparse.ArgumentParser(prog="oodbench")
    sub = parser.add_subparsers()
    register(sub)
    assert f"({QUICK_IMAGES}, not {DEFAULT_IMAGES})" in " ".join(sub.choices["validate-plugin"].format_help().split())
    METHODS.add("test_plugin_nan", variant(_nan))
    try:
        args = parser.parse_args(["validate-plugin", "test_plugin_nan", "--quick", "--quiet"])
        assert args.func(args) == 1
        out = capsys.readouterr().out
        assert "registered in code" in out and "❌ finite scores" in out and "result: FAILED" in out
        args = parser.parse_args(["validate-plugin", "test_plugin_nam", "--quiet"])
        assert args.func(args) == 1
        out = capsys.readouterr().out
        assert "❌ loads through the registry: unknown method 'test_plugin_nam'" in out and "'test_plugin_nan'" in out
        assert "remaining checks did not run" in out
    finally:
        METHODS._items.pop("test_plugin_nan")
