"""Counterfactual arm ranking (issue 34): does FAST-Q's arm choice put each arriving player on the
arm that is best for them?

    python -m benchmarks.arm_ranking --regimes misaligned aligned --seed 0

For each regime: the suite's dataset (1000 logged players, data seed ``--seed``, cached under
``benchmarks/results/data/``), FAST-Q trained with its defaults at the suite's budget (12 × 250
steps), then ``--states`` held-out arriving players (seeds 20000..). The truth per player and arm is
the Monte-Carlo return of staying on that arm for the whole episode (``--rollouts`` rollouts from a
copy of the arriving player's simulator state, common random numbers across arms; the "switch"
values of ``benchmarks.counterfactual``). Reported: top-1 accuracy of the arm values' mean
(``arm_choice="greedy"``) and of the safe choice, the chance level, and the safe choice's regret
(true value of the best arm minus that of the chosen one), beside the same two numbers for the
direct-method chooser fitted on the same logs, and the truth's own top-1: how often a second,
independent truth (other rollout seeds) names the same best arm, the ceiling its noise leaves. What
the logs hold per observed segment and arm (players, mean episode return) is printed with it: an
arm's value for a segment the router rarely sent to it rests on that many players.
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch

from benchmarks.counterfactual import make_states, true_values
from benchmarks.harness.suites import FULL, player_platform_dataset


def evaluate_ranking(module, states: list[dict], truth: np.ndarray) -> dict[str, float]:
    """Top-1 of the value mean and of the safe choice against ``truth`` [N, K], and the regret."""
    obs = {k: torch.as_tensor(np.stack([s["obs"][k] for s in states]), dtype=torch.float32)
           for k in ("temporal", "static")}
    with torch.no_grad():
        values, _ = module.arm_value_estimates(obs)
        safe = module.value_guided_arms(obs).numpy()
    greedy = values.mean(1).argmax(-1).numpy()
    best = truth.argmax(1)
    rows = np.arange(len(states))
    return {"top1_greedy": float(np.mean(greedy == best)), "top1_safe": float(np.mean(safe == best)),
            "chance": 1.0 / truth.shape[1],
            "regret_safe": float(np.mean(truth[rows, best] - truth[rows, safe])),
            "best_arm_share": np.bincount(best, minlength=truth.shape[1]).tolist(),
            "safe_arm_share": np.bincount(safe, minlength=truth.shape[1]).tolist()}


def direct_method_ranking(train: str, states: list[dict], truth: np.ndarray) -> dict[str, float]:
    """The same top-1 and regret for the direct-method chooser fitted on the same logs (the bar)."""
    from benchmarks.harness.simple import DirectMethodChooser

    static = np.stack([s["obs"]["static"] for s in states])
    chooser = DirectMethodChooser(train, num_arms=truth.shape[1], static_dim=static.shape[1])
    chosen = np.array([chooser.choose(x) for x in static])
    best, rows = truth.argmax(1), np.arange(len(states))
    return {"top1_direct_method": float(np.mean(chosen == best)),
            "regret_direct_method": float(np.mean(truth[rows, best] - truth[rows, chosen]))}


def logged_slices(train: str, static_dim: int) -> dict[str, list[list[float]]]:
    """Logged players per (observed segment, arm) and their mean episode return, ``[3][K]`` each."""
    from rllib_fastq.data.io import read_transitions
    from rllib_fastq.evaluation.ope import episodes_from_transitions

    ep = episodes_from_transitions(read_transitions(train))
    segment = ep.first_obs[:, -static_dim:][:, :3].argmax(1)  # the static one-hot's first 3 columns
    k = int(ep.arm.max()) + 1
    cells = [[(segment == g) & (ep.arm == a) for a in range(k)] for g in range(3)]
    return {"players": [[int(c.sum()) for c in row] for row in cells],
            "mean_return": [[round(float(ep.returns[c].mean()), 2) if c.any() else None for c in row]
                            for row in cells]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regimes", nargs="+", default=["misaligned", "aligned"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--states", type=int, default=200)
    parser.add_argument("--rollouts", type=int, default=8)
    args = parser.parse_args()
    import ray

    from rllib_fastq import FastQConfig
    from rllib_fastq.local_ray import init_local_ray

    torch.set_num_threads(1)
    init_local_ray(num_cpus=2, log_to_driver=False)
    states = make_states(args.states, seed=20_000, max_t=0)  # arriving players: no history yet
    truth = true_values(states, gamma=1.0, rollouts=args.rollouts, seed=7)["switch"]
    replica = true_values(states, gamma=1.0, rollouts=args.rollouts, seed=1007)["switch"]
    truth_top1 = float(np.mean(replica.argmax(1) == truth.argmax(1)))
    for regime in args.regimes:
        ds = player_platform_dataset(regime, args.seed, FULL)
        b = FULL["fastq"]
        algo = (FastQConfig()
                .offline_data(input_=[str(ds.train)], dataset_num_iters_per_learner=b["steps_per_iter"])
                .training(num_policies=3, gamma=0.9, reward_weights=[0.25, 0.25, -0.25, 0.25])
                .debugging(seed=args.seed)).build_algo()
        for _ in range(b["iterations"]):
            algo.train()
        result = {"regime": regime, "seed": args.seed, "top1_truth_replica": truth_top1,
                  **evaluate_ranking(algo.get_module(), states, truth),
                  **direct_method_ranking(ds.train, states, truth),
                  "logged_slices": logged_slices(str(ds.train), ds.layout.static)}
        algo.stop()
        print(json.dumps(result), flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
