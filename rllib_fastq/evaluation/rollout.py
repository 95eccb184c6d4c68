"""Online evaluation of a trained FAST-Q module in a gymnasium environment.

RLlib's evaluation env runners do the same inside ``algo.train()`` when the config names an
env; this function serves scripts, the CLI and benchmarks that hold a module or checkpoint.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns

from rllib_fastq.data import schema
from rllib_fastq.evaluation.episodes import run_episodes


def _to_tensor(obs: Any) -> Any:
    if isinstance(obs, dict):
        return {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in obs.items()}
    return torch.as_tensor(np.asarray(obs, np.float32))[None]


def policy_fn(module: Any, policy_id: int | str | None = None) -> Any:
    """A ``obs -> action`` function acting with the module's inference path (docs/algorithm.md §5)."""

    def act(obs: Any) -> np.ndarray:
        batch = {Columns.OBS: _to_tensor(obs)}
        if policy_id is not None:
            batch[schema.POLICY_ID] = policy_id if isinstance(policy_id, str) else torch.tensor([policy_id])
        out = module.forward_inference(batch)
        return out[Columns.ACTIONS][0].cpu().numpy()

    return act


def evaluate_module(module: Any, env: str | gym.Env, *, num_episodes: int = 10, seed: int = 0,
                    policy_id: int | str | None = None, env_config: dict | None = None) -> dict[str, Any]:
    """Mean/std undiscounted return of the module's greedy policy over ``num_episodes``.

    When the env reports ``info["reward_components"]``, their per-episode sums are averaged too
    (``components``). Keys match :func:`rllib_fastq.envs.evaluate_policy`.
    """
    return evaluate_policy_fn(policy_fn(module, policy_id), env, num_episodes=num_episodes, seed=seed,
                              env_config=env_config)


def evaluate_policy_fn(act: Any, env: str | gym.Env, *, num_episodes: int = 10, seed: int = 0,
                       env_config: dict | None = None) -> dict[str, Any]:
    """:func:`evaluate_module` for any ``obs -> action`` function; episode ``i`` is seeded ``seed + i``."""
    own_env = isinstance(env, str)
    env = gym.make(env, **(env_config or {})) if own_env else env
    try:
        eps = run_episodes(act, env, range(seed, seed + num_episodes))
    finally:
        if own_env:
            env.close()
    out: dict[str, Any] = {"mean_return": float(np.mean(eps.returns)), "std_return": float(np.std(eps.returns)),
                           "num_episodes": num_episodes}
    if eps.components is not None:
        out["components"] = eps.components.mean(axis=0).tolist()
    return out
