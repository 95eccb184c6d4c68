"""Regression targets of the arm values: per-row Monte-Carlo returns and bootstrap weights."""

from __future__ import annotations

import numpy as np


def returns_to_go(rewards: np.ndarray, eps_id: np.ndarray, t: np.ndarray, gamma: float = 1.0) -> np.ndarray:
    """``G_i = Σ_{j ≥ i, same episode} γ^(t_j − t_i) r_j`` for every row, in the rows' own order.

    Rows may come in any order: they are grouped by ``eps_id`` and ordered by ``t``. An episode cut
    short in the logs (truncated, or a file split) gives the return of what was logged.
    """
    rewards = np.asarray(rewards, np.float64)
    n = rewards.shape[0]
    _, ep = np.unique(np.asarray(eps_id), return_inverse=True)
    order = np.lexsort((-np.asarray(t), ep))  # by episode, latest step first
    out = np.empty(n, np.float64)
    g, prev_ep = 0.0, -1
    for i in order:
        if ep[i] != prev_ep:
            g, prev_ep = 0.0, ep[i]
        g = rewards[i] + gamma * g
        out[i] = g
    return out.astype(np.float32)


def bootstrap_weights(eps_id: np.ndarray, members: int, seed: int) -> np.ndarray:
    """Poisson(1) weights ``[N, members]``, one draw per episode and member (rows of an episode
    share it): each ensemble member sees its own bootstrap resample of the logged players."""
    _, ep = np.unique(np.asarray(eps_id), return_inverse=True)
    draws = np.random.default_rng([seed, 7]).poisson(1.0, size=(int(ep.max(initial=0)) + 1, members))
    return draws[ep].astype(np.float32)


def episode_starts(eps_id: np.ndarray, t: np.ndarray) -> np.ndarray:
    """True for the first logged row (smallest ``t``) of each episode."""
    _, ep = np.unique(np.asarray(eps_id), return_inverse=True)
    t = np.asarray(t)
    first_t = np.full(int(ep.max(initial=0)) + 1, np.iinfo(np.int64).max)
    np.minimum.at(first_t, ep, t)
    return t == first_t[ep]
