"""A Tune search over FAST-Q's settings from a tune_configs YAML file; prints the best trial.

    python examples/tune_search.py            # tune_configs/player_platform.yaml (~40 min on 2 CPUs)
    python examples/tune_search.py --smoke    # tune_configs/smoke.yaml: 2 tiny trials (~1.5 min)

The same from the shell: ``fastq tune tune_configs/smoke.yaml``; resume with ``--resume DIR``.
"""

from __future__ import annotations

import argparse
import os
import tempfile

from rllib_fastq.evaluation.online import evaluate_checkpoint
from rllib_fastq.spec import ROOT, ensure_ray, load_spec
from rllib_fastq.tuning import tune_search

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--smoke", action="store_true", default=os.environ.get("FASTQ_SMOKE") == "1")
parser.add_argument("--storage", default=None, help="where the experiment goes (default: a temp dir)")
args = parser.parse_args()

yaml_file = ROOT / "tune_configs" / ("smoke.yaml" if args.smoke else "player_platform.yaml")
storage = args.storage or tempfile.mkdtemp(prefix="fastq_tune_")
# A spec is the YAML plus overrides, written like `--override` on the command line.
spec = load_spec(str(yaml_file), [f"tune.storage_path={storage}"], for_tune=True)
ensure_ray()  # 2 CPUs on 127.0.0.1
best = tune_search(spec)

print(f"best trial: {best['best_trial']}")
print(f"best {best['metric']}: {best['best_value']:.3f} with {best['best_config']}")
print(f"best checkpoint: {best['best_checkpoint']}")
res = evaluate_checkpoint(best["best_checkpoint"], episodes=5 if args.smoke else 300)
print(f"re-evaluated on {res['num_episodes']} players: mean return {res['mean_return']:.3f} "
      f"(best logging arm {res['best_arm_return']:.3f})")
print(f"results: {best['experiment']}/best.json")
