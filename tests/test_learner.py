"""The learner's schedule: phase switch, policy_freq, per-step targets, exploration, sampling."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID

from rllib_fastq import FastQConfig
from rllib_fastq import _rllib_compat as compat
from rllib_fastq.counterfactual import safe_arm_choice
from rllib_fastq.data.io import write_transitions
from rllib_fastq.torch import losses
from rllib_fastq.torch.fastq_torch_learner import EXPLORATION_ARM
from rllib_fastq.torch.fastq_torch_rl_module import BR_OBS, EXPERT_ACTION_PREDS
from tests.synthetic import TINY_NETS, make_synthetic

PRETRAIN = 4


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.parquet"
    write_transitions(make_synthetic(), path)
    return str(path)


def _config(path: str, **training) -> FastQConfig:
    kw = dict(num_policies=3, pretrain_steps=PRETRAIN, reward_weights=[1.0, 0.5, -1.0],
              reward_component_names=["a", "b", "c"], policy_freq=2, tau=0.1, **TINY_NETS)
    kw.update(training)
    return (FastQConfig()
            .offline_data(input_=[path], dataset_num_iters_per_learner=1)
            .training(train_batch_size_per_learner=32, **kw)
            .debugging(seed=0))


@pytest.fixture()
def algo(ray_session, synthetic_path):
    algo = _config(synthetic_path).build_algo()
    yield algo
    algo.stop()


def _learner(algo):
    return compat.local_learner(algo.learner_group)


def _params(net) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def _changed(before, net) -> bool:
    return any(not torch.equal(b, p) for b, p in zip(before, net.parameters()))


def test_phase_switch_after_pretrain_steps_and_frozen_experts(algo):
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    for step in range(PRETRAIN):
        assert learner.phase == 1, step
        learner.update_from_memory(num_steps=1, timesteps={})
    assert learner.phase == 2 and learner.num_gradient_steps == PRETRAIN
    experts, balancer = _params(module.experts), _params(module.balancer)
    critic = _params(module.critic)
    learner.update_from_memory(num_steps=3, timesteps={})
    assert not _changed(experts, module.experts) and not _changed(balancer, module.balancer)
    assert _changed(critic, module.critic)


def test_actor_and_targets_update_every_policy_freq_steps(algo):
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    learner.update_from_memory(num_steps=PRETRAIN, timesteps={})
    for step in range(1, 7):  # phase-2 steps 1..6
        actor, target_actor = _params(module.actor), _params(module.target_actor)
        learner.update_from_memory(num_steps=1, timesteps={})
        actor_step = step % 2 == 0
        assert _changed(actor, module.actor) == actor_step, step
        assert _changed(target_actor, module.target_actor) == actor_step, step
        if actor_step:  # Polyak with tau = 0.1 right after the actor step
            for old, new, main in zip(target_actor, module.target_actor.parameters(), module.actor.parameters()):
                assert torch.allclose(new, 0.9 * old + 0.1 * main, atol=1e-6)
    assert learner.num_actor_steps == 3


def test_exploration_probability_ramps_linearly(ray_session, synthetic_path):
    algo = _config(synthetic_path, max_exploration=0.6, exploration_ramp_steps=10).build_algo()
    learner = _learner(algo)
    assert learner.exploration_probability() == 0.0
    learner.update_from_memory(num_steps=PRETRAIN + 4, timesteps={})
    assert learner.exploration_probability() == pytest.approx(0.6 * 5 / 10)  # next phase-2 step is the 5th
    learner.update_from_memory(num_steps=20, timesteps={})
    assert learner.exploration_probability() == pytest.approx(0.6)
    algo.stop()


@pytest.mark.parametrize("mode, expected", [("inverse_frequency", [1 / 3] * 3), ("uniform", None)])
def test_phase1_sampling_balances_arms(algo, mode, expected):
    learner = _learner(algo)
    learner.config.policy_sampling = mode
    probs = learner.phase1_arm_probabilities()
    freqs = learner.arm_freqs
    assert freqs[0] > 0.5  # the data is imbalanced
    batch = learner.sampler.sample_phase1(20_000, probs)
    share = np.bincount(batch["policy_id"].numpy(), minlength=3) / 20_000
    assert share == pytest.approx(expected if expected else freqs, abs=0.02)


def test_exploration_branch_targets_the_counterfactual_expert_action(algo):
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    learner.config.max_exploration = 1.0
    learner.config.exploration_ramp_steps = 1
    learner.config.exploration_arm = "uniform"  # the reference's arm draw
    learner.num_gradient_steps = PRETRAIN + 1  # phase 2, ε = 1: every row explores
    torch.manual_seed(0)
    b_all = torch.randn(5, 3, 8)
    a_hat = torch.rand(5, 3, 2) * 2 - 1
    actions = torch.zeros(5, 2)
    torch.manual_seed(1)
    loss = learner._actor_loss(learner.config, module, {}, b_all, b_all[:, 0], actions,
                               {BR_OBS: b_all, EXPERT_ACTION_PREDS: a_hat})
    torch.manual_seed(1)
    torch.rand(5)  # the explore draw
    arm = torch.randint(3, (5,))
    rows = torch.arange(5)
    s_star, target = b_all[rows, arm], a_hat[rows, arm]
    pi = module.actor(s_star)
    q = module.critic(torch.cat([s_star, pi], -1), with_weights=False)[0][:, 0]
    lam = 2.5 / q.abs().mean()
    expected = -lam * q.mean() + ((pi - target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_one_arm_trains_the_balancer_through_behaviour_cloning(ray_session, tmp_path):
    path = tmp_path / "one_arm.parquet"
    write_transitions(make_synthetic(arm_shares=(1.0,)), path)
    algo = _config(str(path), num_policies=1).build_algo()
    module = _learner(algo).module[DEFAULT_MODULE_ID]
    assert module.bc_through_balancer
    balancer = _params(module.balancer)
    result = algo.train()
    assert _changed(balancer, module.balancer)  # docs/algorithm.md §6: the BR is not a frozen random map
    assert "adversary_loss" not in result["learners"][DEFAULT_MODULE_ID]
    algo.stop()


def test_phase2_cache_equals_fresh_representations(algo):
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    learner.update_from_memory(num_steps=PRETRAIN + 1, timesteps={})  # builds the cache
    cache = learner.sampler._cache
    cols = learner.sampler.columns
    with module.frozen_representations():
        b, a_hat = module.representations(cols["obs"])
        b_next, _ = module.representations(cols["new_obs"])
    rows = torch.arange(b.shape[0])
    assert torch.allclose(cache[BR_OBS], b, atol=1e-5)
    assert torch.allclose(cache[EXPERT_ACTION_PREDS], a_hat, atol=1e-5)
    assert torch.allclose(cache["br_next_obs"], b_next[rows, cols["policy_id"].long()], atol=1e-5)


def test_fast_track_exploration_targets_the_value_chosen_arm(algo):
    """exploration_arm="value": the counterfactual branch uses the arm the arm values chose."""
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    learner.config.max_exploration = 1.0
    learner.config.exploration_ramp_steps = 1
    learner.config.exploration_arm = "value"
    learner.num_gradient_steps = PRETRAIN + 1
    torch.manual_seed(0)
    b_all = torch.randn(5, 3, 8)
    a_hat = torch.rand(5, 3, 2) * 2 - 1
    chosen = torch.tensor([2, 0, 1, 2, 2])
    loss = learner._actor_loss(learner.config, module, {EXPLORATION_ARM: chosen}, b_all, b_all[:, 0],
                               torch.zeros(5, 2), {BR_OBS: b_all, EXPERT_ACTION_PREDS: a_hat})
    rows = torch.arange(5)
    s_star, target = b_all[rows, chosen], a_hat[rows, chosen]
    pi = module.actor(s_star)
    q = module.critic(torch.cat([s_star, pi], -1), with_weights=False)[0][:, 0]
    expected = -2.5 / q.abs().mean() * q.mean() + ((pi - target) ** 2).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)


def test_arm_values_learn_each_arms_returns_and_routing_model_its_propensities(ray_session, tmp_path):
    """Phase 1 trains V_k on arm k's own rows (towards their returns-to-go) and ρ(k|s) on the
    logged arm: the value error halves, and the trained ρ matches the data's arm shares."""
    tr = make_synthetic()
    # Rewards that depend on the state and the arm, so the returns can be learnt.
    tr.reward_components[:] = 0.0
    tr.reward_components[:, 0] = tr.obs[:, 0] + tr.policy_id
    path = tmp_path / "learnable.parquet"
    write_transitions(tr, path)
    algo = _config(str(path), pretrain_steps=400, arm_value_model="network").build_algo()  # the network's fit
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    cols = learner.sampler.columns

    def value_loss() -> float:
        with torch.no_grad():
            values, _ = module.arm_value_estimates(cols["obs"])
            return losses.arm_value_loss(values, cols["policy_id"].long(), cols["returns_to_go"]).item()

    before = value_loss()
    learner.update_from_memory(num_steps=300, timesteps={})
    assert value_loss() < 0.5 * before
    with torch.no_grad():
        _, rho = module.arm_value_estimates(cols["obs"])
    shares = torch.bincount(cols["policy_id"].long(), minlength=3).float() / cols["policy_id"].shape[0]
    assert torch.allclose(rho.mean(0), shares, atol=0.08)  # balanced draws were re-weighted
    algo.stop()


def test_arm_choice_check_drops_the_pessimism_only_where_the_logs_show_an_improvement(ray_session, tmp_path):
    """arm_choice_check: on logs where arm 2 earns 1 more per step, the doubly-robust lower bound of
    the relaxed choice's improvement over the pessimistic one (β = 5: it keeps most players on
    their routed arm) is positive and the module drops its per-player pessimism; on logs whose
    rewards do not depend on the arm, it is not, and the choice keeps β."""
    verdicts = {}
    for name, arm_reward in (("arm matters", 1.0), ("arm irrelevant", 0.0)):
        tr = make_synthetic(seed=1)
        tr.reward_components[:, 0] = 0.3 * tr.reward_components[:, 0] + arm_reward * (tr.policy_id == 2)
        path = tmp_path / f"{name.replace(' ', '_')}.parquet"
        write_transitions(tr, path)
        algo = _config(str(path), pretrain_steps=400, arm_choice_check=True, arm_choice_pessimism=5.0,
                       arm_choice_check_confidence=0.95, arm_value_model="network").build_algo()
        learner = _learner(algo)
        stats = learner.update_from_memory(num_steps=300, timesteps={})[DEFAULT_MODULE_ID]
        module = learner.module[DEFAULT_MODULE_ID]
        with torch.no_grad():
            served = module.value_guided_arms(learner.sampler.columns["obs"])
            values, rho = module.arm_value_estimates(learner.sampler.columns["obs"])
            pessimistic = safe_arm_choice(values, rho, pessimism=5.0, min_propensity=0.002)
        bound = stats["arm_choice_dr_lower_bound"]
        bound = bound.peek() if hasattr(bound, "peek") else bound
        verdicts[name] = (float(bound), bool(module.arm_choice_confirmed), served, pessimistic)
        algo.stop()
    lower, confirmed, served, pessimistic = verdicts["arm matters"]
    assert lower > 0 and confirmed and (served == 2).float().mean() > 0.9
    assert (pessimistic != 2).float().mean() > 0.3  # the comparison was not between two equal choices
    lower, confirmed, served, pessimistic = verdicts["arm irrelevant"]
    assert lower <= 0 and not confirmed and torch.equal(served, pessimistic)


@pytest.mark.parametrize("variant", ["option", "default", "reference"])
def test_arm_values_keep_training_in_phase2_where_something_reads_them(ray_session, synthetic_path, variant):
    """arm_values_train_in_phase2: phase 2 keeps fitting the arm values and ρ (on their own
    phase-1-style rows) and refreshes the cached exploration arms; by default (off) and in the
    reference (critic choice, uniform exploration: nothing reads them) they stay as phase 1 left them."""
    config = _config(synthetic_path, arm_values_train_in_phase2=variant != "default")
    algo = (config.reference() if variant == "reference" else config).build_algo()
    frozen = variant != "option"
    learner = _learner(algo)
    module = learner.module[DEFAULT_MODULE_ID]
    learner.update_from_memory(num_steps=PRETRAIN, timesteps={})
    assert learner.phase == 2
    values, routing = _params(module.arm_values), _params(module.routing_model)
    learner.update_from_memory(num_steps=3, timesteps={})
    assert _changed(values, module.arm_values) is not frozen
    assert _changed(routing, module.routing_model) is not frozen
    if not frozen:
        with torch.no_grad():
            fresh = module.value_guided_arms(learner.sampler.columns["obs"])
        assert torch.equal(learner.sampler._cache[EXPLORATION_ARM], fresh)
        # The check (a pass over the logged players) runs once per iteration, not once per step.
        calls = []
        check = learner._arm_values_changed
        learner._arm_values_changed = lambda: calls.append(1) or check()
        learner.update_from_memory(num_steps=5, timesteps={})
        assert len(calls) == 1
    algo.stop()


@pytest.mark.parametrize("model", ["auto", "network"])
def test_arm_value_model_auto_keeps_the_model_with_the_smaller_importance_weighted_error(ray_session, tmp_path,
                                                                                         model):
    """arm_value_model="auto": the learner fits the ridge arm values on the players' arrival states
    and keeps the model with the smaller importance-weighted out-of-bag error. On logs whose return
    is linear in the arrival state (a slope of opposite sign per arm), after 20 steps of the
    network, that is the ridge, and the module's arm values are its predictions; "network" fits
    no ridge and keeps the network."""
    from rllib_fastq.counterfactual import ridge_values

    tr = make_synthetic(n=1200, arm_shares=(1, 1, 1), seed=2)
    first = tr.t == 0
    tr.reward_components[:] = 0.0
    tr.reward_components[first, 0] = 3.0 * tr.obs[first, 0] * (1.0 - 2.0 * (tr.policy_id[first] == 1)) \
        + tr.policy_id[first]
    tr.rewards[:] = tr.reward_components[:, 0]
    path = tmp_path / "linear.parquet"
    write_transitions(tr, path)
    algo = _config(str(path), pretrain_steps=400, arm_value_model=model).build_algo()
    learner = _learner(algo)
    stats = learner.update_from_memory(num_steps=20, timesteps={})[DEFAULT_MODULE_ID]
    module = learner.module[DEFAULT_MODULE_ID]

    def peek(key: str) -> float:
        v = stats[key]
        return float(v.peek() if hasattr(v, "peek") else v)

    if model == "network":
        assert "arm_value_iw_error_ridge" not in stats and int(module.arm_value_source) == ridge_values.NETWORK
        algo.stop()
        return
    assert peek("arm_value_iw_error_ridge") < peek("arm_value_iw_error_network")
    assert int(module.arm_value_source) == ridge_values.RIDGE and peek("arm_value_source_ridge") == 1.0
    obs = learner.sampler.columns["obs"][:50]
    with torch.no_grad():
        values, _ = module.arm_value_estimates(obs)
        expected = ridge_values.ridge_values(module.normalize(obs), module.ridge_mean, module.ridge_inv_scale,
                                             module.ridge_coef)
    torch.testing.assert_close(values, expected)
    # The ridge ranks the arms as the logs' slopes do: arm 1 where the first feature is low.
    low = obs[:, 0] < -1.0
    assert low.any() and (values.mean(1)[low].argmax(-1) == 1).all()
    algo.stop()
