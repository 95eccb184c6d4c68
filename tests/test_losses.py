"""Each loss of docs/algorithm.md §4 against a hand computation on a tiny batch."""

from __future__ import annotations

import math

import pytest
import torch

from rllib_fastq.torch import losses
from rllib_fastq.torch.networks import BatchedLinear, TwinCritic, VariationalLSTM, grad_reverse


def test_expert_loss_masks_unknown_arms_and_averages_per_arm():
    a_hat = torch.tensor([[[0.0], [1.0]], [[2.0], [3.0]]])  # B=2, K=2, d=1
    targets = torch.tensor([[[1.0], [1.0]], [[0.0], [0.0]]])
    mask = torch.tensor([[True, False], [True, True]])
    total, per_arm = losses.expert_loss(a_hat, targets, mask)
    # arm 0: rows 0 and 1 known: ((0-1)^2 + (2-0)^2) / 2 = 2.5; arm 1: row 1 only: 3^2 = 9
    assert per_arm.tolist() == pytest.approx([2.5, 9.0])
    assert total.item() == pytest.approx(11.5)


def test_expert_loss_l1_is_the_absolute_error_and_fits_the_median_of_clipped_noise():
    a_hat = torch.tensor([[[0.0, 1.0]], [[2.0, 0.0]]])  # B=2, K=1, d=2
    targets = torch.tensor([[[1.0, 1.0]], [[0.0, -1.0]]])
    mask = torch.ones(2, 1, dtype=torch.bool)
    total, _ = losses.expert_loss(a_hat, targets, mask, kind="l1")
    assert total.item() == pytest.approx(((1 + 0) / 2 + (2 + 1) / 2) / 2)  # (0.5 + 1.5) / 2
    # An action 0.95 logged with N(0, 0.15²) noise clipped to [-1, 1]: the squared error's minimiser
    # (the mean) is pulled inwards by the clip, the absolute error's (the median) is the action.
    logged = torch.clamp(0.95 + 0.15 * torch.randn(20_000, generator=torch.Generator().manual_seed(0)), -1, 1)
    grid = torch.linspace(0.85, 1.0, 151)
    fit = {kind: grid[torch.stack([losses.expert_loss(g.expand(len(logged), 1, 1), logged[:, None, None],
                                                      torch.ones(len(logged), 1, dtype=torch.bool), kind=kind)[0]
                                   for g in grid]).argmin()].item() for kind in ("mse", "l1")}
    assert fit["l1"] == pytest.approx(0.95, abs=0.005) and fit["mse"] < 0.935


def test_expert_loss_row_weights():
    a_hat = torch.tensor([[[0.0]], [[2.0]]])
    targets = torch.zeros(2, 1, 1)
    mask = torch.ones(2, 1, dtype=torch.bool)
    total, _ = losses.expert_loss(a_hat, targets, mask, weights=torch.tensor([3.0, 1.0]))
    assert total.item() == pytest.approx((3 * 0 + 1 * 4) / 4)


def test_adversary_loss_is_cross_entropy_on_logits_summed_over_experts():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]]])  # B=1, K=2 experts, 2 classes
    labels = torch.tensor([[0, 1]])
    loss, acc = losses.adversary_loss(logits, labels)
    ce0 = -math.log(math.exp(2) / (math.exp(2) + 1))
    ce1 = -math.log(0.5)
    assert loss.item() == pytest.approx(ce0 + ce1, rel=1e-5)
    # expert 0 predicted class 0 (right), expert 1 tie -> argmax 0 (wrong)
    assert acc.item() == pytest.approx(0.5)


def test_gradient_reversal_flips_sign_and_scales_by_lambda():
    x = torch.tensor([1.0, -2.0], requires_grad=True)
    y = grad_reverse(x, 0.1)
    assert torch.equal(y, x)  # identity forward
    (y * torch.tensor([3.0, 5.0])).sum().backward()
    assert x.grad.tolist() == pytest.approx([-0.3, -0.5])


def test_grl_makes_encoder_maximise_what_the_classifier_minimises():
    torch.manual_seed(0)
    enc = torch.nn.Linear(3, 4)
    clf = torch.nn.Linear(4, 2)
    x, label = torch.randn(8, 3), torch.randint(2, (8,))
    lam = 0.5
    loss = torch.nn.functional.cross_entropy(clf(grad_reverse(enc(x), lam)), label)
    loss.backward()
    g_rev = enc.weight.grad.clone()
    g_clf_rev = clf.weight.grad.clone()
    enc.zero_grad()
    clf.zero_grad()
    torch.nn.functional.cross_entropy(clf(enc(x)), label).backward()
    assert torch.allclose(g_rev, -lam * enc.weight.grad, atol=1e-6)
    assert torch.allclose(g_clf_rev, clf.weight.grad, atol=1e-6)  # the classifier is unaffected


def _adversary_trunk_grads(**cfg) -> tuple[float, float]:
    """|∂L_adv/∂trunk| and |∂L_adv/∂adversary| of a tiny module with ``cfg`` over the defaults."""
    import gymnasium as gym
    import numpy as np
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_fastq.torch.fastq_torch_rl_module import FastQTorchRLModule

    torch.manual_seed(0)
    module = RLModuleSpec(module_class=FastQTorchRLModule, observation_space=gym.spaces.Box(-np.inf, np.inf, (5,)),
                          action_space=gym.spaces.Box(-1, 1, (2,)),
                          model_config=dict(num_policies=3, expert_hiddens=[8], br_dim=4, adversary_hiddens=[8],
                                            actor_hiddens=[8], critic_hiddens=[8], **cfg)).build()
    b, _ = module.representations(torch.randn(16, 5))
    logits = module.adversary_logits(b)
    labels = torch.arange(3).expand(16, 3)
    losses.adversary_loss(logits, labels)[0].backward()
    trunk = sum(p.grad.abs().sum().item() for net in (module.trunk, module.experts) for p in net.parameters()
                if p.grad is not None)
    adversary = sum(p.grad.abs().sum().item() for p in module.adversary.parameters())
    return trunk, adversary


def test_default_adversary_trains_without_reversing_gradients_into_the_trunk_the_reference_does():
    """Default grl_lambda 0 (docs/algorithm.md §8 h): the adversary still learns, the shared trunk
    (read by the arms' clones) gets nothing from it; the reference preset's λ = 0.1 reaches it."""
    from rllib_fastq import FastQConfig
    from rllib_fastq.defaults import MODEL_DEFAULTS

    assert FastQConfig().grl_lambda == MODEL_DEFAULTS["grl_lambda"] == 0.0
    assert FastQConfig().reference().grl_lambda == 0.1
    trunk, adversary = _adversary_trunk_grads()
    assert trunk == 0.0 and adversary > 0.0
    trunk_ref, _ = _adversary_trunk_grads(grl_lambda=0.1)
    assert trunk_ref > 0.0


def test_td_target_masks_bootstrap_on_terminal():
    r = torch.tensor([1.0, 1.0])
    term = torch.tensor([0.0, 1.0])
    q_next = torch.tensor([[5.0, 3.0], [5.0, 3.0]])
    y = losses.td_target(r, term, q_next, gamma=0.5)
    assert y.tolist() == pytest.approx([1.0 + 0.5 * 3.0, 1.0])


def test_td_loss_sums_both_twins():
    q = torch.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = torch.tensor([0.0, 0.0])
    loss = losses.td_loss(q, y)
    assert loss.item() == pytest.approx((1 + 9) / 2 + (4 + 16) / 2)


def test_decomposition_loss_per_component_and_residual_slot_ignored():
    q = torch.tensor([[2.0, 4.0]])
    w = torch.tensor([[[0.5, 0.25, 0.25], [0.5, 0.5, 0.0]]])  # D=2 + residual
    comps = torch.tensor([[1.0, 0.0]])
    total, per = losses.decomposition_loss(q, w, comps)
    # twin 1: shares 1.0, 0.5 ; twin 2: 2.0, 2.0 -> comp0: (0)^2 + (1)^2 = 1 ; comp1: 0.25 + 4 = 4.25
    assert per.tolist() == pytest.approx([1.0, 4.25])
    assert total.item() == pytest.approx(5.25)


def test_decomposition_detach_q_keeps_q_out_of_the_gradient():
    q = torch.tensor([[2.0, 4.0]], requires_grad=True)
    w = torch.full((1, 2, 2), 0.5, requires_grad=True)
    comps = torch.tensor([[0.0]])
    losses.decomposition_loss(q, w, comps, detach_q=True)[0].backward()
    assert q.grad is None and w.grad is not None
    q2 = q.detach().clone().requires_grad_(True)
    losses.decomposition_loss(q2, w, comps, detach_q=False)[0].backward()
    assert q2.grad.abs().sum() > 0


def test_actor_loss_lambda_and_bc_term():
    q_pi = torch.tensor([2.0, -4.0], requires_grad=True)
    pi = torch.tensor([[0.5], [0.0]], requires_grad=True)
    target = torch.tensor([[0.0], [1.0]])
    loss, lam = losses.actor_loss(q_pi, pi, target, alpha=2.5)
    assert lam.item() == pytest.approx(2.5 / 3.0)
    expected = -(2.5 / 3.0) * (-1.0) + (0.25 + 1.0) / 2
    assert loss.item() == pytest.approx(expected)
    loss.backward()
    # higher Q must lower the loss: dL/dQ = -λ / B
    assert q_pi.grad.tolist() == pytest.approx([-(2.5 / 3.0) / 2] * 2)


def test_detached_critic_params_give_the_actor_gradient_but_not_the_critic():
    torch.manual_seed(0)
    critic = TwinCritic(3, [8], num_decomposed=1)
    a = torch.zeros(4, 1, requires_grad=True)
    x = torch.cat([torch.randn(4, 2), a], -1)
    q, _ = critic(x, detach_params=True, with_weights=False)
    q[:, 0].sum().backward()
    assert a.grad.abs().sum() > 0
    assert all(p.grad is None for p in critic.parameters())
    # The actor's Q1-only pass: same value and input gradient as the twin's first member.
    grad_twin = a.grad.clone()
    a.grad = None
    x = torch.cat([x[:, :2], a], -1)
    q1 = critic.q1(x, detach_params=True)
    assert torch.allclose(q1, q[:, 0], atol=1e-6)
    q1.sum().backward()
    assert torch.allclose(a.grad, grad_twin, atol=1e-6)
    assert all(p.grad is None for p in critic.parameters())


def test_batched_linear_equals_separate_layers():
    torch.manual_seed(0)
    layer = BatchedLinear(3, 4, 2)
    x = torch.randn(5, 4)
    out = layer(x)
    for g in range(3):
        assert torch.allclose(out[:, g], x @ layer.weight[g] + layer.bias[g], atol=1e-6)


def test_variational_lstm_hand_bptt_matches_an_autograd_unroll_and_the_fused_lstm():
    """The dropout LSTM's hand-written BPTT gives an autograd unroll's output and gradients (same
    masks), and with all-ones masks (no dropout drawn) nn.LSTM's own output and gradients."""
    torch.manual_seed(0)
    b, t, f, h = 6, 5, 3, 4
    lstm = VariationalLSTM(f, h, dropout=0.5).double().train()
    x = torch.randn(b, t, f, dtype=torch.float64, requires_grad=True)
    params = [x, *lstm.lstm.parameters()]

    def autograd_unroll(in_mask: torch.Tensor, h_mask: torch.Tensor) -> torch.Tensor:
        names = ("weight_ih", "weight_hh", "bias_ih", "bias_hh")
        w_ih, w_hh, b_ih, b_hh = (getattr(lstm.lstm, f"{n}_l0") for n in names)
        hs, cs = x.new_zeros(b, h), x.new_zeros(b, h)
        for s in range(t):
            i, f_, g, o = ((x[:, s] * in_mask[:, 0]) @ w_ih.T + b_ih + (hs * h_mask) @ w_hh.T + b_hh).chunk(4, 1)
            cs = torch.sigmoid(f_) * cs + torch.sigmoid(i) * torch.tanh(g)
            hs = torch.sigmoid(o) * torch.tanh(cs)
        return hs

    torch.manual_seed(1)
    out = lstm(x)
    torch.manual_seed(1)  # the same masks as the module drew
    keep = 0.5
    in_mask = torch.bernoulli(x.new_full((b, 1, f), keep)) / keep
    h_mask = torch.bernoulli(x.new_full((b, h), keep)) / keep
    assert (h_mask == 0).any() and (in_mask == 0).any()  # the masks do drop something here
    expected = autograd_unroll(in_mask, h_mask)
    weights = torch.randn(b, h, dtype=torch.float64)
    grads = torch.autograd.grad((out * weights).sum(), params)
    grads_expected = torch.autograd.grad((expected * weights).sum(), params)
    assert torch.allclose(out, expected, atol=1e-12)
    for got, want in zip(grads, grads_expected):
        assert torch.allclose(got, want, atol=1e-12)

    lstm.dropout = 1e-12  # keeps the hand-written path; the masks are all ones
    fused = lstm.lstm(x)[1][0][-1]
    unrolled = lstm(x)
    assert torch.allclose(unrolled, fused, atol=1e-10)
    g_fused = torch.autograd.grad((fused * weights).sum(), params)
    g_unrolled = torch.autograd.grad((unrolled * weights).sum(), params)
    for got, want in zip(g_unrolled, g_fused):
        assert torch.allclose(got, want, atol=1e-10)
