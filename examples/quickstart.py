"""Quick start: train FAST-Q on the shipped player-platform data, evaluate it, save it, reload it.

    python examples/quickstart.py            # ~3-5 min on 2 CPUs
    python examples/quickstart.py --smoke    # < 1 min (tiny networks, few steps)

The same run from the shell: ``fastq train``.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile

import ray

import rllib_fastq  # noqa: F401  (registers "FASTQ" and the simulator)
from rllib_fastq.checkpoints import load_module
from rllib_fastq.envs import evaluate_policy
from rllib_fastq.evaluation.rollout import policy_fn
from rllib_fastq.local_ray import init_local_ray
from rllib_fastq.spec import PLAYER_PLATFORM_DIR, build_config, load_spec

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", default=os.environ.get("FASTQ_SMOKE") == "1")
parser.add_argument("--out", default=None, help="checkpoint directory (default: a temp dir)")
args = parser.parse_args()

init_local_ray(num_cpus=2, log_to_driver=False)  # Ray on 127.0.0.1 only
card = json.loads((PLAYER_PLATFORM_DIR / "card.json").read_text())
data = PLAYER_PLATFORM_DIR / ("heldout.parquet" if args.smoke else "train.parquet")
# The main job's settings (tune_configs/player_platform.yaml, what `fastq train` runs), smaller in smoke
# mode; no evaluation while training here: the module is played in the simulator at the end.
smoke = ["dataset_num_iters_per_learner=10", "pretrain_steps=20", "exploration_ramp_steps=40", "br_dim=16",
         "expert_hiddens=[32, 16]", "adversary_hiddens=[32]", "actor_hiddens=[32, 32]", "critic_hiddens=[32, 32]",
         "lstm_hidden=16", "static_hidden=8"]
spec = load_spec(None, ["evaluation.interval=0", *(smoke if args.smoke else [])], data=[str(data)])
iterations, episodes = (3, 10) if args.smoke else (spec.run.iterations, spec.run.final_eval_episodes)
config = build_config(spec)
algo = config.build_algo()
for _ in range(iterations):
    r = algo.train()["learners"]["default_policy"]
    losses = (f"expert_loss {r['expert_loss']:.3f}" if r["phase"] == 1 else
              f"td_loss {r['td_loss']:.4f} q_mean {r['q_mean']:.3f}")
    print(f"iteration {algo.iteration}: phase {int(r['phase'])}, {losses}")

out = args.out or tempfile.mkdtemp(prefix="fastq_quickstart_")
algo.save_to_path(out)
algo.stop()
print(f"saved checkpoint to {out}")

# Reload only the module (no data, no Ray needed) and play it in the simulator against the
# players the logging arms were scored on (the card's evaluation seed).
module = load_module(out)
res = evaluate_policy(policy_fn(module, "best"), num_episodes=episodes, seed=card["online"]["eval_seed"])
arms = {name: a["mean_return"] for name, a in card["online"]["arms"].items()}
print(f"FAST-Q ('best' arm): mean return {res['mean_return']:.3f} over {episodes} players; "
      + ", ".join(f"{k} {v:.2f}" for k, v in res["components"].items()))
print("logging arms: " + ", ".join(f"{k} {v:.3f}" for k, v in arms.items())
      + f"; best arm {card['online']['best_arm']} {card['online']['best_arm_return']:.3f}")
ray.shutdown()
