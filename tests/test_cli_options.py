"""``--option`` / ``--method-option KEY=VALUE``: which values become Python values, the refusals, and method options
reaching the method, its score cache key and the record."""
import json

import pytest

from oodbench.cli import main
from oodbench.commands.options import parse_options
from oodbench.errors import OodbenchError


def test_values_become_python_values_only_when_written_as_such():
    got = parse_options(["n=12", "m=-3", "frame=000123", "x=1.5", "on=True", "off=false", "none=None", "s=a=b"])
    assert got == {"n": 12, "m": -3, "frame": "000123", "x": "1.5", "on": True, "off": False, "none": None,
                   "s": "a=b"}


@pytest.mark.parametrize("pairs, match", [(["novalue"], "KEY=VALUE"), (["k=1", "k=2"], "given twice")])
def test_refusals_name_the_option(pairs, match):
    with pytest.raises(OodbenchError, match=match):
        parse_options(pairs)


def test_method_options_also_take_decimals():
    got = parse_options(["sigma=2.0", "eps=1e-3", "d=-.5", "k=4", "frame=007", "x=1_0", "y=inf", "z=1.2.3"],
                        decimals=True)
    assert got == {"sigma": 2.0, "eps": 0.001, "d": -0.5, "k": 4, "frame": "007", "x": "1_0", "y": "inf",
                   "z": "1.2.3"}


@pytest.fixture(scope="module")
def smoothed(tmp_path_factory):
    """sml_ds on the embedded benchmark with its defaults and with a wider smoothing kernel given on the command line."""
    out = tmp_path_factory.mktemp("method_options")
    args = ["run", "--method", "sml_ds", "--out", str(out), "--quiet", "--no-components"]
    assert main(args) == 0
    assert main(args + ["--method-option", "sigma=3.0", "--method-option", "dilation=8"]) == 0
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    return {bool(r["method"].get("options")): r for r in records}


def test_method_options_reach_the_method_and_the_record(smoothed):
    default, given = smoothed[False], smoothed[True]
    assert given["method"]["options"] == {"sigma": 3.0, "dilation": 8}
    post = given["method"]["post_processing"]
    assert post["sigma"] == 3.0 and post["dilation"] == 8 and default["method"]["post_processing"]["sigma"] != 3.0
    assert given["metrics"]["pixel"]["auroc"] != default["metrics"]["pixel"]["auroc"]  # other maps, not a cache hit
    assert given["scores"]["cache"] != default["scores"]["cache"]


@pytest.mark.parametrize("option, match", [("foo=1", "takes no option 'foo'"), ("seed=3", "give --seed"),
                                           ("network=tiny20", "give --network")])
def test_method_option_refusals_name_the_option(tmp_path, capsys, option, match):
    assert main(["run", "--method", "maxlogit", "--method-option", option, "--out", str(tmp_path), "--quiet"]) != 0
    assert match in capsys.readouterr().err
    assert not list(tmp_path.glob("*.json"))
