"""Choose TD3+BC's α for FAST-Q and for TD3+BC on the player platform, on TUNING players only.

    python benchmarks/player_platform_tuning.py [--alphas 2.5,1.0,0.4,0.1] [--seeds 2]

Why α: on this data both actors drift far from the logged arms (FAST-Q's actions sit at the action
bounds after 500 phase-2 steps) while pure behaviour cloning is near the oracle, so the weight of
the Q term against the BC term is the one setting the benchmark's verdict hinges on.

Protocol: the budget and settings of ``player_platform_quality.py``; training seeds 100.. (the
quality benchmark uses 0..4); each final policy scored on ``--episodes`` tuning players seeded
50_000.. (held-out evaluation players are 10_000.., counterfactual states 30_000..: never used
here). The α with the best mean return per method is written to
``benchmarks/results/player_platform_tuning.json``, which the quality benchmark's
"FAST-Q (tuned α)" and "TD3+BC (tuned α)" rows read.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import baselines  # noqa: E402
from benchmarks.player_platform_quality import FULL, GAMMA, HIDDENS, TRAIN, fastq_config  # noqa: E402

TUNING_SEED, TRAIN_SEED = 50_000, 100
OUT = ROOT / "benchmarks/results/player_platform_tuning.json"


def tuning_return(fn, flat: bool, episodes: int) -> float:
    from rllib_fastq.envs import evaluate_policy

    return evaluate_policy(fn, {"flat_obs": True} if flat else None, num_episodes=episodes,
                           seed=TUNING_SEED)["mean_return"]


def run_fastq(alpha: float, seed: int, episodes: int) -> float:
    from rllib_fastq.evaluation.rollout import policy_fn

    algo = fastq_config(seed, FULL, {"alpha": alpha}).build_algo()
    for _ in range(FULL["total"] // FULL["spi"]):
        algo.train()
    ret = tuning_return(policy_fn(algo.get_module(), "best"), False, episodes)
    algo.stop()
    return ret


def run_td3bc(data: dict, alpha: float, seed: int, episodes: int) -> float:
    agent = baselines.NormalizedTD3BC(data, hiddens=HIDDENS, gamma=GAMMA, seed=seed, alpha=alpha)
    agent.train(FULL["total"])
    return tuning_return(agent.policy_fn(), True, episodes)


def chosen_alpha(method: str) -> float:
    """The α the tuning run chose for ``method`` ("FAST-Q" or "TD3+BC")."""
    if not OUT.exists():
        raise SystemExit(f"{OUT.relative_to(ROOT)} is missing: run `python benchmarks/player_platform_tuning.py` "
                         "first (it picks α on tuning players).")
    return float(json.loads(OUT.read_text())["chosen_alpha"][method])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alphas", default="2.5,1.0,0.4,0.1")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--episodes", type=int, default=100)
    args = p.parse_args()
    torch.set_num_threads(1)
    res = json.loads(OUT.read_text()) if OUT.exists() else {}
    runs = res.setdefault("runs", {})
    res["meta"] = {"command": "python benchmarks/player_platform_tuning.py " + " ".join(sys.argv[1:]),
                   "tuning_seed": TUNING_SEED, "train_seeds": list(range(TRAIN_SEED, TRAIN_SEED + args.seeds)),
                   "episodes": args.episodes, "budget": FULL}
    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    data = baselines.load_flat(TRAIN)
    alphas = [float(a) for a in args.alphas.split(",")]
    for alpha in alphas:
        for seed in range(TRAIN_SEED, TRAIN_SEED + args.seeds):
            for method in ("FAST-Q", "TD3+BC"):
                key = f"{method}|{alpha}|{seed}"
                if key in runs:
                    continue
                t = time.perf_counter()
                runs[key] = run_fastq(alpha, seed, args.episodes) if method == "FAST-Q" \
                    else run_td3bc(data, alpha, seed, args.episodes)
                print(f"[{time.strftime('%H:%M:%S')}] {method} α={alpha} seed {seed}: {runs[key]:.3f} "
                      f"({time.perf_counter() - t:.0f}s)", flush=True)
                OUT.write_text(json.dumps(res, indent=1))
    print("\n| α | FAST-Q (tuning players) | TD3+BC (tuning players) |\n|---|---|---|")
    means: dict[str, dict[float, float]] = {"FAST-Q": {}, "TD3+BC": {}}
    for alpha in alphas:
        cells = []
        for method in means:
            vals = [runs[f"{method}|{alpha}|{s}"] for s in range(TRAIN_SEED, TRAIN_SEED + args.seeds)]
            means[method][alpha] = float(np.mean(vals))
            cells.append(f"{np.mean(vals):.2f} ± {np.std(vals, ddof=1) if len(vals) > 1 else 0.0:.2f}")
        print(f"| {alpha} | " + " | ".join(cells) + " |")
    res["chosen_alpha"] = {m: max(v, key=v.get) for m, v in means.items()}
    print(f"\nchosen α (best mean on tuning players): {res['chosen_alpha']}")
    OUT.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
