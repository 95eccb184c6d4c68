"""A small two-behaviour-policy Pendulum-v1 dataset for learning tests.

Arm 0 is an energy-pumping swing-up controller with action noise (good), arm 1 acts
uniformly at random (poor); each episode is logged by one arm, so the data is multi-policy.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.io import write_transitions
from rllib_fastq.data.transitions import Transitions


def swing_up_action(obs: np.ndarray) -> np.ndarray:
    """Energy pumping far from the top, PD control near it (Pendulum-v1: g = 10, m = l = 1)."""
    cos, sin, thdot = obs
    theta = np.arctan2(sin, cos)
    if cos > 0.85:
        u = -(10.0 * theta + 2.0 * thdot)
    else:
        energy = 0.5 * thdot**2 / 3.0 + 5.0 * (cos - 1.0) / 1.5  # 0 at the top, at rest
        u = -2.0 * np.sign(thdot + 1e-6) * np.sign(energy) if abs(energy) > 0.05 else 0.0
    return np.clip(np.array([u], np.float32), -2.0, 2.0)


def behaviour_action(arm: int, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if arm == 0:
        return np.clip(swing_up_action(obs) + rng.normal(0.0, 0.4, 1), -2.0, 2.0).astype(np.float32)
    return rng.uniform(-2.0, 2.0, 1).astype(np.float32)


def make_pendulum_dataset(episodes: int = 40, seed: int = 0, good_share: float = 0.5) -> Transitions:
    """``episodes`` Pendulum-v1 episodes (200 steps), each logged by arm 0 or arm 1."""
    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(seed)
    cols: dict[str, list] = {k: [] for k in ("obs", "actions", "rewards", "new_obs", "terminateds",
                                             "truncateds", "eps_id", "t", "policy_id")}
    for ep in range(episodes):
        arm = 0 if ep < episodes * good_share else 1
        obs, _ = env.reset(seed=seed * 10_000 + ep)
        done, t = False, 0
        while not done:
            a = behaviour_action(arm, obs, rng)
            nxt, r, term, trunc, _ = env.step(a)
            for k, v in zip(cols, (obs, a, r, nxt, term, trunc, f"{seed}-{ep}", t, arm)):
                cols[k].append(v)
            obs, t, done = nxt, t + 1, term or trunc
    arr = {k: np.asarray(v) for k, v in cols.items()}
    return Transitions(
        obs=arr["obs"].astype(np.float32), actions=arr["actions"].astype(np.float32),
        rewards=arr["rewards"].astype(np.float32), new_obs=arr["new_obs"].astype(np.float32),
        terminateds=arr["terminateds"], truncateds=arr["truncateds"], eps_id=arr["eps_id"],
        t=arr["t"].astype(np.int64), policy_id=arr["policy_id"].astype(np.int64),
        meta=schema.DatasetMeta(obs_layout=schema.ObsLayout(static=3), num_policies=2),
    )


def episode_returns(tr: Transitions) -> dict[int, float]:
    """Mean undiscounted return per arm."""
    out = {}
    for arm in np.unique(tr.policy_id):
        sel = tr.policy_id == arm
        eps = np.unique(tr.eps_id[sel])
        out[int(arm)] = float(tr.rewards[sel].sum() / len(eps))
    return out


if __name__ == "__main__":
    import sys

    tr = make_pendulum_dataset()
    print(len(tr), episode_returns(tr), float(tr.rewards.sum() / len(np.unique(tr.eps_id))))
    if len(sys.argv) > 1:
        write_transitions(tr, sys.argv[1], overwrite=True)
