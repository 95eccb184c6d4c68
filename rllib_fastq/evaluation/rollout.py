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
from rllib_fastq.evaluation.episodes import run_episodes, run_episodes_lockstep


def _to_tensor(obs: Any, batched: bool = False) -> Any:
    if isinstance(obs, dict):
        return {k: _to_tensor(v, batched) for k, v in obs.items()}
    x = torch.as_tensor(np.asarray(obs, np.float32))
    return x if batched else x[None]


def policy_fn(module: Any, policy_id: int | str | None = None, batched: bool = False) -> Any:
    """A ``obs -> action`` function acting with the module's inference path (docs/algorithm.md §5);
    ``batched``: a batch of observations (``[B, ...]``, or a dict of them) → ``[B, action]``."""

    def act(obs: Any) -> np.ndarray:
        x = _to_tensor(obs, batched)
        batch = {Columns.OBS: x}
        if policy_id is not None:
            rows = len(next(iter(x.values())) if isinstance(x, dict) else x)
            batch[schema.POLICY_ID] = policy_id if isinstance(policy_id, str) else torch.full((rows,), policy_id)
        with torch.no_grad():
            out = module.forward_inference(batch)
        actions = out[Columns.ACTIONS].cpu().numpy()
        return actions if batched else actions[0]

    return act


def evaluate_module(module: Any, env: str | gym.Env, *, num_episodes: int = 10, seed: int = 0,
                    policy_id: int | str | None = None, env_config: dict | None = None) -> dict[str, Any]:
    """Mean/std undiscounted return of the module's greedy policy over ``num_episodes``.

    When the env reports ``info["reward_components"]``, their per-episode sums are averaged too
    (``components``). Keys match :func:`rllib_fastq.envs.evaluate_policy`. Given an env id, the
    episodes run side by side (one env each, :func:`run_episodes_lockstep`: the same episodes,
    one batched module call per time step); given an env instance, one after another in it.
    """
    if isinstance(env, str):
        def make_env() -> gym.Env:
            return gym.make(env, **(env_config or {}))

        eps = run_episodes_lockstep(policy_fn(module, policy_id, batched=True), make_env,
                                    range(seed, seed + num_episodes), close=True)
        return _summary(eps, num_episodes)
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
    return _summary(eps, num_episodes)


def _summary(eps: Any, num_episodes: int) -> dict[str, Any]:
    out: dict[str, Any] = {"mean_return": float(np.mean(eps.returns)), "std_return": float(np.std(eps.returns)),
                           "num_episodes": num_episodes}
    if eps.components is not None:
        out["components"] = eps.components.mean(axis=0).tolist()
    return out
