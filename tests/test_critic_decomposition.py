"""`critic_decomposition="bellman"` (issue 36, item 1): one critic value per reward component, each
on its own Bellman target, whose weighted sum is the critic's Q by construction."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_fastq import FastQConfig
from rllib_fastq.data.io import write_transitions
from rllib_fastq.torch import losses
from rllib_fastq.torch.fastq_torch_rl_module import BR_NEXT_OBS, FastQTorchRLModule
from tests.synthetic import TINY_NETS, make_synthetic

WEIGHTS = [1.0, 0.5, -2.0]
NAMES = ["a", "b", "c"]


def _module(decomposition: str = "bellman", indices: list[int] | None = None) -> FastQTorchRLModule:
    torch.manual_seed(0)
    indices = [0, 1, 2] if indices is None else indices
    cfg = dict(num_policies=3, arm_value_hiddens=[8], arm_value_ensemble=2, expert_hiddens=[8], br_dim=4,
               adversary_hiddens=[8], actor_hiddens=[8], critic_hiddens=[8], critic_decomposition=decomposition,
               reward_weights=WEIGHTS, component_names=NAMES, num_decomposed=len(indices),
               decomposed_names=[NAMES[j] for j in indices], decomposed_indices=indices)
    return RLModuleSpec(module_class=FastQTorchRLModule, observation_space=gym.spaces.Box(-np.inf, np.inf, (5,)),
                        action_space=gym.spaces.Box(-1, 1, (2,)), model_config=cfg).build()


def test_component_td_target_and_loss_against_a_hand_computation():
    gamma = 0.9
    # two rows, two heads (weights 1 and -2); row 0 continues, row 1 is terminal
    r = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    terminated = torch.tensor([0.0, 1.0])
    q_next_c = torch.tensor([[[1.0, 0.0], [2.0, 1.0]],     # row 0: twin sums 1.0 and 0.0 → twin 2
                             [[5.0, 1.0], [0.0, 0.0]]])    # row 1: terminal, no bootstrap
    hw = torch.tensor([1.0, -2.0])
    q_next = (q_next_c * hw).sum(-1)
    y = losses.component_td_target(r, terminated, q_next, q_next_c, gamma)
    expected_y = torch.tensor([[1.0 + 0.9 * 2.0, 2.0 + 0.9 * 1.0], [3.0, -1.0]])
    assert torch.allclose(y, expected_y)
    # Σ_j w_j y_j is the scalar clipped double-Q target
    scalar_r = (r * hw).sum(-1)
    assert torch.allclose((y * hw).sum(-1), losses.td_target(scalar_r, terminated, q_next, gamma))
    q = torch.tensor([[[2.0, 3.0], [3.0, 2.0]], [[3.0, 0.0], [4.0, -1.0]]], requires_grad=True)  # [B, 2, C]
    total, per_head = losses.component_td_loss(q, y)
    # errors Q − y over rows (0, 1); head 0: twin 1 (−0.8, 0), twin 2 (0.2, 1);
    # head 1: twin 1 (0.1, 1), twin 2 (−0.9, 0)
    h0 = (0.8 ** 2 + 0.0) / 2 + (0.2 ** 2 + 1.0) / 2
    h1 = (0.1 ** 2 + 1.0) / 2 + (0.9 ** 2 + 0.0) / 2
    assert per_head.tolist() == pytest.approx([h0, h1], rel=1e-5)
    assert total.item() == pytest.approx(h0 + h1, rel=1e-5)
    total.backward()
    assert q.grad is not None


def test_component_rewards_append_the_undecomposed_rest():
    rc = torch.tensor([[1.0, 2.0, 3.0], [0.5, -1.0, 2.0]])
    w = torch.tensor(WEIGHTS)
    r = rc @ w
    decomposed = rc[:, [0, 2]]
    out = losses.component_rewards(r, decomposed, w[[0, 2]], has_rest=True)
    assert torch.allclose(out, torch.stack([rc[:, 0], rc[:, 2], 0.5 * rc[:, 1]], -1))
    assert torch.equal(losses.component_rewards(r, rc, w, has_rest=False), rc)
    assert torch.equal(losses.component_rewards(r, None, w[:0], has_rest=True), r[:, None])


@pytest.mark.parametrize("indices", [[0, 1, 2], [0, 2]])
def test_weighted_sum_of_component_values_is_the_critic_q_exactly(indices):
    module = _module("bellman", indices)
    hw = module.critic.head_weights
    assert hw.tolist() == [WEIGHTS[j] for j in indices] + ([1.0] if len(indices) < 3 else [])
    x = torch.randn(7, 4 + 2)
    q, qc = module.critic(x)
    assert qc.shape == (7, 2, len(hw)) and q.shape == (7, 2)
    assert torch.equal(q, (qc * hw).sum(-1))
    by_hand = sum(float(hw[j]) * qc[..., j] for j in range(len(hw)))
    assert torch.allclose(q, by_hand, atol=1e-6)
    assert torch.allclose(module.critic.q1(x), q[:, 0], atol=1e-6)
    q_no, none = module.critic(x, with_weights=False)
    assert none is None and torch.equal(q_no, q)
    target = module.forward_target({BR_NEXT_OBS: torch.randn(7, 4)})
    assert target["q_components"].shape == (7, 2, len(hw))
    assert torch.equal(target["q"], (target["q_components"] * hw).sum(-1))


@pytest.mark.parametrize("indices", [[0, 1, 2], [0, 2]])
def test_explain_components_sum_to_q(indices):
    module, obs = _module("bellman", indices), torch.randn(6, 5)
    ex = module.explain(obs, "best")
    assert list(ex["components"]) == [NAMES[j] for j in indices] + ["residual"]
    assert torch.allclose(sum(ex["components"].values()), ex["q"], atol=1e-5)
    if len(indices) == 3:  # everything decomposed: the residual is kept, as zeros
        assert torch.equal(ex["components"]["residual"], torch.zeros(6))
    soft = _module("softmax", indices).explain(obs, "best")
    assert list(soft["components"]) == list(ex["components"])
    assert torch.allclose(sum(soft["components"].values()), soft["q"], atol=1e-5)


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    """The synthetic episodes with reward components that the action determines (its own are
    noise, whose TD loss cannot fall below their variance)."""
    tr = make_synthetic()
    a = tr.actions
    tr.reward_components = np.stack([2 * a[:, 0], a[:, 1], 2 * a[:, 0] * a[:, 1]], -1).astype(np.float32)
    tr.rewards = tr.reward_components.sum(1)
    path = tmp_path_factory.mktemp("data") / "synthetic.parquet"
    write_transitions(tr, path)
    return str(path)


def test_config_validation_names_the_field(synthetic_path):
    config = (FastQConfig().offline_data(input_=[synthetic_path])
              .training(num_policies=3, reward_weights=WEIGHTS, critic_decomposition="td"))
    with pytest.raises(ValueError, match="`critic_decomposition` must be 'softmax'.*got 'td'"):
        config.validate()
    assert FastQConfig().critic_decomposition == "bellman"
    assert FastQConfig().training(critic_decomposition="bellman").reference().critic_decomposition == "softmax"


def test_learner_trains_each_component_on_its_own_target(ray_session, synthetic_path):
    torch.manual_seed(0)
    algo = (FastQConfig()
            .offline_data(input_=[synthetic_path], dataset_num_iters_per_learner=40)
            .training(train_batch_size_per_learner=64, num_policies=3, pretrain_steps=4, gamma=0.5,
                      reward_weights=WEIGHTS, reward_component_names=NAMES, decomposed_components=[0, 2],
                      critic_decomposition="bellman", policy_freq=2, tau=0.05, critic_lr=3e-3, **TINY_NETS)
            .debugging(seed=0)).build_algo()
    try:
        results = [algo.train()["learners"][DEFAULT_MODULE_ID] for _ in range(5)]
        module = algo.get_module()
    finally:
        algo.stop()
    for key in ("component_td_loss_a", "component_td_loss_c", "component_td_loss_rest", "td_loss"):
        first, last = float(results[0][key]), float(results[-1][key])
        assert last < 0.6 * first, (key, first, last)
    assert "decomposition_loss" not in results[-1]
    ex = module.explain(torch.randn(4, 4), "best")
    assert list(ex["components"]) == ["a", "c", "residual"]
    assert torch.allclose(sum(ex["components"].values()), ex["q"], atol=1e-5)
