"""Option types shared by the subcommands: whole-number arguments and ``--option KEY=VALUE`` pairs (here, so that
no command imports the command line)."""
from __future__ import annotations

import argparse
import re
from typing import Callable, Sequence

from ..errors import OodbenchError

# a decimal number with a point or an exponent: 0.5, -2., 1e-3 (not 007, inf, nan, 1_0)
DECIMAL = re.compile(r"[+-]?(\d+\.\d*|\.\d+|\d+(\.\d*)?[eE][+-]?\d+)")


def count(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum`` (e.g. --seed 0.., --batch-size 1..)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{value} is below {minimum}, the smallest value it takes")
        return value

    parse.__name__ = f"whole number >= {minimum}"
    return parse


def parse_options(pairs: Sequence[str], decimals: bool = False) -> dict:
    """``KEY=VALUE`` strings -> dict; integers written as such (``12``, ``-3``, not ``007``, which stays a string,
    e.g. a frame id) and true/false/none become Python values, and with ``decimals`` finite decimal numbers
    (``0.5``, ``1e-3``) floats; a key given twice is refused."""
    options: dict = {}
    for kv in pairs:
        if "=" not in kv:
            raise OodbenchError(f"option {kv!r}: write KEY=VALUE, e.g. mapping=metaood")
        key, value = kv.split("=", 1)
        if key in options:
            raise OodbenchError(f"option {key!r} given twice ({options[key]!r} and {value!r}): give it once")
        low = value.lower()
        if low in ("true", "false"):
            options[key] = low == "true"
        elif low == "none":
            options[key] = None
        elif value.lstrip("-").isdigit() and str(int(value)) == value:
            options[key] = int(value)
        elif decimals and DECIMAL.fullmatch(value):
            options[key] = float(value)
        else:
            options[key] = value
    return options

