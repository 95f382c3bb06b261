"""Tests of the template method: its score on hand-made logits, its registration, and oodbench's plugin checks.
The last test needs oodbench's embedded baseline model, which the first run trains (about 1-2 minutes on a CPU)."""
import math

import torch

from oodbench_method_template import NAME, create, tempered_entropy


def test_score_is_normalized_entropy_of_the_tempered_softmax():
    uniform = torch.zeros(2, 19, 3, 4)
    assert torch.allclose(tempered_entropy(uniform, 0.5), torch.ones(2, 3, 4))
    logits = torch.randn(2, 19, 3, 4, generator=torch.Generator().manual_seed(0))
    plain = -(torch.softmax(logits, 1) * torch.log_softmax(logits, 1)).sum(1) / math.log(19)
    assert torch.allclose(tempered_entropy(logits, 1.0), plain, atol=1e-6)
    assert (tempered_entropy(logits, 0.5) <= tempered_entropy(logits, 1.0) + 1e-6).all()  # sharper, lower entropy
    confident = torch.zeros(1, 19, 1, 1)
    confident[:, 3] = 200.0  # softmax underflows to exact zeros: still finite
    assert tempered_entropy(confident, 0.1).item() == 0.0


def test_registered_with_its_meta_variant():
    from oodbench.methods import list_methods

    assert {NAME, NAME + "_meta"} <= set(list_methods(NAME + "*"))
    assert create(seed=3).seed == 3


def test_passes_oodbench_validate_plugin():
    from oodbench.evaluation.plugin_check import validate_plugin

    report = validate_plugin(NAME, quick=True)
    assert report.ok, report.render()
