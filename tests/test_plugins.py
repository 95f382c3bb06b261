"""A third-party method arrives through the ``oodbench.methods`` entry point and runs through the
real CLI, with no change to oodbench's code: the distribution is found by importlib.metadata."""
import json
import os
import subprocess
import sys
import textwrap

PLUGIN = textwrap.dedent('''
    """A toy OoD method: colour saturation as the score (anomalies in the embedded set are vivid)."""
    import numpy as np
    from oodbench.methods import Method, MethodOutput

    class Saturation(Method):
        name = "saturation"

        def predict(self, images):
            x = images.astype(np.float32) / 255.0
            return MethodOutput(scores=x.max(-1) - x.min(-1))

    def make(**kwargs):
        return Saturation()
''')


def install_fake_distribution(site, name="oodbench_saturation_plugin"):
    (site / f"{name}.py").write_text(PLUGIN)
    dist = site / f"{name}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[oodbench.methods]\nsaturation = {name}:make\n")


def run_cli(args, site, home):
    env = {**os.environ, "PYTHONPATH": f"{site}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OODBENCH_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "oodbench.cli", *args], capture_output=True, text=True, env=env, timeout=300)


def test_plugin_listed_and_run_through_cli(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    install_fake_distribution(site)
    home = os.environ["OODBENCH_HOME"]
    listed = run_cli(["list", "methods", "sat*", "--json"], site, home)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == {"methods": ["saturation"]}

    out = tmp_path / "records"
    res = run_cli(["run", "--method", "saturation", "--out", str(out), "--quiet"], site, home)
    assert res.returncode == 0, res.stderr
    (record_path,) = out.glob("*.json")
    record = json.loads(record_path.read_text())
    assert record["method"]["name"] == "saturation"
    assert record["dataset"]["name"] == "synthetic" and record["dataset"]["split"] == "test"
    assert 0.0 <= record["metrics"]["pixel"]["auroc"] <= 1.0
    assert "AUROC" in res.stdout


def test_unknown_method_error_suggests(tmp_path):
    res = run_cli(["run", "--method", "entmax_mta", "--quiet"], tmp_path, os.environ["OODBENCH_HOME"])
    assert res.returncode == 2
    assert "unknown method 'entmax_mta'" in res.stderr and "'entmax_meta'" in res.stderr


def test_every_registered_score_has_a_method_and_a_meta_variant():
    from oodbench.methods import METHODS, create_method
    from oodbench.scores import SCORES

    SCORES.add("test_minus_maxlogit", lambda logits: logits.amax(1))
    try:
        assert {"test_minus_maxlogit", "test_minus_maxlogit_meta"} <= set(METHODS.list("test_*"))
        plain, meta = create_method("test_minus_maxlogit"), create_method("test_minus_maxlogit_meta")
        assert plain.score_name == meta.score_name == "test_minus_maxlogit" and plain.segment_stage is None
        assert meta.segment_stage.calibrate_tpr == 0.95 and meta.calibration_split == "val"
        assert create_method("entropy_meta").segment_stage.threshold == 0.7
    finally:
        SCORES._items.pop("test_minus_maxlogit")
