"""Held-out check of FAST-Q's defaults (issue 34) on logs that were never used to choose them.

    python -m benchmarks.heldout_variants --seeds 2
    python -m benchmarks.heldout_variants --variants four-arms-feature-rule --fastq-training \
        arm_choice_pessimism=1 --out /tmp/option.json     # a FAST-Q option (as the suite's --fastq-training)

The suite's regimes (``benchmarks.harness.suites``) are where the defaults were measured. These
variants change what the defaults never saw: the number of arms (the fourth, "balanced", arm), the
router's randomised share, the logging noise and the noise of the observed segment label:

- ``four-arms-feature-rule``: 4 arms, the feature rule (acquisition channel, tenure), 10 % randomised;
- ``noisy-misaligned``: 3 arms, misaligned routing with 10 % randomised, logging noise 0.3 (0.15 in
  the suite) and a segment label that is a random one for 30 % of players (15 % in the suite).

Each variant's data (1000 logged players, data seed = run seed) and its card are written under
``benchmarks/results/data/variants/``. Methods, trained and scored exactly as in the suite (its FULL
budget; 200 held-out players, evaluation seed 10000, in the variant's own simulator settings): every
arm, the logged routing, the per-segment oracle, the direct-method chooser, BC and FAST-Q with its
defaults. Results are printed as a markdown table and written to
``benchmarks/results/heldout_variants.json``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import time
from typing import Any

import numpy as np

from benchmarks.harness.registry import REGISTRY, DatasetHandle
from benchmarks.harness.suites import DATA_CACHE, FULL, with_fastq_training

VARIANTS: dict[str, dict[str, Any]] = {
    "four-arms-feature-rule": {"routing": "feature-rule", "overlap": 0.1, "env": {"num_arms": 4}},
    "noisy-misaligned": {"routing": "misaligned", "overlap": 0.1,
                         "env": {"logging_noise": 0.3, "segment_label_noise": 0.3}},
}
METHODS = ("logged routing", "per-segment oracle", "direct-method chooser", "BC", "FAST-Q")
OUT = pathlib.Path(__file__).resolve().parent / "results" / "heldout_variants.json"


def variant_dataset(name: str, seed: int) -> tuple[DatasetHandle, dict[str, Any]]:
    """The cached dataset of variant ``name`` (data seed ``seed``) and its simulator settings."""
    from rllib_fastq.datasets.player_platform import generate_player_platform_dataset

    v = VARIANTS[name]
    path = DATA_CACHE / "variants" / name / f"seed{seed}-ep{FULL['data_episodes']}"
    if not (path / "card.json").exists():
        generate_player_platform_dataset(path, episodes=FULL["data_episodes"], seed=seed, routing=v["routing"],
                                         overlap=v["overlap"], env_config=v["env"],
                                         eval_episodes=FULL["card_eval_episodes"], overwrite=True)
    return DatasetHandle.load("player-platform-variants", name, seed, path), v["env"]


def score(policy: Any, env: dict[str, Any]) -> float:
    from rllib_fastq.envs import evaluate_policy

    return float(evaluate_policy(policy, env, num_episodes=FULL["episodes"], seed=FULL["eval_seed"])["mean_return"])


def run_variant(name: str, seed: int, budget: dict[str, Any] = FULL) -> dict[str, float]:
    """Every arm and every method of ``METHODS`` on one variant and seed: name → mean return."""
    from rllib_fastq.envs import ARM_NAMES, ArmPolicy

    ds, env = variant_dataset(name, seed)
    out = {f"arm {ARM_NAMES[k]}": score(ArmPolicy(k, ds.layout), env) for k in range(ds.num_arms)}
    for method in METHODS:
        t = time.perf_counter()
        trained = REGISTRY[method].fn(ds, seed, budget)
        try:
            out[method] = score(trained.policy, env)
        finally:
            if trained.close is not None:
                trained.close()
        print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed} {method}: {out[method]:.3f} "
              f"({time.perf_counter() - t:.0f} s)", flush=True)
    return out


def table(results: dict[str, dict[int, dict[str, float]]]) -> str:
    cols = ["FAST-Q", "logged routing", "best arm", "direct-method chooser", "per-segment oracle", "BC"]
    lines = ["| variant | seeds | " + " | ".join(cols) + " | FAST-Q − routing (min over seeds) |",
             "|---" * (len(cols) + 3) + "|"]
    for name, by_seed in results.items():
        rows = list(by_seed.values())
        best_arm = [max(v for k, v in r.items() if k.startswith("arm ")) for r in rows]
        vals = {c: [r[c] for r in rows] for c in cols if c != "best arm"} | {"best arm": best_arm}
        cells = [f"{np.mean(vals[c]):.2f}" + (f" ± {np.std(vals[c]):.2f}" if c == "FAST-Q" else "") for c in cols]
        margin = min(a - b for a, b in zip(vals["FAST-Q"], vals["logged routing"]))
        lines.append(f"| {name} | {len(rows)} | " + " | ".join(cells) + f" | {margin:+.2f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--out", default=str(OUT))
    parser.add_argument("--fastq-training", nargs="+", default=[], metavar="KEY=VALUE",
                        help="FAST-Q settings on top of its defaults (as `python -m benchmarks run "
                             "--fastq-training`); give another --out")
    args = parser.parse_args()
    if args.fastq_training and pathlib.Path(args.out).resolve() == OUT:
        parser.error("--fastq-training: give another --out (the published results are the defaults')")
    budget = with_fastq_training("full", args.fastq_training) or FULL
    import ray
    import torch

    from rllib_fastq.local_ray import init_local_ray

    torch.set_num_threads(1)
    init_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    results: dict[str, dict[int, dict[str, float]]] = {}
    for name in args.variants:
        results[name] = {seed: run_variant(name, seed, budget) for seed in range(args.seeds)}
    ray.shutdown()
    pathlib.Path(args.out).write_text(json.dumps(
        {"variants": VARIANTS, "budget": budget, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
         "results": results}, indent=1, default=str))
    print(table(results))


if __name__ == "__main__":
    main()
