"""RLlib's generic checks applied to FastQ (issue 35): what a Ray user touches behaves as a
built-in algorithm does, so a Ray upgrade shows here what broke."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    LEARNER_RESULTS,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)

from rllib_fastq import FastQ, FastQConfig
from rllib_fastq.data.io import expand_paths, read_transitions, write_transitions
from tests.synthetic import TINY_NETS, make_synthetic


@pytest.fixture(scope="module")
def synthetic_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("citizen") / "synthetic.parquet"
    write_transitions(make_synthetic(), path)
    return str(path)


def _config(path, iters: int = 3, **training) -> FastQConfig:
    kw = dict(num_policies=3, pretrain_steps=4, reward_weights=[1.0, 0.5, -1.0], **TINY_NETS)
    kw.update(training)
    return (FastQConfig()
            .offline_data(input_=path if isinstance(path, list) else [path], dataset_num_iters_per_learner=iters)
            .training(train_batch_size_per_learner=32, **kw)
            .debugging(seed=0))


# -- 3: a single `lr` is refused, as SAC and CQL do --------------------------------------------

def test_single_lr_is_refused_naming_the_per_part_rates(synthetic_path):
    config = _config(synthetic_path).training(lr=1e-3)
    with pytest.raises(ValueError, match="expert_lr.*critic_lr.*actor_lr"):
        config.validate()


# -- 6: validate() on a frozen config; set_state(get_state()) ----------------------------------

def test_frozen_never_validated_config_validates_without_writing(synthetic_path):
    config = _config(synthetic_path)
    config.freeze()
    config.validate()  # RLlib's frozen configs refuse attribute writes
    assert config.observation_space is None  # untouched
    copy = config.copy(copy_frozen=False)
    copy.validate()
    assert copy.observation_space.shape == (4,)  # an unfrozen config gets the spaces off the data


def test_config_copy_and_to_dict_round_trip(synthetic_path):
    config = _config(synthetic_path, br_dim=None)
    again = FastQConfig.from_dict(config.to_dict())
    for name in ("num_policies", "pretrain_steps", "reward_weights", "br_dim", "arm_choice", "expert_lr"):
        assert getattr(again, name) == getattr(config, name), name
    assert config.copy().to_dict() == config.to_dict()


def test_set_state_of_get_state_and_component_restore(ray_session, synthetic_path, tmp_path):
    algo = _config(synthetic_path).build_algo()
    algo.train()
    state = algo.get_state()
    obs = torch.as_tensor(make_synthetic(n=10, seed=2).obs)
    before = algo.get_module().forward_inference({Columns.OBS: obs})[Columns.ACTIONS]
    algo.train()
    algo.set_state(state)
    assert torch.allclose(algo.get_module().forward_inference({Columns.OBS: obs})[Columns.ACTIONS], before)
    # A component restore, the RLlib way.
    ckpt = tmp_path / "ckpt"
    algo.save_to_path(str(ckpt))
    algo.train()
    algo.restore_from_path(str(ckpt / "learner_group" / "learner" / "rl_module"),
                           component="learner_group/learner/rl_module")
    assert torch.allclose(algo.get_module().forward_inference({Columns.OBS: obs})[Columns.ACTIONS], before)
    algo.stop()


# -- 2: RLlib's trained-steps counters on the in-memory path -----------------------------------

def test_in_memory_path_reports_rllib_trained_step_counters(ray_session, synthetic_path):
    algo = _config(synthetic_path, iters=3).build_algo()
    algo.train()
    r = algo.train()[LEARNER_RESULTS]
    assert r[ALL_MODULES][NUM_ENV_STEPS_TRAINED_LIFETIME] == 2 * 3 * 32
    assert r[DEFAULT_MODULE_ID][NUM_MODULE_STEPS_TRAINED_LIFETIME] == 2 * 3 * 32
    assert r[ALL_MODULES][NUM_MODULE_STEPS_TRAINED_LIFETIME] == 2 * 3 * 32
    algo.stop()


# -- 1: offline evaluation ("eval_loss") -------------------------------------------------------

def test_offline_eval_loss_runs_on_the_evaluation_runner(ray_session, synthetic_path):
    config = _config(synthetic_path, iters=3).evaluation(
        offline_evaluation_interval=1, offline_evaluation_type="eval_loss", num_offline_eval_runners=0,
        offline_eval_batch_size_per_runner=32, dataset_num_iters_per_offline_eval_runner=2)
    algo = config.build_algo()
    for _ in range(2):  # phase 1, then phase 2
        result = algo.train()
    ev = result["evaluation"]["offline_eval_runners"]
    losses = ev[DEFAULT_MODULE_ID]
    assert np.isfinite(losses["total_eval_loss"])
    assert np.isfinite(losses["eval_expert_loss"]) and np.isfinite(losses["eval_td_loss"])
    algo.stop()


# -- 5: RLlib's inference recipe ---------------------------------------------------------------

def test_rllib_inference_recipe(ray_session, synthetic_path):
    algo = _config(synthetic_path).build_algo()
    algo.train()
    module = algo.get_module()
    obs = torch.as_tensor(make_synthetic(n=10, seed=3).obs)
    # As in RLlib's docs (rllib-rl-modules "inference"):
    out = module.forward_inference({Columns.OBS: obs})
    dist_cls = module.get_inference_action_dist_cls()
    action = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic().sample()
    assert torch.allclose(action, out[Columns.ACTIONS])
    assert action.shape == (10, 2)
    algo.stop()


# -- 7: br_dim follows the data ----------------------------------------------------------------

@pytest.mark.parametrize("obs_dim, expected", [(3, 6), (4, 8), (200, 256)])
def test_br_dim_auto_follows_the_observation_width(obs_dim, expected):
    from rllib_fastq.torch.fastq_torch_rl_module import resolve_br_dim

    assert FastQConfig().br_dim is None
    assert resolve_br_dim(None, gym.spaces.Box(-1, 1, (obs_dim,))) == expected
    assert resolve_br_dim(32, gym.spaces.Box(-1, 1, (obs_dim,))) == 32
    dict_obs = gym.spaces.Dict({"temporal": gym.spaces.Box(-1, 1, (5, 3)), "static": gym.spaces.Box(-1, 1, (2,))})
    assert resolve_br_dim(None, dict_obs) == 256


def test_br_dim_auto_builds_a_module_of_that_width(ray_session, synthetic_path):
    algo = _config(synthetic_path, br_dim=None).build_algo()
    module = algo.get_module()
    assert module.actor(torch.zeros(1, 8)).shape == (1, 2)  # 2 × the 4-wide state
    algo.stop()


# -- 4: URIs and RLlib-recorded episodes -------------------------------------------------------

def test_uris_local_file_and_fsspec_memory_are_read(synthetic_path):
    n = len(make_synthetic())
    for uri in (f"local://{synthetic_path}", f"file://{synthetic_path}"):
        assert expand_paths([uri]) == [uri]
        assert len(read_transitions([uri])) == n
    import fsspec

    fs = fsspec.filesystem("memory")
    with open(synthetic_path, "rb") as src, fs.open("/citizen/data/part-0.parquet", "wb") as dst:
        dst.write(src.read())
    assert expand_paths(["memory://citizen/data"]) == ["memory://citizen/data/part-0.parquet"]
    assert len(read_transitions(["memory://citizen/data"])) == n
    with pytest.raises(FileNotFoundError, match="memory://citizen/nothing"):
        expand_paths(["memory://citizen/nothing"])


def test_uris_train_on_both_data_paths(ray_session, synthetic_path):
    for in_memory in (True, False):
        config = _config(f"local://{synthetic_path}", iters=2, in_memory_data=in_memory)
        if not in_memory:
            config = config.reference()
        algo = config.build_algo()
        assert np.isfinite(algo.train()[LEARNER_RESULTS][DEFAULT_MODULE_ID]["expert_loss"])
        algo.stop()


def _recorded_episodes(tmp_path, episodes: int = 4, length: int = 10) -> str:
    """Episodes in the format of RLlib's ``output=`` recorder (``output_write_episodes=True``):
    parquet rows with an ``item`` column of msgpack'd ``SingleAgentEpisode.get_state()``."""
    import msgpack
    import msgpack_numpy as mnp
    import pyarrow as pa
    import pyarrow.parquet as pq
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    rng = np.random.default_rng(0)
    items = []
    for e in range(episodes):
        eps = SingleAgentEpisode(observation_space=gym.spaces.Box(-np.inf, np.inf, (3,), np.float32),
                                 action_space=gym.spaces.Box(-1, 1, (2,), np.float32))
        eps.add_env_reset(observation=rng.normal(size=3).astype(np.float32))
        for t in range(length):
            eps.add_env_step(observation=rng.normal(size=3).astype(np.float32),
                             action=rng.uniform(-1, 1, 2).astype(np.float32), reward=float(t),
                             terminated=t == length - 1 and e % 2 == 0,
                             truncated=t == length - 1 and e % 2 == 1,
                             extra_model_outputs={Columns.ACTION_LOGP: np.float32(0.0)})
        eps.to_numpy()
        items.append(msgpack.packb(eps.get_state(), default=mnp.encode))
    path = tmp_path / "episodes"
    path.mkdir()
    pq.write_table(pa.table({"item": pa.array(items, pa.binary())}), path / "run-0.parquet")
    return str(path)


def test_rllib_recorded_episodes_become_transitions(tmp_path):
    from rllib_fastq.data.episodes import read_episodes

    tr = read_episodes([_recorded_episodes(tmp_path)])
    assert len(tr) == 40 and tr.obs.shape == (40, 3) and tr.actions.shape == (40, 2)
    assert np.allclose(tr.obs[1:10], tr.new_obs[:9])  # s' of a step is s of the next
    assert tr.terminateds.sum() == 2 and tr.truncateds.sum() == 2
    assert (tr.policy_id == 0).all() and list(tr.t[:10]) == list(range(10))
    assert len(set(tr.eps_id)) == 4 and tr.rewards[9] == 9.0


def test_rllib_recorded_episodes_train_on_both_data_paths(ray_session, tmp_path):
    path = _recorded_episodes(tmp_path)
    for in_memory in (True, False):
        config = (FastQConfig()
                  .offline_data(input_=[f"local://{path}"], input_read_episodes=True,
                                dataset_num_iters_per_learner=2)
                  .training(train_batch_size_per_learner=8, pretrain_steps=2, in_memory_data=in_memory,
                            **TINY_NETS)
                  .debugging(seed=0))
        if not in_memory:
            config = config.reference()
        algo = config.build_algo()
        algo.train()
        assert np.isfinite(algo.train()[LEARNER_RESULTS][DEFAULT_MODULE_ID]["td_loss"])
        algo.stop()


# -- Tune by name ------------------------------------------------------------------------------

def test_registered_for_tune_by_name():
    from ray.tune.registry import get_trainable_cls

    import rllib_fastq  # noqa: F401  (registers "FASTQ")

    assert get_trainable_cls("FASTQ") is FastQ
