"""Offline metrics of a trained module on a (held-out) dataset: no simulator needed.

The TD error uses the learner's own target (:func:`rllib_fastq.torch.losses.td_target`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from rllib_fastq.data.io import read_transitions
from rllib_fastq.torch.losses import td_target


def offline_metrics(module: Any, data: Sequence[str], gamma: float, max_rows: int = 5000) -> dict[str, Any]:
    """The logged arm's action MSE (actor and expert), mean Q and TD RMSE on up to ``max_rows`` rows."""
    tr = read_transitions(list(data))
    idx = np.random.default_rng(0).permutation(len(tr))[:max_rows]
    tr = tr.take(np.sort(idx))
    layout = module.layout

    def obs(x: np.ndarray) -> Any:
        if layout.temporal is None:
            return torch.as_tensor(x, dtype=torch.float32)
        return {k: torch.as_tensor(v) for k, v in layout.unflatten(x).items()}

    arm = torch.as_tensor(tr.policy_id).long().clamp(max=module.num_policies - 1)
    rows = torch.arange(len(tr))
    a = torch.as_tensor(tr.actions, dtype=torch.float32)
    with torch.no_grad(), module.frozen_representations():
        b, a_hat = module.representations(obs(tr.obs))
        b_next, _ = module.representations(obs(tr.new_obs))
        b, b_next, a_hat = b[rows, arm], b_next[rows, arm], a_hat[rows, arm]
        pi = module.actor(b)
        q = module.critic(torch.cat([b, a], -1), with_weights=False)[0][:, 0]
        q_next = module.critic(torch.cat([b_next, module.actor(b_next)], -1), with_weights=False)[0]
    r = torch.as_tensor(tr.rewards, dtype=torch.float32)
    done = torch.as_tensor(tr.terminateds, dtype=torch.float32)
    td = q - td_target(r, done, q_next, gamma)
    return {"rows": len(tr), "gamma": gamma, "actor_action_mse": float(((pi - a) ** 2).mean()),
            "expert_action_mse": float(((a_hat - a) ** 2).mean()), "q_mean": float(q.mean()),
            "td_rmse": float(td.pow(2).mean().sqrt())}
