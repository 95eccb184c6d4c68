"""Tabular logs (pandas, one row per user-step) → FAST-Q: ``from_dataframe``, train, explain.

    python examples/pandas_logs.py [--smoke]

The logs here are synthetic: two campaign policies ("steady", "bold") logged per user, three
features, one continuous action, two reward components (revenue, cost).
"""

from __future__ import annotations

import os
import tempfile

import numpy as np
import pandas as pd
import ray
import torch
from _tiny import parse_args, tiny_config

from rllib_fastq.data.convert import from_dataframe
from rllib_fastq.data.io import write_transitions
from rllib_fastq.local_ray import init_local_ray

args = parse_args(__doc__)
users, horizon, iterations, steps = (40, 10, 3, 10) if args.smoke else (400, 20, 12, 200)

rng, rows = np.random.default_rng(0), []
for u in range(users):
    arm = "steady" if u % 2 else "bold"
    x = rng.normal(size=3)
    for t in range(horizon):
        a = float(np.clip((0.2 if arm == "steady" else 0.8) * np.tanh(x[0]) + rng.normal(0, 0.2), -1, 1))
        revenue, cost = max(0.0, 1 + a * x[1] + rng.normal(0, 0.1)), a**2
        rows.append(dict(user=f"u{u}", step=t, f0=x[0], f1=x[1], f2=x[2], discount=a, revenue=revenue,
                         cost=cost, campaign=arm))
        x = 0.9 * x + rng.normal(0, 0.3, 3)
logs = pd.DataFrame(rows)
print(logs.head(3).to_string())

tr = from_dataframe(logs, user_col="user", time_col="step", feature_cols=["f0", "f1", "f2"],
                    action_cols=["discount"], reward_component_cols=["revenue", "cost"],
                    reward_weights=[1.0, -0.5], arm_col="campaign")
path = write_transitions(tr, os.path.join(tempfile.mkdtemp(), "logs.parquet"))
print(f"{len(tr)} transitions, arms {tr.meta.extra['arm_names']} -> {path}")

init_local_ray(num_cpus=2, log_to_driver=False)  # Ray on 127.0.0.1 only
algo = tiny_config(path, num_policies=2, steps=steps, reward_weights=[1.0, -0.5],
                   reward_component_names=["revenue", "cost"]).build_algo()
for _ in range(iterations):
    r = algo.train()["learners"]["default_policy"]
print(f"trained: phase {int(r['phase'])}, td_loss {r['td_loss']:.4f}, q_mean {r['q_mean']:.3f}")

# Recommendations for three users, with Q split per reward component (they sum to Q).
module = algo.get_module()
first_steps = np.flatnonzero(tr.t == 0)[:3]
exp = module.explain(torch.from_numpy(tr.obs[first_steps].copy()), "best")
for i, row in enumerate(first_steps):
    parts = ", ".join(f"{k} {v[i]:.3f}" for k, v in exp["components"].items())
    print(f"user {tr.eps_id[row]}: arm {tr.meta.extra['arm_names'][int(exp['policy_id'][i])]}, "
          f"discount {exp['actions'][i, 0]:.3f}, Q {exp['q'][i]:.3f} = {parts}")
algo.stop()
ray.shutdown()
