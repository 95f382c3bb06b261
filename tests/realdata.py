"""Where the real material of ``../shared/realdata/`` lives for tests, and the skip that names the folder.

Real photographs, labels and published weights are never committed; tests read them from the shared folder
(``$OODBENCH_REALDATA`` overrides it) and skip with the folder named where it is absent."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REALDATA = Path(os.environ.get("OODBENCH_REALDATA", Path(__file__).resolve().parents[2] / "shared" / "realdata"))
REFERENCE = REALDATA.parent / "reference"
ROAD_ANOMALY = REALDATA / "RoadAnomaly_jpg"
CITYSCAPES = REALDATA / "cityscapes"
OOD_OBJECTS = REALDATA / "ood_objects"
WEIGHTS = REALDATA / "weights"


def espnetv2_weights(scale: float) -> Path:
    return WEIGHTS / f"espnetv2_s_{scale:.1f}_city_1024x512.pth"


def needs(*paths: Path):
    """Mark a test ``realdata`` and skip it, naming what is missing, unless every path exists."""
    missing = [p for p in paths if not p.exists()]
    reason = (f"real data not found: {', '.join(str(p) for p in missing)} (the tests read ../shared/realdata/ "
              f"or $OODBENCH_REALDATA)")
    return lambda f: pytest.mark.realdata(pytest.mark.skipif(bool(missing), reason=reason)(f))
