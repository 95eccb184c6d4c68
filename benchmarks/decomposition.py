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

The critic's decomposition, for each ``critic_decomposition`` in ``--critic`` (one training each,
``arm_value_decomposition=True``; the first one also gives the arm-value table above): the critic
values ``Q1(b_{k*}(s0), a0)``, ``a0`` the served action, as the discounted (γ = 0.9) return of ``a0``
and then TD3+BC's actor ``π(b_{k*}(s_t))`` (its Bellman target bootstraps on the actor). So its
truth is that return, per component, from ``--rollouts`` Monte-Carlo rollouts of that module's own
actor (common random numbers: the seeds of the arm-value truth). Per component it compares the
critic's estimate of the component's own discounted value ``G_j``:

* "softmax" (reference): ``w_j · Q`` of the softmax head (``explain()["components"]``, regressed on
  the one-step ``r_j``);
* "bellman": ``Q_j``, the per-component value (``explain()["components"]`` is ``reward_weight_j · Q_j``);

and the total: ``Q`` against ``Σ_j reward_weight_j G_j``. With ``--episodes`` > 0 it also scores
each training's served policy online (``--episodes`` held-out players, the suite's evaluation seeds).
``--out PATH`` writes the critic table as markdown.
"""

from __future__ import annotations

import argparse
import copy
import json
import pathlib
from typing import Any

import numpy as np
import torch

from benchmarks.counterfactual import make_states, rollout_seed, true_component_values
from benchmarks.harness.registry import COMPONENTS
from benchmarks.harness.suites import FULL, player_platform_dataset

WEIGHTS = [0.25, 0.25, -0.25, 0.25]
GAMMA = 0.9


def train(regime: str, seed: int, decomposition: bool, critic_decomposition: str = "softmax") -> Any:
    """FAST-Q at the suite's budget (as benchmarks.arm_ranking), the options as given; its module."""
    from rllib_fastq import FastQConfig

    ds = player_platform_dataset(regime, seed, FULL)
    b = FULL["fastq"]
    algo = (FastQConfig()
            .offline_data(input_=[str(ds.train)], dataset_num_iters_per_learner=b["steps_per_iter"])
            .training(num_policies=3, gamma=GAMMA, reward_weights=WEIGHTS, reward_component_names=COMPONENTS,
                      arm_value_decomposition=decomposition, critic_decomposition=critic_decomposition)
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


def critic_truth(module: Any, states: list[dict], first: np.ndarray, arms: np.ndarray, rollouts: int,
                 seed: int, gamma: float = GAMMA) -> np.ndarray:
    """What the critic's ``Q1(b_k(s0), a0)`` values, per component [N, C]: the γ-discounted return of
    ``first[i]`` and then the module's actor ``π(b_{arms[i]}(s_t))``, mean of ``rollouts`` Monte-Carlo
    rollouts from copies of the player's simulator (seeds ``rollout_seed``, as the arm-value truth).
    All rollouts step together, one actor pass per step."""
    envs, owner = [], []
    for i, st in enumerate(states):
        for j in range(rollouts):
            env = copy.deepcopy(st["env"])
            env.np_random = np.random.default_rng(rollout_seed(seed, i, j))
            envs.append(env)
            owner.append(i)
    owner_a = np.asarray(owner)
    actions = np.asarray(first, np.float32)[owner_a].copy()
    total = np.zeros((len(envs), len(COMPONENTS)))
    disc, active = np.ones(len(envs)), np.ones(len(envs), bool)
    while active.any():
        live = []
        for r in np.flatnonzero(active):
            obs, _, term, trunc, info = envs[r].step(actions[r])
            total[r] += disc[r] * np.asarray(info["reward_components"], np.float64)
            disc[r] *= gamma
            if term or trunc:
                active[r] = False
            else:
                live.append((r, obs))
        if live:
            rs = np.asarray([r for r, _ in live])
            with module.frozen_representations():
                b, _ = module.representations(_obs([{"obs": o} for _, o in live]))
                actions[rs] = module.actor(b[torch.arange(len(rs)), torch.as_tensor(arms[owner_a[rs]])]).numpy()
    return total.reshape(len(states), rollouts, -1).mean(1)


def critic_errors(module: Any, states: list[dict], rollouts: int, seed: int) -> list[dict[str, float]]:
    """Per component (and the total): the truth of :func:`critic_truth` and the critic's estimate of the
    component's own discounted value (softmax: ``w_j · Q``; bellman: ``Q_j``), with their errors."""
    obs = _obs(states)
    ex = module.explain(obs, "best")
    arms, first = ex["policy_id"].numpy(), ex["actions"].numpy()
    q = ex["q"].numpy()
    # Σ of explain()'s components is Q under both options (checked: the decomposition is exact).
    assert np.allclose(sum(v.numpy() for v in ex["components"].values()), q, atol=1e-3)
    if module.critic_decomposition == "bellman":
        with torch.no_grad():
            chosen = module.choose_arms(obs, "best")
            qc = module.critic(torch.cat([chosen["br_obs"], chosen["actions"]], -1))[1][:, 0].numpy()
        est = {n: qc[:, j] for j, n in enumerate(module.decomposed_names)}
    else:
        est = {n: ex["components"][n].numpy() for n in module.decomposed_names}
    g = critic_truth(module, states, first, arms, rollouts, seed)
    true = {n: g[:, j] for j, n in enumerate(COMPONENTS)} | {"total": g @ np.asarray(WEIGHTS)}
    est["total"] = q
    out = []
    for n, t in true.items():
        if n not in est:
            continue
        mae = float(np.mean(np.abs(est[n] - t)))
        out.append({"component": n, "truth": float(t.mean()), "estimate": float(est[n].mean()), "mae": mae,
                    "rel": mae / max(float(np.mean(np.abs(t))), 1e-12)})
    return out


def served_return(module: Any, episodes: int) -> dict[str, float]:
    """The served policy online: mean undiscounted return on the suite's held-out evaluation players."""
    from ray.rllib.core.columns import Columns

    from rllib_fastq.envs import evaluate_policy

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        with torch.no_grad():
            out = module.forward_inference(
                {Columns.OBS: {k: torch.as_tensor(np.asarray(v, np.float32))[None] for k, v in obs.items()}})
        return out[Columns.ACTIONS][0].cpu().numpy()

    ev = evaluate_policy(act, None, num_episodes=episodes, seed=FULL["eval_seed"])
    return {"mean_return": ev["mean_return"], "sem_return": ev["sem_return"]}


def critic_markdown(by_option: dict[str, list[dict[str, float]]], served: dict[str, dict[str, float]]) -> str:
    """Per component: each option's truth (its own actor's continuation), estimate, MAE, relative error."""
    opts = list(by_option)
    head = "| component | " + " | ".join(f"{o}: truth (mean) | {o}: estimate (mean) | {o}: MAE | {o}: rel. error"
                                         for o in opts) + " |"
    lines = [head, "|---|" + "---|" * (4 * len(opts))]
    for i, r in enumerate(by_option[opts[0]]):
        name = "total (Q vs Σ_j w_j G_j)" if r["component"] == "total" else r["component"]
        cells = []
        for o in opts:
            x = by_option[o][i]
            cells.append(f"{x['truth']:.3f} | {x['estimate']:.3f} | {x['mae']:.3f} | {x['rel']:.1%}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if served:
        lines.append("")
        lines.append("Served policy online (mean undiscounted return ± s.e.): " + "; ".join(
            f"{o}: {v['mean_return']:.3f} ± {v['sem_return']:.3f}" for o, v in served.items()))
    return "\n".join(lines)


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
    parser.add_argument("--critic", default="softmax,bellman",
                        help="critic_decomposition options to train and compare (comma-separated)")
    parser.add_argument("--episodes", type=int, default=200, help="online episodes per served policy (0: skip)")
    parser.add_argument("--out", default=None, help="write the critic table (markdown) to this path")
    args = parser.parse_args()
    import ray

    from rllib_fastq.local_ray import init_local_ray

    torch.set_num_threads(1)
    init_local_ray(num_cpus=2, log_to_driver=False)
    states = make_states(args.states, seed=20_000, max_t=0)  # arriving players: no history yet
    truth = true_component_values(states, rollouts=args.rollouts, seed=7)  # [N, K, C]
    scalar = truth @ np.asarray(WEIGHTS)
    options = [o for o in args.critic.split(",") if o]
    critic: dict[str, list[dict[str, float]]] = {}
    served: dict[str, dict[str, float]] = {}
    result: dict[str, Any] = {"regime": args.regime, "seed": args.seed, "states": args.states,
                              "rollouts": args.rollouts}
    for i, option in enumerate(options):
        module = train(args.regime, args.seed, True, option)
        if i == 0:  # the arm values do not read the critic: one table, from the first training
            result["rows"] = decomposition_errors(module, states, truth)
            result["on"] = top1(module, states, scalar)
        critic[option] = critic_errors(module, states, args.rollouts, seed=7)
        if args.episodes > 0:
            served[option] = served_return(module, args.episodes)
    result["critic"], result["served"] = critic, served
    if not args.no_off:
        result["off"] = top1(train(args.regime, args.seed, False), states, scalar)
    ray.shutdown()
    if "rows" in result:
        print(markdown(result["rows"]))
        print("\ntop-1 vs the truly best arm: " + "; ".join(
            f"option {k}: greedy {v['top1_greedy']:.2f}, safe {v['top1_safe']:.2f}"
            for k, v in result.items() if k in ("on", "off")))
    table = critic_markdown(critic, served)
    print("\nCritic decomposition: each option's estimate of a component's own discounted (γ = 0.9) "
          "value G_j of the served action a0 followed by its TD3+BC actor, against Monte-Carlo truth "
          "(the truth differs per option: each has its own actor)\n" + table)
    if args.out:
        pathlib.Path(args.out).write_text(
            f"# Critic decomposition against the truth ({args.regime}, seed {args.seed})\n\n"
            f"`python -m benchmarks.decomposition --regime {args.regime} --seed {args.seed} --states {args.states} "
            f"--rollouts {args.rollouts} --critic {args.critic} --episodes {args.episodes}"
            f"{' --no-off' if args.no_off else ''} --out {args.out}`\n\n"
            "Compared: on held-out arriving players, the critic's estimate, at the chosen arm's "
            "representation and the served action a0, of each component's own discounted (γ = 0.9) "
            "value G_j of a0 followed by that training's TD3+BC actor (what the critic values; truth: "
            f"{args.rollouts} Monte-Carlo rollouts per player, common random numbers). softmax: "
            "`w_j · Q` of the reference's head; bellman: `Q_j` (explain() shows `reward_weight_j · Q_j`). "
            "total: Q against Σ_j w_j G_j. Relative error = MAE / mean |truth|.\n\n" + table + "\n")
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
