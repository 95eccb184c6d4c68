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
