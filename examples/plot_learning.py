"""Learning curves and the Q decomposition of a few recommendations, as PNG files.

    python examples/plot_learning.py [--out plots/] [--smoke]

Writes ``learning_curves.png`` (phase-1 and phase-2 losses, Q, evaluation return per
iteration) and ``q_decomposition.png`` (per-component share of Q for five players).
"""

from __future__ import annotations

import os
import tempfile

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from _tiny import TINY, parse_args  # noqa: E402

from rllib_fastq.checkpoints import load_module  # noqa: E402
from rllib_fastq.envs import PlayerPlatformEnv  # noqa: E402
from rllib_fastq.spec import PLAYER_PLATFORM_DIR, load_spec  # noqa: E402
from rllib_fastq.train import train  # noqa: E402

args = parse_args(__doc__, **{"--out": dict(default="plots", help="directory for the PNG files")})
os.makedirs(args.out, exist_ok=True)

# The main job's spec (fastq train), smaller in smoke mode.
overrides = ["evaluation.interval=1", "evaluation.episodes=10", "run.final_eval_episodes=20"]
if args.smoke:
    overrides = ["evaluation.interval=1", "evaluation.episodes=2", "run.final_eval_episodes=5",
                 "dataset_num_iters_per_learner=10", "pretrain_steps=20", "exploration_ramp_steps=40",
                 *(f"{k}={v}" for k, v in TINY.items())]
data = [str(PLAYER_PLATFORM_DIR / "heldout.parquet")] if args.smoke else None
spec = load_spec(None, overrides, data=data)
summary = train(spec, iterations=4 if args.smoke else spec.run.iterations,
                out=tempfile.mkdtemp(prefix="fastq_plot_"), overwrite=True)
hist = summary["history"]
it = np.array([h["iteration"] for h in hist])

fig, axes = plt.subplots(1, 4, figsize=(16, 3.5))
for ax, keys, title in zip(axes, (("expert_loss", "adversary_loss"), ("td_loss", "actor_loss"), ("q_mean",),
                                  ("eval_return",)),
                           ("phase 1: experts, balancing", "phase 2: critic, actor", "mean Q", "evaluation return")):
    for k in keys:
        pts = [(h["iteration"], h[k]) for h in hist if h.get(k) is not None]
        if pts:
            ax.plot(*zip(*pts), marker="o", label=k)
    if title == "evaluation return":
        ax.axhline(summary["evaluation"]["best_arm_return"], color="gray", ls="--", label="best logging arm")
    ax.set_title(title), ax.set_xlabel("iteration"), ax.legend(fontsize=7)
fig.tight_layout()
curves = os.path.join(args.out, "learning_curves.png")
fig.savefig(curves, dpi=80)

module = load_module(summary["checkpoint"])
env = PlayerPlatformEnv()
obs = [env.reset(seed=s)[0] for s in range(5)]
batch = {k: torch.as_tensor(np.stack([o[k] for o in obs])) for k in ("temporal", "static")}
exp = module.explain(batch, "best")
names = list(exp["components"])
fig, ax = plt.subplots(figsize=(7, 3.5))
bottom_pos, bottom_neg = np.zeros(5), np.zeros(5)
for n in names:
    v = exp["components"][n].numpy()
    ax.bar(range(5), v, bottom=np.where(v >= 0, bottom_pos, bottom_neg), label=n)
    bottom_pos, bottom_neg = bottom_pos + np.maximum(v, 0), bottom_neg + np.minimum(v, 0)
ax.plot(range(5), exp["q"].numpy(), "k*", ms=10, label="Q")
ax.set_xticks(range(5), [f"player {s}\narm {int(a)}" for s, a in enumerate(exp["policy_id"])])
ax.set_title("Q of the recommended action, per reward component"), ax.legend(fontsize=7)
fig.tight_layout()
decomp = os.path.join(args.out, "q_decomposition.png")
fig.savefig(decomp, dpi=80)
print(f"final return {summary['evaluation']['mean_return']:.3f} "
      f"(best logging arm {summary['evaluation']['best_arm_return']:.3f})")
print(f"wrote {curves} and {decomp}")
