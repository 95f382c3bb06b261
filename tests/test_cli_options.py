"""``--option KEY=VALUE`` parsing: which values become Python values, and the refusals."""
import pytest

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
