"""The entropy-maximization objective against its closed form (reference/method.md)."""
import math

import torch
import torch.nn.functional as F

from oodbench.training.loss import entropy_maximization_loss, soft_targets


def test_soft_targets_encoding():
    t = soft_targets(torch.tensor([[[2, 254, 255]]]), num_classes=4, lam=0.9)
    assert torch.allclose(t[0, :, 0, 0], torch.tensor([0, 0, 0.1, 0]))
    assert torch.allclose(t[0, :, 0, 1], torch.full((4,), 0.9 / 4))
    assert torch.all(t[0, :, 0, 2] == 0)


def test_loss_equals_weighted_ce_plus_uniform_ce():
    torch.manual_seed(0)
    logits = torch.randn(2, 5, 3, 3)
    labels = torch.randint(0, 5, (2, 3, 3))
    labels[0, 0, :] = 254
    labels[1, 2, :] = 255
    logp = F.log_softmax(logits, 1)
    ind = (labels < 5)
    ce_id = -logp.gather(1, labels.clamp(max=4).unsqueeze(1)).squeeze(1)[ind].sum()
    ce_uniform = -(logp.mean(1))[labels == 254].sum()
    expected = (0.1 * ce_id + 0.9 * ce_uniform) / logits.numel()
    assert torch.allclose(entropy_maximization_loss(logits, labels, lam=0.9), expected, atol=1e-7)


def test_uniform_prediction_value():
    loss = entropy_maximization_loss(torch.zeros(1, 19, 1, 2), torch.tensor([[[3, 254]]]))
    assert math.isclose(loss.item(), math.log(19) / (19 * 2), rel_tol=1e-6)


def test_gradient_pushes_proxy_pixels_towards_uniform():
    logits = torch.tensor([5.0, 0.0, 0.0]).view(1, 3, 1, 1).requires_grad_()
    entropy_maximization_loss(logits, torch.tensor([[[254]]])).backward()
    assert logits.grad[0, 0] > 0 and logits.grad[0, 1] < 0
