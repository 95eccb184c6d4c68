"""Between a FastQConfig and its learners: spaces from the data, validation, statistics, loading.

FAST-Q reads the dataset once on the driver before training: to fail early with a clear error
(missing column, wrong width, NaN, bad ``policy_id``), to compute the state-normalisation
statistics and per-arm frequencies, and — for the in-memory path — to hand the arrays to the
learners.
"""

from __future__ import annotations

import os
from typing import Any

import gymnasium as gym
import numpy as np
import pyarrow as pa
import ray
from ray.rllib.offline.offline_data import OfflineData

from rllib_fastq import _rllib_compat as compat
from rllib_fastq.counterfactual.returns import bootstrap_weights, episode_starts, returns_to_go
from rllib_fastq.data import schema
from rllib_fastq.data.episodes import read_episodes
from rllib_fastq.data.io import _read_one, expand_paths, parquet_file, read_transitions, table_to_transitions
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.data.validation import expected_shapes

# Annotations only: this module is imported by ``rllib_fastq.fastq`` and must not import it back.
FastQConfig = Any  # a rllib_fastq.FastQConfig
FastQ = Any  # a rllib_fastq.FastQ


class InMemoryOfflineData(OfflineData):
    """Stands in for RLlib's ``OfflineData`` on the in-memory path: no Ray Data pipeline is built.

    (RLlib's lists files with a CPU task and maps rows through per-row episode conversion;
    on a 2-CPU machine under Tune that can wait forever for a free CPU.)
    """

    def __init__(self, config: FastQConfig):  # deliberately not super().__init__: no Ray Data
        self.config = config
        self.iter_batches_kwargs: dict[str, Any] = {}
        self.locality_hints = self.learner_handles = self.module_spec = self.spaces = None


def input_paths(config: FastQConfig) -> list[str]:
    """The files named by ``config.input_``."""
    inp = config.input_
    if not inp or not isinstance(inp, (str, os.PathLike, list, tuple)):
        raise ValueError("input_: FAST-Q trains offline; set `config.offline_data(input_=[<parquet or "
                         "JSON files or directories>])`.")
    return expand_paths(inp)


def infer_spaces(config: FastQConfig) -> tuple[gym.Space, gym.Space]:
    """Observation and action spaces read off the first data file.

    The observation layout comes from the file's metadata (dict form) or the ``obs`` width;
    actions are ``Box(-1, 1)`` when every logged action of the first file lies there,
    otherwise unbounded. Set ``config.environment(observation_space=..., action_space=...)``
    to override.
    """
    first = input_paths(config)[0]
    if config.input_read_episodes:  # RLlib's recorder format: the first 100 episodes suffice
        tr = read_episodes([first], limit_per_file=100)
    elif first.endswith(".parquet"):  # the first 10k rows suffice: don't read a large file twice
        pf = parquet_file(first)
        table = pa.Table.from_batches([next(pf.iter_batches(batch_size=10_000))], schema=pf.schema_arrow)
        tr = table_to_transitions(table, source=first)
    else:
        tr = table_to_transitions(_read_one(first).slice(0, 10_000), source=first)
    layout = tr.meta.obs_layout or schema.ObsLayout(static=tr.obs.shape[1])
    if layout.temporal is None:
        obs_space: gym.Space = gym.spaces.Box(-np.inf, np.inf, (layout.static,), np.float32)
    else:
        obs_space = gym.spaces.Dict({
            "temporal": gym.spaces.Box(-np.inf, np.inf, layout.temporal, np.float32),
            "static": gym.spaces.Box(-np.inf, np.inf, (layout.static,), np.float32),
        })
    d_a = tr.actions.shape[1]
    bounded = bool(np.abs(tr.actions).max(initial=0.0) <= 1.0)
    bound = 1.0 if bounded else np.inf
    return obs_space, gym.spaces.Box(-bound, bound, (d_a,), np.float32)


def load_dataset(config: FastQConfig) -> Transitions:
    """Read and validate ``config.input_`` against the config (shapes, arms, components); RLlib's
    recorded episodes (``input_read_episodes=True``) become transitions first."""
    if config.input_read_episodes:
        return read_episodes(input_paths(config), **expected_shapes(config))
    return read_transitions(input_paths(config), **expected_shapes(config))


def learner_arrays(tr: Transitions, config: FastQConfig) -> dict[str, np.ndarray]:
    """The columns the learner trains on, by their schema names (optional ones when present),
    plus the arm values' targets derived from the episodes (``returns_to_go``, per component
    ``component_returns_to_go`` with ``arm_value_decomposition``, ``bootstrap_weights``)."""
    keep = (schema.OBS, schema.NEW_OBS, schema.ACTIONS, schema.REWARDS, schema.TERMINATEDS,
            schema.POLICY_ID, schema.REWARD_COMPONENTS, schema.EXPERT_ACTIONS, schema.EXPERT_ACTIONS_MASK,
            schema.POLICY_PROPENSITY)  # the propensity: arm_choice_check's doubly-robust estimate
    out = {k: v for k, v in tr.columns().items() if k in keep}
    out[schema.TERMINATEDS] = out[schema.TERMINATEDS].astype(np.float32)
    rewards = tr.rewards if config.reward_weights is None else \
        tr.reward_components @ np.asarray(config.reward_weights, np.float32)
    out[schema.RETURNS_TO_GO] = returns_to_go(rewards, tr.eps_id, tr.t, config.arm_value_gamma)
    if config.arm_value_decomposition:  # each component's own return-to-go, [N, C]
        parts = [tr.rewards] if config.reward_weights is None else list(tr.reward_components.T)
        out[schema.COMPONENT_RETURNS_TO_GO] = np.stack(
            [returns_to_go(r, tr.eps_id, tr.t, config.arm_value_gamma) for r in parts], -1).astype(np.float32)
    out[schema.BOOTSTRAP_WEIGHTS] = bootstrap_weights(tr.eps_id, config.arm_value_ensemble, config.seed or 0)
    out[schema.EPISODE_START] = episode_starts(tr.eps_id, tr.t)
    return out


def normalization_stats(tr: Transitions, config: FastQConfig) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std (+ ``state_norm_eps``) of the states; identity when normalisation is off."""
    d = tr.obs.shape[1]
    if not config.normalize_states:
        return np.zeros(d, np.float32), np.ones(d, np.float32)
    return tr.obs.mean(0).astype(np.float32), (tr.obs.std(0) + config.state_norm_eps).astype(np.float32)


def arm_frequencies(tr: Transitions, k: int) -> np.ndarray:
    """Share of rows logged by each arm."""
    return np.bincount(tr.policy_id, minlength=k).astype(np.float64) / len(tr)


def resolve_pretrain_steps(config: FastQConfig, num_rows: int) -> int:
    """``pretrain_steps``, with "auto" = 10 passes' worth of batches over the data, clipped to
    [1,000, 10,000]: long enough for experts, balancing and arm values on small logs, and a
    phase 2 that starts within a short run on large ones."""
    if config.pretrain_steps != "auto":
        return int(config.pretrain_steps)
    batch = config.train_batch_size_per_learner * max(1, config.num_learners)
    return int(np.clip(round(10 * num_rows / batch), 1_000, 10_000))


def prepare_offline_data(algo: FastQ) -> dict[str, Any]:
    """Validate the data, set normalisation on every module, give learners their data."""
    config = algo.config
    tr = load_dataset(config)
    mean, std = normalization_stats(tr, config)
    freqs = arm_frequencies(tr, config.num_policies)
    arrays = learner_arrays(tr, config) if config.in_memory_data else None
    payload = ray.put(arrays) if (arrays is not None and algo.learner_group.is_remote) else arrays

    pretrain = resolve_pretrain_steps(config, len(tr))

    def _setup(learner, mean=mean, std=std, freqs=freqs, payload=payload):
        data = ray.get(payload) if isinstance(payload, ray.ObjectRef) else payload
        learner.setup_data(obs_mean=mean, obs_std=std, arm_freqs=freqs, arrays=data, pretrain_steps=pretrain)
        return True

    compat.learner_results(algo.learner_group, algo.learner_group.foreach_learner(_setup))
    # Evaluation env runners need the normalisation buffers too.
    if algo.eval_env_runner_group is not None:
        algo.eval_env_runner_group.sync_weights(from_worker_or_learner_group=algo.learner_group,
                                                inference_only=True, timeout_seconds=None)
    return {"rows": len(tr), "arm_frequencies": freqs.tolist(), "source": tr.source, "pretrain_steps": pretrain}
