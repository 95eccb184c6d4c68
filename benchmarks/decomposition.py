"""Faithful decomposition (issue 36, item 1): does ``explain()`` decompose the value of what FAST-Q
serves into the returns each reward component will really bring?

    python -m benchmarks.decomposition --regime misaligned --seed 0

FAST-Q is trained with ``arm_value_decomposition=True`` on the suite's dataset (as
``benchmarks.arm_ranking``: 1000 logged players, the suite's budget of 12 × 250 steps, γ = 0.9,
weights (0.25, 0.25, −0.25, 0.25)). On ``--states`` held-out arriving players (seeds 20000..),
the truth per arm and component is the undiscounted return of that component while staying on the
arm (``--rollouts`` Monte-Carlo rollouts from a copy of the player's simulator state, common random
numbers across arms). For the arm FAST-Q chooses (``policy_id="best"``) it compares, per component,

* the arm-value decomposition ``V_{k*,j}(s0)`` (``explain()["arm_value_components"]``), and
* the critic's softmax head ``w_j · Q`` (``explain()["components"]``, the reference's decomposition:
  a share of the actor's discounted γ = 0.9 Q, reported as is)

with the truth ``G_{k*,j}``: mean absolute error, and relative error (MAE / mean |truth|). It also
trains FAST-Q with the option off (``--no-off`` skips it) and reports both arm choices' top-1
agreement with the truly best arm (greedy: argmax of the mean arm value; safe: the default choice).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np
import torch

from benchmarks.counterfactual import make_states, true_component_values
from benchmarks.harness.registry import COMPONENTS
from benchmarks.harness.suites import FULL, player_platform_dataset

WEIGHTS = [0.25, 0.25, -0.25, 0.25]


def train(regime: str, seed: int, decomposition: bool) -> Any:
    """FAST-Q at the suite's budget (as benchmarks.arm_ranking), the option on or off; its module."""
    from rllib_fastq import FastQConfig

    ds = player_platform_dataset(regime, seed, FULL)
    b = FULL["fastq"]
    algo = (FastQConfig()
            .offline_data(input_=[str(ds.train)], dataset_num_iters_per_learner=b["steps_per_iter"])
            .training(num_policies=3, gamma=0.9, reward_weights=WEIGHTS, reward_component_names=COMPONENTS,
                      arm_value_decomposition=decomposition)
            .debugging(seed=seed)).build_algo()
    for _ in range(b["iterations"]):
        algo.train()
    module = algo.get_module()
    algo.stop()
    return module


def _obs(states: list[dict]) -> dict[str, torch.Tensor]:
    return {k: torch.as_tensor(np.stack([s["obs"][k] for s in states]), dtype=torch.float32)
            for k in ("temporal", "static")}


def top1(module: Any, states: list[dict], truth: np.ndarray) -> dict[str, float]:
    """Top-1 agreement of the greedy and the safe arm choice with the truly best arm (``truth`` [N, K])."""
    obs = _obs(states)
    with torch.no_grad():
        greedy = module.arm_value_estimates(obs)[0].mean(1).argmax(-1).numpy()
        safe = module.value_guided_arms(obs).numpy()
    best = truth.argmax(1)
    return {"top1_greedy": float(np.mean(greedy == best)), "top1_safe": float(np.mean(safe == best))}


def decomposition_errors(module: Any, states: list[dict], truth: np.ndarray) -> list[dict[str, float]]:
    """Per component (and the weighted total): truth, the arm-value decomposition and the critic's
    softmax head of the chosen arm, with their errors. ``truth`` [N, K, C]."""
    ex = module.explain(_obs(states), "best")
    rows = np.arange(len(states))
    arm = ex["policy_id"].numpy()
    values = {n: v.numpy()[rows, arm] for n, v in ex["arm_value_components"].items()}
    values["total"] = ex["arm_values"].numpy()[rows, arm]
    critic = {n: v.numpy() for n, v in ex["components"].items()}
    critic["total"] = ex["q"].numpy()
    g = truth[rows, arm]  # [N, C]
    true = {n: g[:, j] for j, n in enumerate(COMPONENTS)} | {"total": g @ np.asarray(WEIGHTS)}
    out = []
    for n, t in true.items():
        scale = float(np.mean(np.abs(t)))
        mae_v, mae_c = float(np.mean(np.abs(values[n] - t))), float(np.mean(np.abs(critic[n] - t)))
        out.append({"component": n, "truth": float(t.mean()), "arm_value": float(values[n].mean()),
                    "arm_value_mae": mae_v, "arm_value_rel": mae_v / max(scale, 1e-12),
                    "critic_head": float(critic[n].mean()), "critic_head_mae": mae_c,
                    "critic_head_rel": mae_c / max(scale, 1e-12)})
    return out


def markdown(rows: list[dict[str, float]]) -> str:
    lines = ["| component | truth (mean) | arm-value decomposition V_j (mean) | MAE | relative error "
             "| critic softmax head w_j·Q (mean) | MAE |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        name = "total (Σ_j w_j ·; critic: Q)" if r["component"] == "total" else r["component"]
        lines.append(f"| {name} | {r['truth']:.3f} | {r['arm_value']:.3f} | {r['arm_value_mae']:.3f} "
                     f"| {r['arm_value_rel']:.1%} | {r['critic_head']:.3f} | {r['critic_head_mae']:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--regime", default="misaligned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--states", type=int, default=100)
    parser.add_argument("--rollouts", type=int, default=4)
    parser.add_argument("--no-off", action="store_true", help="skip training with the option off")
    args = parser.parse_args()
    import ray

    from rllib_fastq.local_ray import init_local_ray

    torch.set_num_threads(1)
    init_local_ray(num_cpus=2, log_to_driver=False)
    states = make_states(args.states, seed=20_000, max_t=0)  # arriving players: no history yet
    truth = true_component_values(states, rollouts=args.rollouts, seed=7)  # [N, K, C]
    scalar = truth @ np.asarray(WEIGHTS)
    on = train(args.regime, args.seed, True)
    rows = decomposition_errors(on, states, truth)
    result: dict[str, Any] = {"regime": args.regime, "seed": args.seed, "states": args.states,
                              "rollouts": args.rollouts, "rows": rows, "on": top1(on, states, scalar)}
    if not args.no_off:
        result["off"] = top1(train(args.regime, args.seed, False), states, scalar)
    ray.shutdown()
    print(markdown(rows))
    print("\ntop-1 vs the truly best arm: " + "; ".join(
        f"option {k}: greedy {v['top1_greedy']:.2f}, safe {v['top1_safe']:.2f}"
        for k, v in result.items() if k in ("on", "off")))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
