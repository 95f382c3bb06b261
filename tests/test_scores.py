"""Score functions against closed forms."""
import math

import numpy as np
import pytest
import torch

from oodbench.scores import SCORES


def test_registered_scores():
    assert SCORES.list() == ["energy", "entropy", "maxlogit", "msp"]


def test_uniform_logits_have_maximal_entropy_and_msp():
    logits = torch.zeros(2, 19, 3, 4)
    assert torch.allclose(SCORES.get("entropy")(logits), torch.ones(2, 3, 4))
    assert torch.allclose(SCORES.get("msp")(logits), torch.full((2, 3, 4), 1 - 1 / 19))
    assert torch.allclose(SCORES.get("energy")(logits), torch.full((2, 3, 4), -math.log(19)))


def test_scores_match_numpy_closed_forms():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, 5, 2, 3)) * 3
    p = np.exp(z) / np.exp(z).sum(1, keepdims=True)
    t = torch.from_numpy(z)
    np.testing.assert_allclose(SCORES.get("entropy")(t).numpy(), -(p * np.log(p)).sum(1) / math.log(5), rtol=1e-5)
    np.testing.assert_allclose(SCORES.get("msp")(t).numpy(), 1 - p.max(1), rtol=1e-5)
    np.testing.assert_allclose(SCORES.get("maxlogit")(t).numpy(), -z.max(1), rtol=1e-5)
    np.testing.assert_allclose(SCORES.get("energy")(t).numpy(), -np.log(np.exp(z).sum(1)), rtol=1e-5)
    np.testing.assert_allclose(SCORES.get("energy")(t, temperature=2.0).numpy(),
                               -2 * np.log(np.exp(z / 2).sum(1)), rtol=1e-5)


@pytest.mark.parametrize("name", ["entropy", "msp", "maxlogit", "energy"])
def test_more_confident_means_lower_score(name):
    confident = torch.tensor([10.0, 0, 0]).view(1, 3, 1, 1)
    unsure = torch.tensor([1.0, 0.9, 0.8]).view(1, 3, 1, 1)
    fn = SCORES.get(name)
    assert fn(confident).item() < fn(unsure).item()
