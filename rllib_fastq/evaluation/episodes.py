"""The one rollout loop: every online evaluation (the player-platform simulator, any gymnasium env,
the SAC behaviour-policy trainer, ``fastq evaluate``) runs its episodes through :func:`run_episodes`
(one env, one episode after another) or :func:`run_episodes_lockstep` (one env per episode, side by
side, for batched policies); both are the same loop, ``_run``.

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
    def act_one(batch: Any) -> np.ndarray:  # the one env's observation, as a batch of one
        obs = {k: v[0] for k, v in batch.items()} if isinstance(batch, dict) else batch[0]
        return np.asarray(act(obs))[None]

    return _run(act_one, [env], seeds)


def run_episodes_lockstep(act_batch: Callable[[Any], Any], make_env: Callable[[], Any],
                          seeds: Iterable[int], close: bool = False) -> Episodes:
    """:func:`run_episodes`, with one env per seed stepped side by side: ``act_batch`` gets the
    live episodes' observations stacked (a dict of ``[B, ...]`` arrays, or ``[B, ...]``) and
    returns ``[B, action]``. Each env keeps its own seeded state, so every episode is the one
    :func:`run_episodes` would run with the same (per-row) actions; a network is called once per
    step of the longest episode instead of once per step of every episode. ``close``: close
    the envs at the end (gymnasium envs made for this call).
    """
    seeds = list(seeds)
    envs = [make_env() for _ in seeds]
    try:
        return _run(act_batch, envs, seeds)
    finally:
        if close:
            for env in envs:
                env.close()


def _run(act_batch: Callable[[Any], Any], envs: list[Any], seeds: Iterable[int]) -> Episodes:
    """The rollout loop: the episodes of ``seeds``, in order, on the ``envs`` side by side (an env
    whose episode ends starts the next seed), ``act_batch`` called once per step on the stacked
    observations of the envs with an episode under way."""
    seeds = [int(s) for s in seeds]
    n = len(seeds)
    returns, lengths, terminated = np.zeros(n), np.zeros(n, np.int64), np.zeros(n, bool)
    comps: list[np.ndarray | None] = [None] * n
    infos: list[dict[str, Any]] = [{}] * n
    obs: dict[int, Any] = {}
    episode_of: dict[int, int] = {}  # env index → the episode it runs (insertion order: the batch rows)
    started = 0

    def start(e: int) -> None:
        nonlocal started
        obs[e], infos[started] = envs[e].reset(seed=seeds[started])
        episode_of[e] = started
        started += 1

    for e in range(min(len(envs), n)):
        start(e)
    while episode_of:
        live = list(episode_of)
        first = obs[live[0]]
        batch = ({k: np.stack([obs[e][k] for e in live]) for k in first} if isinstance(first, dict)
                 else np.stack([obs[e] for e in live]))
        actions = np.asarray(act_batch(batch))
        for row, e in enumerate(live):
            i = episode_of[e]
            obs[e], r, term, trunc, step_info = envs[e].step(actions[row])
            returns[i] += float(r)
            lengths[i] += 1
            if "reward_components" in step_info:
                c = np.asarray(step_info["reward_components"], np.float64)
                comps[i] = c if comps[i] is None else comps[i] + c
            if term or trunc:
                terminated[i] = bool(term)
                del episode_of[e]
                if started < n:
                    start(e)
    has_comps = n > 0 and all(c is not None for c in comps)
    return Episodes(returns=returns, lengths=lengths, terminated=terminated,
                    components=np.stack(comps) if has_comps else None, reset_infos=infos)
