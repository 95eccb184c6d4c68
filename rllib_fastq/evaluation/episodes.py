"""The one rollout loop: every online evaluation (the player-platform simulator, any gymnasium env,
the SAC behaviour-policy trainer, ``fastq evaluate``) runs its episodes through :func:`run_episodes`.

It knows nothing of RLModules or torch: it steps ``act(obs) -> action`` through a gymnasium env,
each episode reset with its own seed, and returns the per-episode arrays the callers summarise.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np


@dataclasses.dataclass
class Episodes:
    """Per-episode results of :func:`run_episodes` (index ``i`` = the ``i``-th seed)."""

    returns: np.ndarray  # [n] undiscounted return (float64)
    lengths: np.ndarray  # [n] steps
    terminated: np.ndarray  # [n] bool: ended by the env (e.g. churn), not truncated
    components: np.ndarray | None  # [n, C] per-episode sums of info["reward_components"], if reported
    reset_infos: list[dict[str, Any]]  # the info dict of each episode's reset

    def __len__(self) -> int:
        return len(self.returns)


def run_episodes(act: Callable[[Any], Any], env: Any, seeds: Iterable[int]) -> Episodes:
    """Run one episode per seed (``env.reset(seed=s)``) with ``act(obs) -> action``.

    Seeding each episode makes two policies run with the same seeds meet the same start states
    (common random numbers), so their difference has low variance.
    """
    returns, lengths, terminated, comps, infos = [], [], [], [], []
    for s in seeds:
        obs, info = env.reset(seed=int(s))
        infos.append(info)
        total, steps, comp, term, done = 0.0, 0, None, False, False
        while not done:
            obs, r, term, trunc, step_info = env.step(act(obs))
            total += float(r)
            steps += 1
            if "reward_components" in step_info:
                c = np.asarray(step_info["reward_components"], np.float64)
                comp = c if comp is None else comp + c
            done = term or trunc
        returns.append(total)
        lengths.append(steps)
        terminated.append(bool(term))
        comps.append(comp)
    has_comps = bool(comps) and all(c is not None for c in comps)
    return Episodes(returns=np.asarray(returns, np.float64), lengths=np.asarray(lengths, np.int64),
                    terminated=np.asarray(terminated, bool),
                    components=np.stack(comps) if has_comps else None, reset_infos=infos)


def run_episodes_lockstep(act_batch: Callable[[Any], Any], make_env: Callable[[], Any],
                          seeds: Iterable[int], close: bool = False) -> Episodes:
    """:func:`run_episodes`, with one env per seed stepped side by side: ``act_batch`` gets the
    live episodes' observations stacked (a dict of ``[B, ...]`` arrays, or ``[B, ...]``) and
    returns ``[B, action]``. Each env keeps its own seeded state, so every episode is the one
    :func:`run_episodes` would run with the same (per-row) actions; a network is called once per
    step of the longest episode instead of once per step of every episode. ``close``: close
    the envs at the end (gymnasium envs made for this call).
    """
    seeds = [int(s) for s in seeds]
    envs = [make_env() for _ in seeds]
    obs, infos = [], []
    for env, s in zip(envs, seeds):
        o, info = env.reset(seed=s)
        obs.append(o)
        infos.append(info)
    n = len(seeds)
    returns, lengths, terminated = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, bool)
    comps: list[np.ndarray | None] = [None] * n
    live = list(range(n))
    while live:
        first = obs[live[0]]
        batch = ({k: np.stack([obs[i][k] for i in live]) for k in first} if isinstance(first, dict)
                 else np.stack([obs[i] for i in live]))
        actions = np.asarray(act_batch(batch))
        still = []
        for row, i in enumerate(live):
            obs[i], r, term, trunc, step_info = envs[i].step(actions[row])
            returns[i] += float(r)
            lengths[i] += 1
            if "reward_components" in step_info:
                c = np.asarray(step_info["reward_components"], np.float64)
                comps[i] = c if comps[i] is None else comps[i] + c
            if term or trunc:
                terminated[i] = bool(term)
            else:
                still.append(i)
        live = still
    if close:
        for env in envs:
            env.close()
    has_comps = n > 0 and all(c is not None for c in comps)
    return Episodes(returns=returns, lengths=lengths, terminated=terminated,
                    components=np.stack(comps) if has_comps else None, reset_infos=infos)
