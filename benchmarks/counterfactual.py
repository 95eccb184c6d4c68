"""Counterfactual ranking quality: does a critic rank the arms' actions in a held-out state the way
the simulator does?

For each held-out state (a player partway through an episode, routed and served by a logging
arm as in the data), every arm's action ``a_k`` is scored twice:

* truth: discounted (γ) Monte-Carlo return of taking ``a_k`` and then following a fixed
  continuation policy, from deep copies of the simulator state; rollout ``j`` re-seeds the copy's
  RNG with the same seed for every action (common random numbers);
* the critic's ``Q1(s, a_k)`` (FAST-Q: ``critic(cat(b_p(s), a_k))`` with ``p`` the logged arm).

Two continuations: ``switch`` (keep following arm ``k``: which arm should this player be on from
now on) and ``one_step`` (return to the logged arm ``p``: which action is best right now).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
import torch

from rllib_fastq.data import schema
from rllib_fastq.envs import PlayerPlatformEnv, Router, arm_actions

K = 3


def make_states(num_states: int, seed: int, overlap: float = 0.2, noise: float = 0.15,
                max_t: int = 12) -> list[dict[str, Any]]:
    """Held-out states: player ``seed + i``, routed as in the data, served by its arm (with the
    logging noise) for a random 0..max_t steps; episodes that end earlier are skipped."""
    rng = np.random.default_rng(seed)
    states: list[dict[str, Any]] = []
    i = 0
    while len(states) < num_states:
        env = PlayerPlatformEnv()
        obs, _ = env.reset(seed=seed + i)
        i += 1
        p, _ = Router("aligned", num_arms=K, overlap=overlap)(obs, rng)
        t_stop, done = int(rng.integers(0, max_t + 1)), False
        for _ in range(t_stop):
            a = np.clip(arm_actions(obs, K)[p] + noise * rng.standard_normal(3), -1, 1)
            obs, _, term, trunc, _ = env.step(a)
            if term or trunc:
                done = True
                break
        if not done:
            states.append({"env": env, "obs": obs, "flat": schema.flatten_obs(obs), "arm": p,
                           "actions": arm_actions(obs, K)})
    return states


def _rollout(env: PlayerPlatformEnv, first: np.ndarray, follow: int, gamma: float, seed: int,
             components: bool = False) -> float | np.ndarray:
    """The γ-discounted return (or, with ``components``, the per-component sums [C], discounted
    likewise: ``info["reward_components"]``) of ``first`` and then arm ``follow``'s actions."""
    env = copy.deepcopy(env)
    env.np_random = np.random.default_rng(seed)
    action, total, disc = first, 0.0, 1.0
    while True:
        obs, r, term, trunc, info = env.step(action)
        total = total + disc * (np.asarray(info["reward_components"], np.float64) if components else r)
        disc *= gamma
        if term or trunc:
            return total
        action = arm_actions(obs, K)[follow]


def rollout_seed(seed: int, state: int, rollout: int) -> int:
    """Seed of rollout ``rollout`` from state ``state``: shared across arms (common random numbers,
    so arms are compared on the same noise) but not across states. A seed shared by every state
    gives all of them the same draws (seed 7's first rollout churned most players within two
    steps), so the mean over a few rollouts was far from the online value."""
    return seed + 7919 * rollout + 104_729 * state


def true_values(states: list[dict[str, Any]], gamma: float, rollouts: int, seed: int) -> dict[str, np.ndarray]:
    """``{"switch": [N, K], "one_step": [N, K]}`` Monte-Carlo action values."""
    out = {"switch": np.zeros((len(states), K)), "one_step": np.zeros((len(states), K))}
    for i, st in enumerate(states):
        for k in range(K):
            for name, follow in (("switch", k), ("one_step", st["arm"])):
                out[name][i, k] = np.mean([_rollout(st["env"], st["actions"][k], follow, gamma,
                                                    rollout_seed(seed, i, j)) for j in range(rollouts)])
    return out


def true_component_values(states: list[dict[str, Any]], rollouts: int, seed: int) -> np.ndarray:
    """Undiscounted per-component return of staying on each arm (the ``switch`` continuation),
    [N, K, C]; common random numbers across arms (``rollout_seed``)."""
    return np.stack([np.stack([np.mean([_rollout(st["env"], st["actions"][k], k, 1.0, rollout_seed(seed, i, j),
                                                 components=True) for j in range(rollouts)], 0)
                               for k in range(K)]) for i, st in enumerate(states)])


def fastq_q1(module: Any, states: list[dict[str, Any]]) -> np.ndarray:
    """FAST-Q's ``Q1(b_p(s), a_k)`` [N, K], ``p`` the arm that served the state."""
    obs = {k: torch.as_tensor(np.stack([s["obs"][k] for s in states]), dtype=torch.float32)
           for k in ("temporal", "static")}
    arms = torch.as_tensor([s["arm"] for s in states])
    acts = torch.as_tensor(np.stack([s["actions"] for s in states]), dtype=torch.float32)  # [N, K, 3]
    with module.frozen_representations():
        b, _ = module.representations(obs)
        b_p = b[torch.arange(len(states)), arms]  # [N, br]
        q = [module.critic(torch.cat([b_p, acts[:, k]], -1), with_weights=False)[0][:, 0] for k in range(K)]
    return torch.stack(q, -1).numpy()


def td3bc_q1(td3bc: Any, states: list[dict[str, Any]]) -> np.ndarray:
    flat = np.stack([s["flat"] for s in states])
    return np.stack([td3bc.q1(flat, np.stack([s["actions"][k] for s in states])) for k in range(K)], -1)


def _rank(x: np.ndarray) -> np.ndarray:
    order = np.argsort(x, kind="stable")
    r = np.empty(len(x))
    r[order] = np.arange(len(x))
    return r


def _spearman(a: np.ndarray, b: np.ndarray) -> float:
    ra, rb = _rank(a), _rank(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


def ranking_metrics(pred: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Within-state pairwise accuracy, top-1 accuracy, mean within-state Spearman, and the
    Spearman over all (state, action) pairs."""
    pairs = correct = 0
    for i in range(pred.shape[0]):
        for a in range(K):
            for b in range(a + 1, K):
                pairs += 1
                correct += (pred[i, a] - pred[i, b]) * (truth[i, a] - truth[i, b]) > 0
    per_state = [_spearman(pred[i], truth[i]) for i in range(pred.shape[0])]
    return {
        "pairwise_accuracy": float(correct / pairs),
        "top1_accuracy": float(np.mean(pred.argmax(1) == truth.argmax(1))),
        "spearman_within_state": float(np.nanmean(per_state)),
        "spearman_global": _spearman(pred.ravel(), truth.ravel()),
    }
