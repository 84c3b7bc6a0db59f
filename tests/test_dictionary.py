"""Neural Implicit Dictionary pieces: signed top-k gates, balancing losses, the collapsed head."""

import pytest
import torch

from nerf_loe.components.dictionary import DictionaryHead
from nerf_loe.components.gating import balancing_loss, cv_squared, signed_top_k
from nerf_loe.errors import ConfigError


def test_top_k_keeps_exactly_k_signed_gates_and_passes_gradients_only_to_them():
    torch.manual_seed(0)
    logits = torch.randn(7, 20, requires_grad=True)
    gates = signed_top_k(logits, 5)
    assert ((gates != 0).sum(dim=1) == 5).all()
    for row, gate in zip(logits.detach(), gates.detach(), strict=True):
        kept = sorted(range(20), key=lambda j: -abs(float(row[j])))[:5]  # by a sort of |logit|
        assert sorted(torch.nonzero(gate)[:, 0].tolist()) == sorted(kept)
        assert torch.equal(gate[kept], row[kept])  # signs and values kept, no softmax
    assert (gates < 0).any()
    gates.sum().backward()
    assert torch.equal(logits.grad, (gates != 0).float())
    with pytest.raises(ConfigError, match="top-k 21"):
        signed_top_k(logits, 21)


def test_balancing_losses_vanish_for_uniform_use_and_grow_otherwise():
    # 4 scenes, 4 experts, each kept by 2 scenes with equal magnitudes: uniform load and importance
    uniform = torch.tensor([[1.0, -1.0, 0, 0], [0, 0, 1.0, -1.0], [-1.0, 0, 1.0, 0], [0, 1.0, 0, -1.0]])
    assert float(balancing_loss(uniform, dense=False)) == pytest.approx(0.0, abs=1e-8)
    assert float(balancing_loss(uniform, dense=True)) == pytest.approx(0.01 * 0.5)  # only the L1 term
    skewed = torch.tensor([[1.0, -1.0, 0, 0], [1.0, 1.0, 0, 0], [-1.0, 0, 1.0, 0], [1.0, 1.0, 0, 0]])
    assert float(balancing_loss(skewed, dense=False)) > 0.01
    loads = torch.tensor([4.0, 3.0, 1.0, 0.0])  # expert use: 4, 3, 1, 0 scenes
    assert float(cv_squared(loads)) == pytest.approx(loads.var().item() / 2.0**2)


def test_collapsed_matrix_is_the_explicit_top_k_sum():
    torch.manual_seed(1)
    head = DictionaryHead(in_dim=6, num_experts=10, out_dim=4)
    gates = signed_top_k(torch.randn(3, 10), 4)
    scene_bias = torch.randn(3, 4)
    weight, bias = head.collapse(gates, scene_bias)
    for s in range(3):
        kept = torch.nonzero(gates[s])[:, 0].tolist()
        want_w = sum(float(gates[s, j]) * head.weight[j] for j in kept)
        want_b = sum(float(gates[s, j]) * head.bias[j] for j in kept) + scene_bias[s]
        assert torch.allclose(weight[s], want_w, atol=1e-6) and torch.allclose(bias[s], want_b, atol=1e-6)
    # samples of several scenes, each against its own scene's experts one by one
    h = torch.randn(50, 6)
    scene = torch.randint(3, (50,))
    out = head(h, scene, gates, scene_bias)
    for i in range(50):
        s = int(scene[i])
        want = sum(gates[s, j] * (head.weight[j] @ h[i] + head.bias[j]) for j in range(10)) + scene_bias[s]
        assert torch.allclose(out[i], want, atol=1e-5)
