"""Online evaluation of a policy in the player-platform simulator (the truth for benchmarks)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from rllib_fastq.envs.player_platform import (
    REWARD_COMPONENT_NAMES,
    SEGMENT_NAMES,
    PlayerPlatformConfig,
    PlayerPlatformEnv,
)
from rllib_fastq.evaluation.episodes import run_episodes, run_episodes_lockstep


def evaluate_policy(
    policy_fn: Callable[[Any], Any],
    env_config: PlayerPlatformConfig | Mapping[str, Any] | None = None,
    num_episodes: int = 200,
    seed: int = 0,
    batched: bool = False,
) -> dict[str, Any]:
    """Run ``policy_fn(obs) -> action`` for ``num_episodes`` players; episode ``i`` is seeded ``seed + i``.

    Seeding per episode makes two policies evaluated with the same ``seed`` meet the same
    players (common random numbers), so their difference has low variance. ``batched=True``: the
    policy maps a batch of observations (a dict of ``[B, ...]`` arrays) to ``[B, 3]`` actions and
    the players are stepped side by side (:func:`run_episodes_lockstep`): the same episodes, one
    network call per time step instead of one per player step.

    Returns ``mean_return``, ``std_return``, ``sem_return`` (standard error), ``mean_length``,
    ``churn_rate``, ``num_episodes``, ``components`` (mean per-episode sum of each reward
    component, by name) and ``segment_returns`` (mean return per observed segment).
    """
    if num_episodes < 1:
        raise ValueError(f"num_episodes: expected >= 1, got {num_episodes}.")
    seeds = range(seed, seed + num_episodes)
    eps = (run_episodes_lockstep(policy_fn, lambda: PlayerPlatformEnv(env_config), seeds) if batched
           else run_episodes(policy_fn, PlayerPlatformEnv(env_config), seeds))
    returns, lengths, comps, churned = eps.returns, eps.lengths, eps.components, eps.terminated
    segments = np.array([info["observed_segment"] for info in eps.reset_infos], np.int64)
    seg_returns = {
        name: float(returns[segments == s].mean()) for s, name in enumerate(SEGMENT_NAMES)
        if (segments == s).any()
    }
    return {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "sem_return": float(returns.std(ddof=1) / np.sqrt(num_episodes)) if num_episodes > 1 else 0.0,
        "mean_length": float(lengths.mean()),
        "churn_rate": float(churned.mean()),
        "num_episodes": num_episodes,
        "components": {n: float(v) for n, v in zip(REWARD_COMPONENT_NAMES, comps.mean(axis=0))},
        "segment_returns": seg_returns,
    }
