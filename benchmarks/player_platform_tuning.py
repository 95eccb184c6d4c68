"""Choose α (FAST-Q, TD3+BC) and the GRL λ (FAST-Q) on the player platform, on TUNING players only.

    python -m benchmarks.player_platform_tuning [--alphas 2.5,1.0,0.4,0.1] [--grl-lambdas 0,0.1,1,5,20] [--seeds 2]

Two stages, coordinate-wise:

1. α, TD3+BC's weight of the Q term against the BC term, for FAST-Q (at the default λ = 0.1) and
   for TD3+BC. On this data both actors drift far from the logged arms at α = 2.5 (FAST-Q's
   actions sit at the action bounds) while pure behaviour cloning is near the oracle.
2. λ of FAST-Q's gradient-reversal layer, at the α of stage 1. ``benchmarks/player_platform_diagnostics.py``
   shows that at λ = 0.1 the critic's "best"-arm choice barely follows the player's segment.

Protocol: the budget and settings of ``player_platform_quality.py``; training seeds 100.. (the
quality benchmark uses 0..4); each final policy scored on ``--episodes`` tuning players seeded
50_000.. (held-out evaluation players are 10_000.., counterfactual states 30_000..: never used
here). The best mean return per stage is written to ``benchmarks/results/player_platform_tuning.json``
(``chosen``), which the quality benchmark's "(tuned ...)" rows read. Reruns skip finished runs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
import torch

from benchmarks import baselines
from benchmarks.player_platform_common import FULL, GAMMA, HIDDENS, TRAIN, TUNING_OUT, evaluate, fastq_config

TUNING_SEED, TRAIN_SEED = 50_000, 100
DEFAULT_GRL_LAMBDA = 0.1
OUT = TUNING_OUT


def tuning_return(fn, flat: bool, episodes: int) -> float:
    return evaluate(fn, flat, episodes, seed=TUNING_SEED)["mean_return"]


def run_fastq(settings: dict[str, float], seed: int, episodes: int) -> float:
    from rllib_fastq.evaluation.rollout import policy_fn

    algo = fastq_config(seed, FULL, settings).build_algo()
    for _ in range(FULL["total"] // FULL["spi"]):
        algo.train()
    ret = tuning_return(policy_fn(algo.get_module(), "best"), False, episodes)
    algo.stop()
    return ret


def run_td3bc(data: dict, alpha: float, seed: int, episodes: int) -> float:
    agent = baselines.NormalizedTD3BC(data, hiddens=HIDDENS, gamma=GAMMA, seed=seed, alpha=alpha)
    agent.train(FULL["total"])
    return tuning_return(agent.policy_fn(), True, episodes)


class Tuning:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.seeds = range(TRAIN_SEED, TRAIN_SEED + args.seeds)
        self.res = json.loads(OUT.read_text()) if OUT.exists() else {}
        self.runs = self.res.setdefault("runs", {})
        self.res["meta"] = {"command": "python -m benchmarks.player_platform_tuning " + " ".join(sys.argv[1:]),
                            "tuning_seed": TUNING_SEED, "train_seeds": list(self.seeds),
                            "episodes": args.episodes, "budget": FULL}
        self.data = baselines.load_flat(TRAIN)

    def mean(self, method: str, settings: dict[str, float]) -> tuple[float, float]:
        """Mean and std over training seeds of ``method`` at ``settings`` (runs the missing seeds)."""
        vals = []
        for seed in self.seeds:
            key = "|".join([method, *(f"{k}={v}" for k, v in settings.items()), f"seed={seed}"])
            if key not in self.runs:
                t = time.perf_counter()
                self.runs[key] = run_fastq(settings, seed, self.args.episodes) if method == "FAST-Q" \
                    else run_td3bc(self.data, settings["alpha"], seed, self.args.episodes)
                print(f"[{time.strftime('%H:%M:%S')}] {key}: {self.runs[key]:.3f} ({time.perf_counter() - t:.0f}s)",
                      flush=True)
                OUT.write_text(json.dumps(self.res, indent=1))
            vals.append(self.runs[key])
        return float(np.mean(vals)), float(np.std(vals, ddof=1)) if len(vals) > 1 else 0.0

    def run(self) -> None:
        alphas = [float(a) for a in self.args.alphas.split(",")]
        lambdas = [float(g) for g in self.args.grl_lambdas.split(",")]
        print("\nStage 1 (FAST-Q at λ = 0.1):\n\n| α | FAST-Q (tuning players) | TD3+BC (tuning players) |")
        print("|---|---|---|")
        stage1: dict[str, dict[float, float]] = {"FAST-Q": {}, "TD3+BC": {}}
        for alpha in alphas:
            fq = self.mean("FAST-Q", {"alpha": alpha, "grl_lambda": DEFAULT_GRL_LAMBDA})
            td = self.mean("TD3+BC", {"alpha": alpha})
            stage1["FAST-Q"][alpha], stage1["TD3+BC"][alpha] = fq[0], td[0]
            print(f"| {alpha} | {fq[0]:.2f} ± {fq[1]:.2f} | {td[0]:.2f} ± {td[1]:.2f} |")
        alpha_fq = max(stage1["FAST-Q"], key=stage1["FAST-Q"].get)
        print(f"\nStage 2 (FAST-Q at α = {alpha_fq}):\n\n| GRL λ | FAST-Q (tuning players) |\n|---|---|")
        stage2 = {}
        for lam in lambdas:
            m, sd = self.mean("FAST-Q", {"alpha": alpha_fq, "grl_lambda": lam})
            stage2[lam] = m
            print(f"| {lam} | {m:.2f} ± {sd:.2f} |")
        self.res["chosen"] = {
            "FAST-Q": {"alpha": alpha_fq, "grl_lambda": max(stage2, key=stage2.get)},
            "TD3+BC": {"alpha": max(stage1["TD3+BC"], key=stage1["TD3+BC"].get)},
        }
        print(f"\nchosen (best mean on tuning players): {self.res['chosen']}")
        OUT.write_text(json.dumps(self.res, indent=1))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", default="2.5,1.0,0.4,0.1")
    p.add_argument("--grl-lambdas", default="0,0.1,1,5,20")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    Tuning(args).run()


if __name__ == "__main__":
    main()
