"""The dataset registry: a ``Registry`` whose ``create`` refuses options the dataset does not declare, listing the
ones it does, instead of a TypeError from deep inside a loader or an option silently ignored."""
from __future__ import annotations

import inspect
from typing import Any

from ..errors import OodbenchError
from ..registry import Registry

LOCATION = ("root", "split")  # given by --data-root and --split, not by --option


def declared_options(factory: Any) -> list[str] | None:
    """The keyword options a dataset factory takes (None: it takes any, through ``**kwargs``)."""
    params = inspect.signature(factory).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return [p.name for p in params if p.name not in LOCATION and p.kind is not inspect.Parameter.VAR_POSITIONAL]


class DatasetRegistry(Registry):
    def create(self, name: str, **kwargs: Any):
        options = declared_options(self.get(name))
        unknown = sorted(set(kwargs) - set(LOCATION) - set(options)) if options is not None else []
        if unknown:
            raise OodbenchError(f"dataset {name!r} has no option {', '.join(map(repr, unknown))}; its options: "
                                f"{', '.join(options) or 'none'} (--option KEY=VALUE)")
        return super().create(name, **kwargs)
