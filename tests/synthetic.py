"""Tiny synthetic multi-arm datasets for fast learner tests (no simulator needed)."""

from __future__ import annotations

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.transitions import Transitions

TINY_NETS = dict(actor_hiddens=[16], critic_hiddens=[16], expert_hiddens=[16], br_dim=8,
                 adversary_hiddens=[16], lstm_hidden=8, static_hidden=4)


def make_synthetic(n: int = 600, *, arm_shares=(0.7, 0.2, 0.1), obs_dim: int = 4, action_dim: int = 2,
                   components: int = 3, seed: int = 0, with_experts: bool = True) -> Transitions:
    """Episodes of 10 steps; arm k logs an action ``tanh(W_k s)``; rewards have ``components`` parts."""
    rng = np.random.default_rng(seed)
    k = len(arm_shares)
    policy = rng.choice(k, size=n // 10, p=np.asarray(arm_shares) / sum(arm_shares)).repeat(10)
    obs = rng.normal(size=(n, obs_dim)).astype(np.float32)
    new_obs = np.roll(obs, -1, axis=0)
    w = rng.normal(size=(k, obs_dim, action_dim))
    expert = np.tanh(np.einsum("ni,kid->nkd", obs, w)).astype(np.float32)
    actions = expert[np.arange(n), policy]
    rc = rng.normal(size=(n, components)).astype(np.float32)
    t = np.tile(np.arange(10), n // 10)
    return Transitions(
        obs=obs, actions=actions, rewards=rc.sum(1), new_obs=new_obs,
        terminateds=t == 9, truncateds=np.zeros(n, bool), eps_id=(np.arange(n) // 10).astype(str),
        t=t.astype(np.int64), policy_id=policy.astype(np.int64), reward_components=rc,
        expert_actions=expert if with_experts else None,
        expert_actions_mask=np.ones((n, k), bool) if with_experts else None,
        meta=schema.DatasetMeta(obs_layout=schema.ObsLayout(static=obs_dim), num_policies=k),
    )
