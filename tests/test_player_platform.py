"""The player-platform simulator, its logging arms and the logged-data generator (no Ray)."""

from __future__ import annotations

import json
import os
import time

import gymnasium as gym
import numpy as np
import pytest

from rllib_fastq import cli
from rllib_fastq.data import schema
from rllib_fastq.data.io import read_transitions
from rllib_fastq.datasets.player_platform import collect_episodes, logged_arm_stats
from rllib_fastq.envs import (
    ENV_ID,
    REWARD_COMPONENT_NAMES,
    ArmPolicy,
    PlayerPlatformConfig,
    PlayerPlatformEnv,
    SegmentOraclePolicy,
    arm_actions,
    evaluate_policy,
    per_player_policy,
    unflatten_obs,
)
from rllib_fastq.envs.routing import ROUTINGS, Router

SMALL = {"window": 8}
SMALL_FLAT_DIM = 8 * 9 + 7  # window × per-step features + static features
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _rollout(env: gym.Env, seed: int, steps: int = 40) -> list:
    rng = np.random.default_rng(123)
    obs, _ = env.reset(seed=seed)
    out = [schema.flatten_obs(obs)]
    for _ in range(steps):
        obs, r, term, trunc, info = env.step(rng.uniform(-1, 1, 3))
        out += [schema.flatten_obs(obs), r, info["reward_components"]]
        if term or trunc:
            obs, _ = env.reset()
    return out


def test_seeding_gives_identical_trajectories():
    a = _rollout(PlayerPlatformEnv(SMALL), seed=7)
    b = _rollout(PlayerPlatformEnv(SMALL), seed=7)
    c = _rollout(PlayerPlatformEnv(SMALL), seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_registered_env_takes_kwargs_and_honours_spaces():
    env = gym.make(ENV_ID, **SMALL)
    obs, _ = env.reset(seed=0)
    assert obs["temporal"].shape == (8, 9) and obs["static"].shape == (7,)
    assert env.observation_space.contains(obs)
    assert env.action_space.shape == (3,)
    assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
    for _ in range(10):
        obs, *_ = env.step(env.action_space.sample())
        assert env.observation_space.contains(obs)


def test_flat_obs_is_schema_flatten_of_dict_obs():
    d_env, f_env = PlayerPlatformEnv(SMALL), PlayerPlatformEnv({**SMALL, "flat_obs": True})
    d, _ = d_env.reset(seed=3)
    f, _ = f_env.reset(seed=3)
    assert f_env.observation_space.shape == (8 * 9 + 7,)
    for _ in range(5):
        assert f_env.observation_space.contains(f)
        np.testing.assert_array_equal(f, schema.flatten_obs(d))
        d, *_ = d_env.step([0.2, -0.1, 0.5])
        f, *_ = f_env.step([0.2, -0.1, 0.5])


def test_reward_is_weighted_components():
    weights = (1.0, 0.5, -2.0, 0.1)
    env = PlayerPlatformEnv({**SMALL, "reward_weights": weights})
    env.reset(seed=0)
    assert REWARD_COMPONENT_NAMES == ("revenue", "engagement", "cost", "dwell")
    for _ in range(20):
        _, r, term, trunc, info = env.step(env.action_space.sample())
        assert info["reward_components"].shape == (4,)
        assert r == pytest.approx(float(np.dot(weights, info["reward_components"])), rel=1e-5, abs=1e-6)
        if term or trunc:
            break


def test_horizon_truncates_and_churn_terminates():
    env = PlayerPlatformEnv({**SMALL, "horizon": 12, "churn_scale": 0.0})
    env.reset(seed=0)
    flags = [env.step([0, 0, 0])[2:4] for _ in range(12)]
    assert flags[-1] == (False, True) and all(f == (False, False) for f in flags[:-1])
    env = PlayerPlatformEnv({**SMALL, "churn_scale": 50.0})
    env.reset(seed=0)
    terminated = any(env.step([-1, 1, 1])[2] for _ in range(50))
    assert terminated


def test_config_rejects_unknown_and_bad_values():
    with pytest.raises(ValueError, match="unknown parameter.*'horizn'"):
        PlayerPlatformConfig.from_any({"horizn": 3})
    with pytest.raises(ValueError, match="overlap"):
        Router("aligned", overlap=1.5)
    with pytest.raises(ValueError, match="routing: expected one of"):
        Router("random")
    with pytest.raises(ValueError, match="reward_weights"):
        PlayerPlatformConfig(reward_weights=(1.0, 2.0))


def test_logged_data_carries_all_arms_and_is_seeded():
    tr = collect_episodes(30, seed=5, env_config=SMALL)
    again = collect_episodes(30, seed=5, env_config=SMALL)
    for name, value in tr.columns().items():
        np.testing.assert_array_equal(value, getattr(again, name), err_msg=name)
    assert tr.expert_actions.shape == (len(tr), 3, 3) and tr.expert_actions_mask.all()
    rows = np.arange(len(tr))
    np.testing.assert_array_equal(tr.expert_actions[rows, tr.policy_id], tr.actions)
    layout = tr.meta.obs_layout
    assert layout == schema.ObsLayout(static=7, temporal=(8, 9))
    from rllib_fastq.envs import unflatten_obs
    for i in rows[:50]:
        others = [k for k in range(3) if k != tr.policy_id[i]]
        expected = arm_actions(unflatten_obs(tr.obs[i], layout))[others]
        np.testing.assert_allclose(tr.expert_actions[i, others], expected, rtol=1e-6)
    # Within an episode new_obs[i] is obs[i + 1], and each episode sticks to one arm.
    same = tr.eps_id[1:] == tr.eps_id[:-1]
    np.testing.assert_array_equal(tr.new_obs[:-1][same], tr.obs[1:][same])
    assert (tr.policy_id[1:][same] == tr.policy_id[:-1][same]).all()
    np.testing.assert_allclose(tr.rewards, tr.reward_components @ np.array([0.25, 0.25, -0.25, 0.25]),
                               rtol=1e-5, atol=1e-6)


def _arm_slice_spread(overlap: float) -> float:
    """Largest L1 distance between two arms' mean static features (the arms' state slices)."""
    tr = collect_episodes(400, seed=11, env_config={**SMALL, "horizon": 3},
                          router=Router("aligned", num_arms=3, overlap=overlap))
    static = tr.obs[:, -7:]
    means = np.stack([static[tr.policy_id == k].mean(axis=0) for k in range(3)])
    return float(max(np.abs(means[i] - means[j]).sum() for i in range(3) for j in range(3)))


def test_routing_biases_arm_slices_and_overlap_shrinks_the_bias():
    biased, mixed, random = _arm_slice_spread(0.1), _arm_slice_spread(0.6), _arm_slice_spread(1.0)
    assert biased > 1.0            # arms see clearly different players
    assert biased > mixed > random  # more random routing, more overlap
    assert random < 0.25 * biased  # fully random routing: only sampling noise is left


def test_no_arm_is_best_everywhere_and_per_player_policies_beat_the_best_arm():
    cfg = {**SMALL, "horizon": 30}
    layout = PlayerPlatformConfig.from_any(cfg).obs_layout
    arms = [evaluate_policy(ArmPolicy(k, layout), cfg, 300, seed=0) for k in range(3)]
    best_per_segment = tuple(int(np.argmax([a["segment_returns"][s] for a in arms]))
                             for s in ("casual", "competitive", "spender"))
    assert len(set(best_per_segment)) == 3  # each arm wins on its own players only
    best = max(a["mean_return"] for a in arms)
    seg = evaluate_policy(SegmentOraclePolicy(best_per_segment, layout), cfg, 300, seed=10_000)
    per_player = evaluate_policy(lambda o: per_player_policy(o, layout), cfg, 300, seed=10_000)
    best_fresh = max(evaluate_policy(ArmPolicy(k, layout), cfg, 300, seed=10_000)["mean_return"]
                     for k in range(3))
    # The shipped card measures +25 % (segment oracle) and +38 % (per player); 10 % is the floor.
    assert seg["mean_return"] > 1.10 * best_fresh
    assert per_player["mean_return"] > 1.20 * best_fresh
    assert best > 0


def test_evaluate_policy_is_deterministic_and_reports_components():
    a = evaluate_policy(lambda o: np.zeros(3), SMALL, 5, seed=1)
    b = evaluate_policy(lambda o: np.zeros(3), SMALL, 5, seed=1)
    assert a == b
    assert set(a["components"]) == set(REWARD_COMPONENT_NAMES)
    assert a["num_episodes"] == 5 and 1 <= a["mean_length"] <= 50


def test_lockstep_evaluation_runs_the_same_episodes_as_one_player_at_a_time():
    """``evaluate_policy(batched=True)`` steps the players side by side; each env keeps its own
    seeded state, so an observation-dependent policy meets the same players and gets the same
    returns, lengths and churn as one player at a time, with batches of more than one player."""
    w = np.random.default_rng(0).normal(size=(SMALL_FLAT_DIM, 3)) * 0.1
    batch_sizes = []

    def policy(obs: dict[str, np.ndarray]) -> np.ndarray:
        flat = schema.ObsLayout.flatten(obs).astype(np.float64)
        if flat.ndim == 2:
            batch_sizes.append(len(flat))
        return np.tanh(flat @ w)

    one_at_a_time = evaluate_policy(policy, SMALL, 12, seed=3)
    lockstep = evaluate_policy(policy, SMALL, 12, seed=3, batched=True)
    assert batch_sizes[0] == 12 and batch_sizes[-1] < 12  # shrinking as players leave
    assert lockstep["mean_length"] == one_at_a_time["mean_length"]
    assert lockstep["churn_rate"] == one_at_a_time["churn_rate"]
    assert lockstep["mean_return"] == pytest.approx(one_at_a_time["mean_return"], abs=1e-9)
    for name in REWARD_COMPONENT_NAMES:
        assert lockstep["components"][name] == pytest.approx(one_at_a_time["components"][name], abs=1e-9)


def test_lockstep_episodes_of_a_gymnasium_env_id_match_one_env_reused():
    """``run_episodes_lockstep`` on array observations (Pendulum): the same returns as one env
    reset with each seed in turn, and it closes the envs it made when asked."""
    from rllib_fastq.evaluation.episodes import run_episodes, run_episodes_lockstep

    made = []

    def make_env() -> gym.Env:
        made.append(gym.make("Pendulum-v1"))
        return made[-1]

    def act(obs: np.ndarray) -> np.ndarray:
        return np.clip(-1.5 * np.asarray(obs)[..., 2:3], -2.0, 2.0)  # damp the angular velocity

    one = run_episodes(act, gym.make("Pendulum-v1"), range(5))
    lockstep = run_episodes_lockstep(act, make_env, range(5), close=True)
    assert len(made) == 5
    np.testing.assert_allclose(lockstep.returns, one.returns, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(lockstep.lengths, one.lengths)
    assert len(set(np.round(one.returns, 6))) == 5  # five different episodes


def test_env_step_is_fast():
    env = PlayerPlatformEnv()
    env.reset(seed=0)
    action = np.zeros(3)
    start, n = time.perf_counter(), 3000
    for _ in range(n):
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            env.reset()
    # ~20k steps/s on an idle core; a loose floor so a busy CI machine does not flake.
    assert n / (time.perf_counter() - start) > 3000


def test_cli_writes_splits_and_card_and_refuses_to_overwrite(tmp_path, capsys):
    out = tmp_path / "pp"
    args = ["data", "player-platform", "--episodes", "12", "--seed", "4", "--out", str(out),
            "--window", "8", "--eval-episodes", "20"]
    assert cli.main(args) == 0
    card = json.loads((out / "card.json").read_text())
    train = read_transitions(out / "train.parquet", num_policies=3, action_dim=3, num_reward_components=4)
    heldout = read_transitions(out / "heldout.parquet")
    assert card["files"]["train"]["transitions"] == len(train)
    assert card["files"]["heldout"]["seed"] != card["files"]["train"]["seed"]
    assert not set(train.eps_id) & set(heldout.eps_id)
    assert sum(a["transitions"] for a in card["logged_by_arm"]["train"].values()) == len(train)
    assert card["online"]["best_arm"] in card["arm_names"]
    assert card["generation"]["transitions_per_s"] > 0 and "gymnasium" in card["versions"]
    assert "oracle" in (out / "README.md").read_text()
    assert cli.main(args) == 2
    assert "exists" in capsys.readouterr().err
    assert cli.main([*args, "--overwrite", "--format", "json"]) == 0
    js = read_transitions(out / "train.jsonl")
    np.testing.assert_array_equal(js.obs, train.obs)
    assert js.meta == train.meta


def test_shipped_dataset_matches_its_card():
    d = os.path.join(ROOT, "offline_data", "player_platform")
    card = json.loads(open(os.path.join(d, "card.json")).read())
    tr = read_transitions(os.path.join(d, "train.parquet"), num_policies=3, action_dim=3,
                          num_reward_components=4)
    assert len(tr) == card["files"]["train"]["transitions"]
    stats = logged_arm_stats(tr)
    for name, s in card["logged_by_arm"]["train"].items():
        assert stats[name]["transitions"] == s["transitions"]
        assert stats[name]["mean_return"] == pytest.approx(s["mean_return"], rel=1e-4)
    assert tr.meta.reward_component_names == REWARD_COMPONENT_NAMES
    assert card["online"]["segment_oracle"]["margin_over_best_arm"] > 0.10


def test_shipped_dataset_is_reproduced_by_the_current_simulator():
    """Simulator changes must come with a regenerated dataset (the streams are sequential, so the
    first episodes of a seed do not depend on how many follow)."""
    d = os.path.join(ROOT, "offline_data", "player_platform")
    card = json.loads(open(os.path.join(d, "card.json")).read())
    shipped = read_transitions(os.path.join(d, "train.parquet"))
    fresh = collect_episodes(5, seed=card["files"]["train"]["seed"], env_config=card["simulator"])
    head = shipped.take(np.arange(len(fresh)))
    for name, value in fresh.columns().items():
        np.testing.assert_array_equal(getattr(head, name), value, err_msg=name)


def test_routers_log_exact_propensities_and_match_their_regime():
    """Each regime's propensity of the logged arm is the router's probability; misaligned
    routing sends most casual players to the competitive arm; uniform logs 1/K everywhere."""
    env_config = {**SMALL, "horizon": 2}
    for name in ROUTINGS:
        router = Router(name, num_arms=3)
        tr = collect_episodes(150, seed=5, env_config=env_config, router=router)
        first = tr.t == 0
        expected = [router.probabilities(unflatten_obs(o, PlayerPlatformConfig.from_any(env_config).obs_layout))[p]
                    for o, p in zip(tr.obs[first], tr.policy_id[first])]
        np.testing.assert_allclose(tr.policy_propensity[first], expected, rtol=1e-6)
        assert tr.meta.extra["routing"] == name
    uniform = collect_episodes(60, seed=5, env_config=env_config, router=Router("uniform"))
    np.testing.assert_allclose(uniform.policy_propensity, 1.0 / 3, rtol=1e-6)
    mis = collect_episodes(300, seed=5, env_config=env_config, router=Router("misaligned"))
    casual = (mis.t == 0) & (mis.obs[:, -7] == 1.0)
    assert np.mean(mis.policy_id[casual] == 1) > 0.7       # casual → competitive (wrong for them)
    low = Router("low-overlap").probabilities({"static": np.array([1, 0, 0, .5, 0, 0, 0])})
    np.testing.assert_allclose(low, [0.05 / 3, 1 - 0.05 + 0.05 / 3, 0.05 / 3])
    # The router a dataset card names is rebuilt from it (the benchmark's logged routing, the OPE).
    card = {"routing": {"name": "low-overlap", "overlap": 0.05}}
    assert Router.from_card(card, 4) == Router("low-overlap", num_arms=4, overlap=0.05)


def test_with_logging_noise_adds_the_logs_gaussian_noise_and_clips():
    from rllib_fastq.envs.arms import WithLoggingNoise

    def constant(obs):
        return np.array([0.0, 0.95, -0.5], np.float32)

    noisy = WithLoggingNoise(constant, 0.15, seed=3)
    actions = np.stack([noisy(None) for _ in range(4000)])
    assert actions.max() <= 1.0 and actions[:, 1].max() == 1.0  # 0.95 + noise is clipped at the bound
    assert abs(actions[:, 0].std() - 0.15) < 0.01 and abs(actions[:, 2].mean() + 0.5) < 0.01
    again = WithLoggingNoise(constant, 0.15, seed=3)
    assert np.array_equal(again(None), actions[0])  # seeded
    assert np.array_equal(WithLoggingNoise(constant, 0.0)(None), constant(None))
    with pytest.raises(ValueError, match="noise"):
        WithLoggingNoise(constant, -0.1)
