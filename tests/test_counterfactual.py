"""Counterfactual arm values: returns-to-go, bootstrap weights, the losses and the safe arm choice."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from rllib_fastq.counterfactual import (
    bootstrap_weights,
    episode_starts,
    resolve_serve_action,
    returns_to_go,
    safe_arm_choice,
)
from rllib_fastq.torch import losses


def test_returns_to_go_per_episode_in_any_row_order():
    rewards = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    eps = np.array(["a", "a", "a", "b", "b"])
    t = np.array([0, 1, 2, 0, 1])
    np.testing.assert_allclose(returns_to_go(rewards, eps, t), [6, 5, 3, 30, 20])
    np.testing.assert_allclose(returns_to_go(rewards, eps, t, gamma=0.5), [1 + 1 + 0.75, 2 + 1.5, 3, 20, 20])
    perm = np.array([4, 2, 0, 3, 1])
    np.testing.assert_allclose(returns_to_go(rewards[perm], eps[perm], t[perm]), np.array([6, 5, 3, 30, 20])[perm])


def test_bootstrap_weights_are_shared_within_an_episode_and_seeded():
    eps = np.repeat(np.arange(200), 3).astype(str)
    w = bootstrap_weights(eps, members=4, seed=0)
    assert w.shape == (600, 4)
    assert (w[0::3] == w[1::3]).all() and (w[0::3] == w[2::3]).all()
    assert abs(w.mean() - 1.0) < 0.15  # Poisson(1)
    np.testing.assert_array_equal(w, bootstrap_weights(eps, members=4, seed=0))
    assert not np.array_equal(w, bootstrap_weights(eps, members=4, seed=1))


def test_arm_value_loss_trains_only_the_logged_arm_by_hand():
    values = torch.tensor([[[1.0, 5.0], [2.0, 7.0]],      # row 0: member 0 (arm 0, arm 1), member 1
                           [[0.0, 3.0], [4.0, 1.0]]], requires_grad=True)  # row 1
    pid = torch.tensor([0, 1])
    returns = torch.tensor([2.0, 2.0])
    # member 0: rows (1-2)², (3-2)² → mean 1; member 1: (2-2)², (1-2)² → mean 0.5
    assert losses.arm_value_loss(values, pid, returns).item() == pytest.approx(1.5)
    boot = torch.tensor([[1.0, 0.0], [3.0, 2.0]])       # member 0 weights rows 1 and 3
    # member 0: (1·1 + 3·1)/4 = 1; member 1: (0·0 + 2·1)/2 = 1
    assert losses.arm_value_loss(values, pid, returns, boot).item() == pytest.approx(2.0)
    losses.arm_value_loss(values, pid, returns).backward()
    assert values.grad[0, :, 1].abs().sum() == 0 and values.grad[1, :, 0].abs().sum() == 0  # other arms


def test_component_arm_value_loss_regresses_each_component_on_its_own_return_by_hand():
    # values [B=2, E=2, K=2, C=2]; row 0 logged by arm 0, row 1 by arm 1
    values = torch.tensor([[[[1.0, 0.0], [9.0, 9.0]], [[2.0, 1.0], [9.0, 9.0]]],
                           [[[9.0, 9.0], [3.0, -1.0]], [[9.0, 9.0], [0.0, 0.0]]]], requires_grad=True)
    pid = torch.tensor([0, 1])
    returns = torch.tensor([[2.0, 1.0], [1.0, 1.0]])     # G_ij: row i, component j
    # member 0: row 0 (1-2)² + (0-1)² = 2, row 1 (3-1)² + (-1-1)² = 8 → mean 5
    # member 1: row 0 (2-2)² + (1-1)² = 0, row 1 (0-1)² + (0-1)² = 2 → mean 1
    assert losses.arm_value_loss(values, pid, returns).item() == pytest.approx(6.0)
    boot = torch.tensor([[1.0, 2.0], [3.0, 0.0]])
    # member 0: (1·2 + 3·8)/4 = 6.5; member 1: (2·0 + 0·2)/2 = 0
    assert losses.arm_value_loss(values, pid, returns, boot).item() == pytest.approx(6.5)
    losses.arm_value_loss(values, pid, returns).backward()
    assert values.grad[0, :, 1].abs().sum() == 0 and values.grad[1, :, 0].abs().sum() == 0  # other arms
    # one component is the scalar loss
    one = values.detach()[..., :1]
    assert losses.arm_value_loss(one, pid, returns[:, :1]).item() == pytest.approx(
        losses.arm_value_loss(one[..., 0], pid, returns[:, 0]).item())


def test_propensity_loss_is_weighted_cross_entropy():
    logits = torch.tensor([[2.0, 0.0], [0.0, 0.0]])
    pid = torch.tensor([0, 1])
    ce = torch.tensor([np.log(1 + np.exp(-2.0)), np.log(2.0)], dtype=torch.float32)
    assert losses.propensity_loss(logits, pid).item() == pytest.approx(ce.mean().item(), rel=1e-5)
    w = torch.tensor([3.0, 1.0])
    assert losses.propensity_loss(logits, pid, w).item() == pytest.approx(((3 * ce[0] + ce[1]) / 4).item(), rel=1e-5)


def test_safe_choice_deviates_only_on_a_confident_better_arm_and_falls_back_otherwise():
    rho = torch.tensor([[0.8, 0.1, 0.1]] * 3)           # the router's likeliest arm is 0
    # row 0: arm 2 is better and the ensemble agrees → deviate to 2
    # row 1: arm 2 is better on average, but the ensemble disagrees → fall back to arm 0
    # row 2: arm 1 supported only with min_propensity 0 → deviate; excluded with min 0.2
    values = torch.tensor([
        [[1.0, 0.0, 3.0], [1.0, 0.0, 3.2], [1.0, 0.0, 2.8]],
        [[1.0, 0.0, 6.0], [1.0, 0.0, -3.0], [1.0, 0.0, 1.0]],
        [[1.0, 4.0, 0.0], [1.0, 4.1, 0.0], [1.0, 3.9, 0.0]],
    ])
    assert safe_arm_choice(values, rho, pessimism=1.0).tolist() == [2, 0, 1]
    assert safe_arm_choice(values, rho, pessimism=0.0).tolist() == [2, 2, 1]   # greedy on the mean
    assert safe_arm_choice(values, rho, pessimism=1.0, min_propensity=0.2).tolist() == [0, 0, 0]


def test_episode_starts_mark_the_first_logged_row_of_each_episode():
    eps = np.array(["a", "b", "a", "b", "c"])
    t = np.array([3, 0, 2, 1, 5])                       # episode "a" was logged from t = 2 on
    np.testing.assert_array_equal(episode_starts(eps, t), [False, True, True, False, True])


def test_serve_action_auto_clones_the_chosen_arm_with_several_arms_and_acts_with_one():
    assert resolve_serve_action("auto", 3) == "expert"
    assert resolve_serve_action("auto", 1) == "actor"
    assert resolve_serve_action("supported", 1) == "supported"


def _history_module(arm_choice_at: str, temporal: bool = True, inference_only: bool = False):
    import gymnasium as gym
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    from rllib_fastq.torch.fastq_torch_rl_module import FastQTorchRLModule

    torch.manual_seed(0)
    space = (gym.spaces.Dict({"temporal": gym.spaces.Box(-np.inf, np.inf, (4, 2)),
                              "static": gym.spaces.Box(-np.inf, np.inf, (3,))}) if temporal
             else gym.spaces.Box(-np.inf, np.inf, (5,)))
    cfg = dict(num_policies=3, arm_value_hiddens=[8], expert_hiddens=[8], br_dim=4, adversary_hiddens=[8],
               actor_hiddens=[8], critic_hiddens=[8], lstm_hidden=4, static_hidden=4, arm_choice_at=arm_choice_at,
               arm_choice="greedy")
    return RLModuleSpec(module_class=FastQTorchRLModule, observation_space=space, inference_only=inference_only,
                        action_space=gym.spaces.Box(-1, 1, (2,)), model_config=cfg).build()


def _arrival_and_every_step(players: int, seed: int):
    """Two modules with the same weights (arm chosen on arrival / at every step) and the same
    players on arrival and later in their stay (a random history)."""
    module = _history_module("arrival")
    every = _history_module("every_step")
    every.load_state_dict(module.state_dict())
    torch.manual_seed(seed)
    static = torch.randn(players, 3)
    arrival = {"temporal": torch.zeros(players, 4, 2), "static": static}
    later = {"temporal": torch.randn(players, 4, 2), "static": static}
    return module, every, arrival, later


def test_arrival_choice_gives_every_step_of_a_stay_the_arm_chosen_on_arrival():
    module, every, arrival, later = _arrival_and_every_step(64, seed=1)
    static = arrival["static"]
    flat_later = torch.cat([later["temporal"].reshape(64, -1), static], -1)
    a0 = module.arrival_observation(later)
    assert torch.equal(a0["temporal"], arrival["temporal"]) and torch.equal(a0["static"], static)
    assert torch.equal(module.arrival_observation(flat_later), torch.cat([torch.zeros(64, 8), static], -1))
    with torch.no_grad():
        on_arrival = module.choose_arms(arrival, "best")["policy_id"]
        greedy_later = module.arm_value_estimates(later)[0].mean(1).argmax(-1)
        assert module.choose_arms(later, "best")["policy_id"].tolist() == on_arrival.tolist()
        assert module.choose_arms(flat_later, "best")["policy_id"].tolist() == on_arrival.tolist()
        # The reference re-chooses on the current observation; the random histories make the two
        # rules disagree on some rows, so the test tells them apart.
        assert every.choose_arms(later, "best")["policy_id"].tolist() == greedy_later.tolist()
    assert (greedy_later != on_arrival).any()


def test_explain_shows_the_arm_values_the_arrival_choice_read_at_every_step():
    module, every, arrival, later = _arrival_and_every_step(16, seed=2)
    with torch.no_grad():
        on_arrival, prop_arrival = module.arm_value_estimates(arrival)
        on_later, _ = module.arm_value_estimates(later)
        shown = module.explain(later)
        assert torch.allclose(shown["arm_values"], on_arrival.mean(1), atol=1e-6)
        assert torch.allclose(shown["routing_probabilities"], prop_arrival, atol=1e-6)
        # The reference chooses on the current observation and shows that observation's values.
        assert torch.allclose(every.explain(later)["arm_values"], on_later.mean(1), atol=1e-6)
    assert not torch.allclose(on_arrival.mean(1), on_later.mean(1))


def test_flat_observations_have_no_history_so_every_step_is_an_arrival():
    module = _history_module("arrival", temporal=False)
    obs = torch.randn(4, 5)
    assert torch.equal(module.arrival_observation(obs), obs)
    with torch.no_grad():
        values, _ = module.arm_value_estimates(obs)
        assert module.choose_arms(obs, "best")["policy_id"].tolist() == values.mean(1).argmax(-1).tolist()


def test_the_reference_chooses_every_step_and_the_default_on_arrival():
    from rllib_fastq import FastQConfig

    assert FastQConfig().arm_choice_at == "arrival"
    assert FastQConfig().reference().arm_choice_at == "every_step"


def test_out_of_bag_values_average_the_members_that_did_not_draw_the_player():
    from rllib_fastq.counterfactual.policy_check import out_of_bag_values

    values = np.array([[[1.0, 10.0], [3.0, 30.0], [5.0, 50.0]],
                       [[2.0, 20.0], [4.0, 40.0], [6.0, 60.0]]])  # [n=2, E=3, K=2]
    bootstrap = np.array([[0, 2, 0],   # members 0 and 2 never saw player 0
                          [1, 1, 2]])  # every member saw player 1: all members' mean
    np.testing.assert_allclose(out_of_bag_values(values, bootstrap), [[3.0, 30.0], [4.0, 40.0]])


def test_dr_improvement_over_the_logged_routing_by_hand():
    from rllib_fastq.counterfactual.policy_check import improvement

    # Two players per arm, router 50/50; the choice serves arm 1 to everyone. With the value
    # model q̂ = 0 the DR term is the IPW term: 1[p = 1] / 0.5 · G.
    arm, returns = np.array([0, 0, 1, 1]), np.array([1.0, 3.0, 5.0, 7.0])
    res = improvement(np.zeros((4, 2)), arm, returns, np.full(4, 0.5), np.ones(4, int))
    dr = np.array([0.0, 0.0, 10.0, 14.0])
    assert res["choice_value"] == pytest.approx(6.0) and res["baseline_value"] == pytest.approx(4.0)
    assert res["improvement"] == pytest.approx(2.0)
    delta = dr - returns
    assert res["lower_bound"] == pytest.approx(2.0 - 1.6448536 * delta.std(ddof=1) / 2.0, rel=1e-5)
    assert res["matched_episodes"] == 2 and res["players_changed"] == 2
    # A value model that is right everywhere: DR = q̂(s, chosen arm) exactly, whatever the weights.
    q = np.array([[2.0, 6.0]] * 4)
    exact = improvement(q, arm, np.array([2.0, 2.0, 6.0, 6.0]), np.full(4, 0.5), np.ones(4, int))
    assert exact["choice_value"] == pytest.approx(6.0) and exact["improvement"] == pytest.approx(2.0)


def test_paired_dr_improvement_over_another_choice_by_hand():
    from rllib_fastq.counterfactual.policy_check import improvement

    # q̂ = 0, router 50/50: DR_i(c) = 1[p_i = c_i] · 2 G_i. The two choices differ on players 2
    # and 3 only; the paired terms are 0 on players 0 and 1, whatever their returns.
    arm, returns = np.array([0, 1, 0, 1]), np.array([100.0, -50.0, 3.0, 5.0])
    choice, baseline = np.array([0, 1, 1, 1]), np.array([0, 1, 0, 0])
    res = improvement(np.zeros((4, 2)), arm, returns, np.full(4, 0.5), choice, baseline, confidence=0.9)
    delta = np.array([0.0, 0.0, 0.0 - 6.0, 10.0 - 0.0])
    assert res["improvement"] == pytest.approx(delta.mean())
    assert res["lower_bound"] == pytest.approx(delta.mean() - 1.2815516 * delta.std(ddof=1) / 2.0, rel=1e-5)
    assert res["players_changed"] == 2
    assert res["baseline_value"] == pytest.approx(np.mean([200.0, -100.0, 6.0, 0.0]))
    # The same choice on both sides: no difference and no uncertainty, so never a positive bound.
    same = improvement(np.zeros((4, 2)), arm, returns, np.full(4, 0.5), choice, choice)
    assert same["improvement"] == 0.0 and same["lower_bound"] == 0.0 and same["players_changed"] == 0


def test_the_pessimism_holds_until_the_check_confirms_and_the_verdict_is_saved():
    module = _history_module("arrival")
    module.arm_choice, module.arm_choice_pessimism = "safe", 1.0
    obs = {"temporal": torch.zeros(32, 4, 2), "static": torch.randn(32, 3)}
    with torch.no_grad():
        values, rho = module.arm_value_estimates(obs)
        relaxed = values.mean(1).argmax(-1)  # β = 0 and every arm above ρ_min here
        pessimistic = safe_arm_choice(values, rho, pessimism=1.0, min_propensity=module.arm_choice_min_propensity)
        assert not bool(module.arm_choice_confirmed)  # a fresh module has no verdict
        assert module.value_guided_arms(obs).tolist() == pessimistic.tolist()
        assert module.value_guided_arms(obs, pessimism=0.0).tolist() == relaxed.tolist()
        module.arm_choice_confirmed.fill_(True)
        assert module.value_guided_arms(obs).tolist() == relaxed.tolist()
    assert (relaxed != pessimistic).any()  # the test tells the two rules apart
    restored = _history_module("arrival")
    restored.load_state_dict(module.state_dict())
    assert bool(restored.arm_choice_confirmed)


def test_ridge_arm_values_recover_each_arms_linear_return_and_ignore_constant_columns():
    from rllib_fastq.counterfactual import ridge_values

    gen = torch.Generator().manual_seed(0)
    n = 600
    x = torch.randn(n, 4, generator=gen)
    x[:, 2] = 3.0  # constant over the players (an empty history at arrival): no coefficient
    arm = torch.arange(n) % 3
    slopes = torch.tensor([[1.0, 0.0, 0.0, 2.0], [-1.0, 0.5, 0.0, 0.0], [0.0, 0.0, 0.0, -3.0]])
    y = torch.stack([(x[:, :] * slopes[k]).sum(1) + k for k in range(3)], 1)[torch.arange(n), arm]
    y2 = torch.stack([y, 10 * y], 1)  # two components: arm-major output, [K·C] = k·C + j
    boot = torch.ones(n, 2)
    mean, inv_scale, coef = ridge_values.fit_ridge(x, arm, y2, boot, 3, penalty=1e-6)
    assert inv_scale[2] == 0.0 and torch.all(coef[:, 2] == 0.0)
    new = torch.randn(5, 4, generator=gen)
    new[:, 2] = -7.0  # a different value in the constant column changes nothing
    pred = ridge_values.ridge_values(new, mean, inv_scale, coef)  # [5, E=2, K·C=6]
    truth = torch.stack([(new * slopes[k]).sum(1) - slopes[k, 2] * new[:, 2] + k for k in range(3)], 1)
    for e in range(2):
        torch.testing.assert_close(pred[:, e, 0::2], truth, atol=1e-3, rtol=1e-4)
        torch.testing.assert_close(pred[:, e, 1::2], 10 * truth, atol=1e-2, rtol=1e-4)
    # A member whose bootstrap drew no player of arm 1 predicts the mean return for it.
    boot[arm == 1, 1] = 0.0
    _, _, coef = ridge_values.fit_ridge(x, arm, y[:, None], boot, 3, penalty=1.0)
    assert torch.all(coef[1, :-1, 1] == 0.0) and coef[1, -1, 1] == pytest.approx(y.mean().item(), rel=1e-5)


def test_importance_weighted_error_by_hand():
    from rllib_fastq.counterfactual.ridge_values import importance_weighted_error

    # Arm 0: players with errors 1 and 3, propensities 0.5 and 0.1 (weights 2 and 10);
    # arm 1: one player, error 2. err = (2·1 + 10·9) / 12 + 4.
    q = np.array([[1.0, 0.0], [3.0, 0.0], [0.0, 2.0]])
    err = importance_weighted_error(q, np.array([0, 0, 1]), np.zeros(3), np.array([0.5, 0.1, 0.9]))
    assert err == pytest.approx(92.0 / 12.0 + 4.0)
    # The same errors with equal propensities: the plain per-arm mean.
    assert importance_weighted_error(q, np.array([0, 0, 1]), np.zeros(3), np.full(3, 0.5)) == pytest.approx(5 + 4)


def test_the_module_reads_the_ridge_arm_values_when_the_learner_chose_them_and_saves_the_choice():
    from rllib_fastq.counterfactual import ridge_values

    module = _history_module("arrival")
    obs = {"temporal": torch.zeros(6, 4, 2), "static": torch.randn(6, 3)}
    with torch.no_grad():
        network, _ = module.arm_value_estimates(obs)
        module.ridge_coef.normal_()
        module.ridge_inv_scale.fill_(1.0)
        x = module.normalize(obs)
        expected = ridge_values.ridge_values(x, module.ridge_mean, module.ridge_inv_scale, module.ridge_coef)
        torch.testing.assert_close(module.arm_value_estimates(obs)[0], network)  # source: the network
        module.arm_value_source.fill_(ridge_values.RIDGE)
        torch.testing.assert_close(module.arm_value_estimates(obs)[0], expected)
        torch.testing.assert_close(module.explain(obs)["arm_values"], expected.mean(1))  # the evidence shown
    restored = _history_module("arrival")
    restored.load_state_dict(module.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(restored.arm_value_estimates(obs)[0], expected)


def test_a_checkpoint_from_before_the_ridge_and_the_verdict_restores_into_a_served_module():
    from rllib_fastq.counterfactual import ridge_values
    from rllib_fastq.torch.fastq_torch_rl_module import BUFFERS_ADDED_LATER

    trained = _history_module("arrival")
    old_state = {k: v for k, v in trained.get_state().items() if k not in BUFFERS_ADDED_LATER}
    obs = {"temporal": torch.zeros(4, 4, 2), "static": torch.randn(4, 3)}
    restored = _history_module("arrival", inference_only=True)
    restored.arm_value_source.fill_(ridge_values.RIDGE)
    restored.set_state(old_state)  # no error for the missing buffers; they take their initial values
    assert int(restored.arm_value_source) == ridge_values.NETWORK and not bool(restored.arm_choice_confirmed)
    with torch.no_grad():
        torch.testing.assert_close(restored.arm_value_estimates(obs)[0], trained.arm_value_estimates(obs)[0])
    with pytest.raises(ValueError, match="missing keys"):  # any other missing weight still fails loudly
        restored.set_state({k: v for k, v in old_state.items() if not k.startswith("arm_values.")})
