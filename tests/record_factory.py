"""Schema-valid, sealed records with hand-picked metrics, for tests of the tools that read records."""
from __future__ import annotations

import copy

from oodbench.leaderboard.record import make_record, seal

_BASE = make_record(method={"name": "base"}, dataset={"name": "synthetic", "split": "test", "num_images": 10,
                                                      "fingerprint": "f" * 64},
                    metrics={"pixel": {"auroc": 0.5, "ap": 0.5, "fpr95": 0.5, "num_pos": 100, "num_neg": 900}},
                    cost={"wall_seconds": 1.0, "images_per_second": 10.0})  # provenance once: it runs git


def valid_record(method: str, metrics: dict, *, dataset: str = "synthetic", split: str = "test",
                 utc: str = "2026-01-01T00:00:00+00:00", **fields) -> dict:
    """A record of ``method`` on ``dataset``/``split`` with these metrics (pixel counts added where absent);
    ``fields`` set top-level fields (e.g. seed) or, as method_<key>, fields of the method section."""
    r = copy.deepcopy(_BASE)
    r["method"]["name"] = method
    r["dataset"].update(name=dataset, split=split)
    r["provenance"]["utc_time"] = utc
    r["metrics"] = copy.deepcopy(metrics)
    r["metrics"]["pixel"] = {"num_pos": 100, "num_neg": 900, **r["metrics"]["pixel"]}
    for key, value in fields.items():
        if key.startswith("method_"):
            r["method"][key[len("method_"):]] = value
        else:
            r[key] = value
    return seal(r)
