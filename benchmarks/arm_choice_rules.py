"""Arm-choice rules on the same arm values: which rule puts held-out players on the right arm?

    python -m benchmarks.arm_choice_rules --regimes low-overlap misaligned --seeds 0 1

For each regime and seed: FAST-Q (defaults) trains at the suite's budget (``--iterations 12`` of 250
steps; ``--iterations 4`` stops after phase 1, where the arm values stopped training before
``arm_values_train_in_phase2``) on the suite's dataset; every rule below picks an arm for each of
the suite's 200 held-out players on arrival, and the pick is scored with the arms'
exact rules (the player's undiscounted return on that arm for the whole stay, the same players and
seeds as the suite's online evaluation). This isolates the arm choice from the clones' error.

Rules: ``greedy`` (mean arm value of the model the module chose, ``arm_value_model``), ``safe β``
(ensemble lower bound with the routed-arm fallback, ``counterfactual.safe_arm_choice``), ``routed``
(the routing model's likeliest arm), the same rules on each arm-value model separately (``network
…``: the ensemble MLP; ``ridge …``: the learner's ridge fit, ``counterfactual.ridge_values``; ``mix
…``: both ensembles' members together), the direct-method chooser (its own ridge regressions), the
per-player best arm (oracle over the three arms). Also printed: which model the module chose
(``source ridge``) and, with ``arm_choice_check``, its doubly-robust improvement and lower bound.
"""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

K, PLAYERS = 3, 200


def arm_returns(players: int, seed: int) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Every held-out player's return on each arm's exact rule [N, K], and their arrival observations."""
    from rllib_fastq.envs import PlayerPlatformEnv, arm_actions

    env, truth, arrivals = PlayerPlatformEnv(), np.zeros((players, K)), []
    for i in range(players):
        for k in range(K):
            obs, _ = env.reset(seed=seed + i)
            if k == 0:
                arrivals.append(obs)
            done, total = False, 0.0
            while not done:
                obs, r, term, trunc, _ = env.step(arm_actions(obs, K)[k])
                total, done = total + r, term or trunc
            truth[i, k] = total
    return truth, arrivals


def score_rules(regime: str, seed: int, truth: np.ndarray, arrivals: list[dict[str, np.ndarray]],
                iterations: int) -> dict:
    import torch

    from benchmarks.harness.registry import COMPONENTS, GAMMA, REWARD_WEIGHTS
    from benchmarks.harness.simple import DirectMethodChooser
    from benchmarks.harness.suites import FULL, player_platform_dataset
    from rllib_fastq import FastQConfig
    from rllib_fastq.counterfactual import ridge_values, safe_arm_choice

    ds = player_platform_dataset(regime, seed, FULL)
    steps = FULL["fastq"]["steps_per_iter"]
    config = (FastQConfig().offline_data(input_=[ds.train], dataset_num_iters_per_learner=steps)
              .training(num_policies=K, gamma=GAMMA, reward_weights=REWARD_WEIGHTS, reward_component_names=COMPONENTS)
              .debugging(seed=seed))
    algo = config.build_algo()
    for _ in range(iterations):
        result = algo.train()
    stats = result["learners"]["default_policy"]
    module = algo.get_module()
    obs = {k: torch.as_tensor(np.stack([a[k] for a in arrivals]), dtype=torch.float32) for k in ("temporal", "static")}
    with torch.no_grad():
        x = module.normalize(module.choice_observation(obs))
        values, rho = module.arm_value_estimates_at(x)
        network = module.scalar_arm_values(module.arm_values(x))
        ridge = module.scalar_arm_values(ridge_values.ridge_values(x, module.ridge_mean, module.ridge_inv_scale,
                                                                    module.ridge_coef))
    rows = np.arange(len(truth))

    def score(choice: np.ndarray) -> float:
        return round(float(truth[rows, choice].mean()), 3)

    def safe(arm_values: torch.Tensor, beta: float) -> float:
        return score(safe_arm_choice(arm_values, rho, pessimism=beta,
                                     min_propensity=config.arm_choice_min_propensity).numpy())

    dm = DirectMethodChooser(ds.train, num_arms=K, static_dim=ds.layout.static)
    out = {"regime": regime, "seed": seed, "iterations": iterations, "per-player best arm": score(truth.argmax(1)),
           "direct-method chooser": score(np.array([dm.choose(a["static"]) for a in arrivals])),
           "greedy": score(values.mean(1).argmax(-1).numpy()), "routed": score(rho.argmax(-1).numpy()),
           "network greedy": score(network.mean(1).argmax(-1).numpy()),
           "ridge greedy": score(ridge.mean(1).argmax(-1).numpy()),
           "ridge safe β=1": safe(ridge, 1.0), "network safe β=1": safe(network, 1.0),
           "mix greedy": score((network.mean(1) + ridge.mean(1)).argmax(-1).numpy()),
           "mix safe β=1": safe(torch.cat([network, ridge], 1), 1.0), "ridge safe β=0": safe(ridge, 0.0),
           "source ridge": float(int(module.arm_value_source) == ridge_values.RIDGE)}
    for beta in (0.0, 0.5, 1.0):
        out[f"safe β={beta:g}"] = safe(values, beta)
    for key in ("arm_choice_dr_improvement", "arm_choice_dr_lower_bound"):
        if key not in stats:
            continue
        v = stats[key]
        out[key.removeprefix("arm_choice_")] = round(float(v.peek() if hasattr(v, "peek") else v), 3)
    algo.stop()
    return out


def score_cells(regimes: list[str], seeds: list[int], score: Callable[[str, int], dict]) -> list[dict]:
    """``score(regime, seed)`` for every cell, each row printed as JSON as it comes."""
    rows = []
    for regime in regimes:
        for seed in seeds:
            rows.append(score(regime, seed))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def print_table(rows: list[dict], skip: tuple[str, ...] = (), raw: tuple[str, ...] = ()) -> None:
    """The rows' numeric columns as a markdown table (``raw`` columns printed as they are after it)."""
    names = [k for k in rows[0] if k not in ("regime", "seed", *skip, *raw)]
    print("\n| regime | seed | " + " | ".join(names) + " |\n|" + "---|" * (len(names) + 2))
    for r in rows:
        print(f"| {r['regime']} | {r['seed']} | " + " | ".join(f"{r[n]:.2f}" for n in names) + " |",
              *(r[k] for k in raw))


def main(argv: list[str] | None = None) -> int:
    from benchmarks.harness.suites import EVAL_SEED, REGIMES
    from rllib_fastq.local_ray import init_local_ray

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--iterations", type=int, default=12, help="training iterations of 250 steps (suite: 12)")
    p.add_argument("--json", help="also write the rows here")
    args = p.parse_args(argv)
    init_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False)
    truth, arrivals = arm_returns(PLAYERS, EVAL_SEED)
    rows = score_cells(args.regimes, args.seeds, lambda r, s: score_rules(r, s, truth, arrivals, args.iterations))
    print_table(rows, skip=("iterations",))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
