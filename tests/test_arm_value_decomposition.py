"""`arm_value_decomposition` (issue 36, item 1): one arm value per reward component, each on its own
return-to-go, whose weighted sum is the arm value by construction; `explain()` reports them."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_fastq import FastQConfig
from rllib_fastq import _rllib_compat as compat
from rllib_fastq.counterfactual import returns_to_go
from rllib_fastq.data import schema
from rllib_fastq.data.io import write_transitions
from rllib_fastq.torch.fastq_torch_rl_module import ARM_VALUE_COMPONENTS, ARM_VALUES, FastQTorchRLModule
from tests.synthetic import TINY_NETS, make_synthetic

WEIGHTS = [1.0, 0.5, -2.0]
NAMES = ["a", "b", "c"]


def _module(decomposition: bool, weights: list[float] | None = WEIGHTS) -> FastQTorchRLModule:
    torch.manual_seed(0)
    cfg = dict(num_policies=3, arm_value_hiddens=[8], arm_value_ensemble=4, expert_hiddens=[8], br_dim=4,
               adversary_hiddens=[8], actor_hiddens=[8], critic_hiddens=[8], arm_value_decomposition=decomposition,
               reward_weights=weights or [], component_names=NAMES if weights else [])
    return RLModuleSpec(module_class=FastQTorchRLModule, observation_space=gym.spaces.Box(-np.inf, np.inf, (5,)),
                        action_space=gym.spaces.Box(-1, 1, (2,)), model_config=cfg).build()


def test_scalar_arm_values_are_the_weighted_sum_of_the_component_values_exactly():
    torch.set_num_threads(1)
    module, obs = _module(True), torch.randn(6, 5)
    parts = module.arm_value_component_estimates(obs)
    values, rho = module.arm_value_estimates(obs)
    assert parts.shape == (6, 4, 3, 3) and values.shape == (6, 4, 3) and rho.shape == (6, 3)
    assert torch.equal(values, parts @ torch.tensor(WEIGHTS))
    by_hand = sum(w * parts[..., j] for j, w in enumerate(WEIGHTS))
    assert torch.allclose(values, by_hand, atol=1e-6)
    out = module.forward_train({"obs": obs})
    assert torch.equal(out[ARM_VALUES], values) and torch.equal(out[ARM_VALUE_COMPONENTS], parts)
    ex = module.explain(obs, "best")
    assert set(ex["arm_value_components"]) == set(NAMES)
    total = sum(w * ex["arm_value_components"][n] for n, w in zip(NAMES, WEIGHTS))
    assert ex["arm_value_components"]["a"].shape == (6, 3)
    assert torch.allclose(total, ex["arm_values"], atol=1e-5)
    assert set(ex["components"]) == {"residual"}  # the critic's head: unchanged (none decomposed here)


def test_option_off_keeps_one_value_per_arm_and_no_component_output():
    module, obs = _module(False), torch.randn(6, 5)
    assert module.arm_values.layers[-1].weight.shape[-1] == 3  # K outputs, as before the option
    values, _ = module.arm_value_estimates(obs)
    assert values.shape == (6, 4, 3)
    assert ARM_VALUE_COMPONENTS not in module.forward_train({"obs": obs})
    assert "arm_value_components" not in module.explain(obs, "best")
    with pytest.raises(ValueError, match="arm_value_decomposition=False"):
        module.arm_value_component_estimates(obs)
    # Without reward components the option has one component, the reward, with the same values.
    plain, one = _module(False, None), _module(True, None)
    assert torch.equal(plain.arm_value_estimates(obs)[0], one.arm_value_estimates(obs)[0])
    assert list(one.explain(obs, "best")["arm_value_components"]) == ["reward"]


def test_learner_trains_component_values_that_explain_sums_to_the_arm_values(ray_session, tmp_path):
    torch.set_num_threads(1)
    tr = make_synthetic(n=400)
    tr.reward_components[:, 0] = (tr.t == 9) * (tr.policy_id + 1.0)  # learnable: G_0 = k + 1 on arm k
    path = tmp_path / "components.parquet"
    write_transitions(tr, path)
    config = (FastQConfig()
              .offline_data(input_=[str(path)], dataset_num_iters_per_learner=1)
              .training(train_batch_size_per_learner=32, num_policies=3, pretrain_steps=200,
                        reward_weights=WEIGHTS, reward_component_names=NAMES, arm_value_decomposition=True,
                        arm_value_hiddens=[16], arm_value_ensemble=2, **TINY_NETS)
              .debugging(seed=0))
    algo = config.build_algo()
    learner = compat.local_learner(algo.learner_group)
    module = learner.module[DEFAULT_MODULE_ID]
    cols = {k: v.numpy() for k, v in learner.sampler.columns.items()}
    g = cols[schema.COMPONENT_RETURNS_TO_GO]
    assert g.shape == (400, 3)
    np.testing.assert_allclose(g[:, 1], returns_to_go(tr.reward_components[:, 1], tr.eps_id, tr.t), atol=1e-5)
    np.testing.assert_allclose(g @ np.asarray(WEIGHTS, np.float32), cols[schema.RETURNS_TO_GO], atol=1e-4)
    obs = torch.as_tensor(cols[schema.OBS])
    pid = torch.as_tensor(cols[schema.POLICY_ID]).long()

    def error() -> float:  # the learnable component's value on its logged arm
        with torch.no_grad():
            v = module.arm_value_component_estimates(obs).mean(1)[torch.arange(400), pid, 0]
        return float((v - torch.as_tensor(g[:, 0])).pow(2).mean())

    before = error()
    learner.update_from_memory(num_steps=150, timesteps={})
    assert error() < 0.5 * before
    ex = module.explain(obs[:20], "best")
    total = sum(w * ex["arm_value_components"][n] for n, w in zip(NAMES, WEIGHTS))
    assert torch.allclose(total, ex["arm_values"], atol=1e-4)
    algo.stop()


def test_explain_png_draws_the_chosen_and_routed_arms_value_components(tmp_path):
    from rllib_fastq.evaluation import explain_plot

    pytest.importorskip("matplotlib")
    module, obs = _module(True), np.random.default_rng(0).normal(size=(1, 5)).astype(np.float32)
    ex = explain_plot.write_explanation_png(module, obs, str(tmp_path / "x.png"))
    for key in ("chosen", "routed"):
        e = ex[key]
        assert set(e["arm_value_components"]) == set(NAMES)
        total = sum(w * e["arm_value_components"][n] for n, w in zip(NAMES, WEIGHTS))
        assert total == pytest.approx(e["arm_value"], abs=1e-5)
        assert e["arm_value"] == pytest.approx(ex["arm_values"][e["arm"]])
    assert (tmp_path / "x.png").stat().st_size > 0
    assert "arm_value_components" not in explain_plot.explain_arms(_module(False), obs)["chosen"]
