"""FastQ end to end: checkpoints, DDP learners, the Ray Data path, bad input, a learning test."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.rl_module.rl_module import RLModule

from rllib_fastq import FastQ, FastQConfig
from rllib_fastq import _rllib_compat as compat
from rllib_fastq.counterfactual import safe_arm_choice
from rllib_fastq.data.io import write_transitions
from tests.pendulum_data import episode_returns, make_pendulum_dataset
from tests.synthetic import TINY_NETS, make_synthetic


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "synthetic.parquet"
    write_transitions(make_synthetic(), path)
    return str(path)


def _config(path: str, iters: int = 5, **training) -> FastQConfig:
    kw = dict(num_policies=3, pretrain_steps=6, reward_weights=[1.0, 0.5, -1.0],
              reward_component_names=["a", "b", "c"], **TINY_NETS)
    kw.update(training)
    return (FastQConfig()
            .offline_data(input_=[path], dataset_num_iters_per_learner=iters)
            .training(train_batch_size_per_learner=32, **kw)
            .debugging(seed=0))


def test_checkpoint_round_trip_continues_counters_and_actions(ray_session, synthetic_path, tmp_path):
    algo = _config(synthetic_path).build_algo()
    algo.train()  # 5 steps: phase 1
    ckpt = tmp_path / "ckpt"
    algo.save_to_path(str(ckpt))
    obs = torch.as_tensor(make_synthetic(n=20, seed=3).obs)
    before = algo.get_module().forward_inference({"obs": obs})["actions"]
    restored = FastQ.from_checkpoint(str(ckpt))
    after = restored.get_module().forward_inference({"obs": obs})["actions"]
    assert torch.allclose(before, after)
    r1, r2 = algo.train(), restored.train()
    key = ("learners", DEFAULT_MODULE_ID, "num_gradient_steps")
    assert r1[key[0]][key[1]][key[2]] == r2[key[0]][key[1]][key[2]] == 10
    assert "td_loss" in r2["learners"][DEFAULT_MODULE_ID]  # crossed into phase 2 after restore
    # The RLModule alone, for inference.
    module = RLModule.from_checkpoint(str(ckpt / "learner_group" / "learner" / "rl_module" / DEFAULT_MODULE_ID))
    assert torch.allclose(module.forward_inference({"obs": obs})["actions"], before)
    with pytest.raises(FileExistsError, match="already holds a checkpoint"):
        algo.save_to_path(str(ckpt))
    algo.save_to_path(str(ckpt), overwrite=True)
    algo.stop()
    restored.stop()


def test_inference_only_module_drops_training_networks(ray_session, synthetic_path):
    algo = _config(synthetic_path).build_algo()
    module = algo.module_spec(inference_only=True).build()
    assert not hasattr(module, "adversary") and not hasattr(module, "target_critic")
    module.set_state(algo.get_module().get_state(inference_only=True))
    obs = torch.as_tensor(make_synthetic(n=10, seed=4).obs)
    full = algo.get_module().forward_inference({"obs": obs, "policy_id": torch.tensor([1])})["actions"]
    assert torch.allclose(module.forward_inference({"obs": obs, "policy_id": torch.tensor([1])})["actions"], full)
    algo.stop()


def test_explanation_components_sum_to_q_and_best_arm_maximises_q(ray_session, synthetic_path):
    """The reference preset picks the "best" arm by Q1; the default by the safe arm values."""
    algo = _config(synthetic_path, iters=12).reference().build_algo()
    algo.train()
    module = algo.get_module()
    obs = torch.as_tensor(make_synthetic(n=20, seed=5).obs)
    out = module.explain(obs, "best")
    assert set(out["components"]) == {"a", "b", "c", "residual"}
    total = sum(out["components"].values())
    assert torch.allclose(total, out["q"], atol=1e-5)
    arms = module.choose_arms(obs, "best")
    assert torch.equal(arms["policy_id"], arms["q_all_arms"].argmax(-1))
    with pytest.raises(ValueError, match="policy_id"):
        module.choose_arms(obs, 7)
    algo.stop()


def test_default_best_arm_is_the_safe_choice_over_arm_values(ray_session, synthetic_path):
    algo = _config(synthetic_path, iters=12).build_algo()
    algo.train()
    module = algo.get_module()
    obs = torch.as_tensor(make_synthetic(n=50, seed=5).obs)
    out = module.explain(obs, "best")
    with torch.no_grad():
        values, rho = module.arm_value_estimates(obs)
    # The default β is 1 until the logs confirm that β = 0 chooses better (docs §8 (n)).
    assert module.arm_choice_pessimism == 1.0
    beta = 0.0 if bool(module.arm_choice_confirmed) else 1.0
    expected = safe_arm_choice(values, rho, pessimism=beta, min_propensity=0.002)
    assert torch.equal(out["policy_id"], expected)
    assert out["arm_values"].shape == (50, 3) and torch.allclose(out["routing_probabilities"].sum(-1),
                                                                   torch.ones(50))
    algo.stop()


def test_two_ddp_learners_keep_identical_weights(ray_session, synthetic_path):
    algo = _config(synthetic_path, iters=4).learners(num_learners=2, num_cpus_per_learner=1).build_algo()
    for _ in range(3):  # phase 1 then phase 2
        algo.train()
    states = compat.learner_results(algo.learner_group, algo.learner_group.foreach_learner(
        lambda learner: {k: v.clone() for k, v in learner.module[DEFAULT_MODULE_ID].state_dict().items()}))
    assert len(states) == 2
    for key in states[0]:
        assert torch.equal(states[0][key], states[1][key]), key
    algo.stop()


def test_ray_data_streaming_path_carries_fastq_columns(ray_session, synthetic_path):
    algo = _config(synthetic_path, iters=4, in_memory_data=False).reference().build_algo()
    r1 = algo.train()["learners"][DEFAULT_MODULE_ID]
    r2 = algo.train()["learners"][DEFAULT_MODULE_ID]
    assert np.isfinite(r1["adversary_loss"]) and np.isfinite(r1["expert_loss_2"])  # policy_id + experts
    assert np.isfinite(r2["decomposition_loss_c"])  # reward_components rode along
    algo.stop()


@pytest.mark.parametrize("field, value, message", [
    ("num_policies", 0, "`num_policies` must be an integer >= 1"),
    ("tau", -0.1, "`tau` must lie in [0, 1]"),
    ("max_exploration", 1.5, "`max_exploration` must lie in [0, 1]"),
    ("policy_sampling", "weird", "`policy_sampling` must be one of"),
    ("arm_choice_at", "sometimes", "`arm_choice_at` must be one of"),
    ("expert_loss", "l2", "`expert_loss` must be one of"),
    ("reward_component_names", ["x"], "`reward_component_names` has 1 names"),
])
def test_config_validation_names_the_field(synthetic_path, field, value, message):
    config = _config(synthetic_path, **{field: value})
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]").replace("`", "`")):
        config.validate()


def _write_bad(tmp_path, mutate) -> str:
    tr = make_synthetic(n=100)
    mutate(tr)
    path = tmp_path / "bad.parquet"
    write_transitions(tr, path)
    return str(path)


@pytest.mark.parametrize("mutate, message", [
    (lambda tr: setattr(tr, "rewards", np.where(np.arange(100) == 3, np.nan, tr.rewards).astype(np.float32)),
     "column 'rewards': expected finite numbers"),
    (lambda tr: setattr(tr, "policy_id", np.full(100, 5)), "column 'policy_id': expected integers in \\[0, 3\\)"),
    (lambda tr: setattr(tr, "reward_components", tr.reward_components[:, :2]),
     "column 'reward_components': expected width 3"),
])
def test_bad_data_fails_before_training_naming_file_and_column(ray_session, tmp_path, mutate, message):
    path = _write_bad(tmp_path, mutate)
    with pytest.raises(ValueError, match=message) as err:
        _config(path).build_algo()
    assert "bad.parquet" in str(err.value)


def test_missing_column_and_wrong_action_width(ray_session, tmp_path):
    path = _write_bad(tmp_path, lambda tr: None)
    table = pq.read_table(path).drop(["new_obs"])
    pq.write_table(table, tmp_path / "missing.parquet")
    with pytest.raises(ValueError, match=r"missing.parquet: missing column\(s\) \['new_obs'\]"):
        _config(str(tmp_path / "missing.parquet")).build_algo()
    import gymnasium as gym

    config = _config(path).environment(observation_space=gym.spaces.Box(-np.inf, np.inf, (4,)),
                                       action_space=gym.spaces.Box(-1, 1, (3,)))
    with pytest.raises(ValueError, match="column 'actions': expected width 3 \\(the action space\\), found width 2"):
        config.build_algo()


@pytest.mark.slow
def test_learns_pendulum_better_than_the_data(ray_session, tmp_path):
    """Two behaviour policies (swing-up with noise, random); evaluation in RLlib's eval runners."""
    data = make_pendulum_dataset(episodes=40, seed=0)
    data_mean = float(np.mean(list(episode_returns(data).values())))
    path = tmp_path / "pendulum.parquet"
    write_transitions(data, path)
    config = (FastQConfig()
              .environment("Pendulum-v1")
              .offline_data(input_=[str(path)], dataset_num_iters_per_learner=500)
              .training(num_policies=2, pretrain_steps=500, actor_hiddens=[64, 64], critic_hiddens=[64, 64],
                        expert_hiddens=[64, 64], br_dim=64, adversary_hiddens=[64, 64], max_exploration=0.3,
                        exploration_ramp_steps=2000)
              .evaluation(evaluation_interval=1, evaluation_num_env_runners=0, evaluation_duration=5,
                          evaluation_duration_unit="episodes")
              .debugging(seed=0))
    algo = config.build_algo()
    returns = []
    for _ in range(10):
        result = algo.train()
        returns.append(result["evaluation"]["env_runners"]["episode_return_mean"])
    algo.stop()
    final = float(np.mean(returns[-2:]))
    print(f"pendulum: data mean {data_mean:.0f}, FAST-Q final {final:.0f}, curve {np.round(returns)}")
    assert final > data_mean + 200, (final, data_mean, returns)
