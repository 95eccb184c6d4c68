"""Off-policy estimates against the simulator's truth (issue 36, item 3, small).

    python -m benchmarks.ope_validation                                   # misaligned routing, seed 0
    python -m benchmarks.ope_validation --routing aligned misaligned --seeds 0 1
    python -m benchmarks.ope_validation --checkpoint CK                   # + FAST-Q's arm choice

For each routing regime and seed: generate player-platform logs (``episodes`` players, the card's
online truth on ``eval_episodes`` other players), then estimate from the logs alone the value of

- each arm as a policy (every player on arm k),
- segment rules (observed segment → arm: the card's per-segment oracle, the "aligned" and
  "misaligned" preferences, when they differ from it; their truth is run here on the card's
  evaluation players),
- the logged routing (its logged mean return: on-policy),
- FAST-Q's arm choice when ``--checkpoint`` is given (truth: the module served online on the card's
  evaluation players),

with the arm-level doubly-robust estimator (:func:`rllib_fastq.evaluation.ope.arm_choice_dr`,
the logged propensities), ``q̂`` = a per-arm ridge regression of the episode return on the first
observation (or the module's arm values with ``--checkpoint``). Prints a markdown table (estimate,
95 % CI, truth ± its standard error, covered?) and the summary: Spearman rank correlation, mean
relative error and CI coverage over the policies.

Caveats: the truth of "arm k" is the arm's deterministic action; the logs carry the arm's action
plus the generator's logging noise, which is what the DR values. The truth is itself a mean over
``eval_episodes`` players (its s.e. is shown), so coverage is judged against a noisy target.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from rllib_fastq.data.io import read_transitions
from rllib_fastq.evaluation import ope

SEGMENT_RULES = {"aligned rule": (0, 1, 2), "misaligned rule": (1, 2, 0)}


def _ranks(x: np.ndarray) -> np.ndarray:
    r = np.empty(len(x))
    r[np.argsort(x)] = np.arange(len(x))
    return r


def spearman(a: Any, b: Any) -> float:
    ra, rb = _ranks(np.asarray(a, float)), _ranks(np.asarray(b, float))
    return float(np.corrcoef(ra, rb)[0, 1])


def validate_regime(routing: str, seed: int, *, episodes: int, eval_episodes: int, n_boot: int,
                    checkpoint: str | None, workdir: str) -> list[dict[str, Any]]:
    from rllib_fastq.datasets.player_platform import generate_player_platform_dataset
    from rllib_fastq.envs.arms import SegmentOraclePolicy
    from rllib_fastq.envs.evaluate import evaluate_policy
    from rllib_fastq.envs.player_platform import PlayerPlatformConfig

    out = os.path.join(workdir, f"{routing}-{seed}")
    if not os.path.exists(os.path.join(out, "card.json")):
        generate_player_platform_dataset(out, episodes=episodes, seed=seed, routing=routing,
                                         eval_episodes=eval_episodes)
    card = json.loads(Path(out, "card.json").read_text())
    online = card["online"]
    tr = read_transitions(os.path.join(out, "train.parquet"))
    ep = ope.episodes_from_transitions(tr)
    config = PlayerPlatformConfig.from_any(None, flat_obs=False)
    layout = config.obs_layout
    arm_names = list(card["arm_names"])
    k = len(arm_names)
    if ep.propensity is None:
        raise ValueError("the logs have no policy_propensity column")
    module = None
    if checkpoint:
        from rllib_fastq.checkpoints import load_module

        module = load_module(checkpoint)
        mv = ope.module_arm_values(module, ep.first_obs, "best")
        q_hat, dm_name = mv["q_hat"], "module arm values"
    else:
        q_hat, lam = ope.cross_fit_ridge_arm_values(ep.first_obs, ep.arm, ep.returns, k, seed=seed)
        dm_name = f"per-arm ridge on the first observation, 5-fold cross-fitted, lambda {lam:g} (CV)"
    segment = np.argmax(layout.unflatten(ep.first_obs)["static"][:, :3], 1)

    rows: list[dict[str, Any]] = []

    def add(name: str, est: dict[str, Any], truth: float, truth_se: float) -> None:
        rows.append({"regime": routing, "seed": seed, "policy": name, "estimate": est["estimate"],
                     "ci": est["ci"], "truth": truth, "truth_se": truth_se, "q_hat": dm_name,
                     "direct_method": est.get("direct_method")})

    for j, name in enumerate(arm_names):
        t = online["arms"][name]
        add(f"arm {name}", ope.arm_choice_dr(q_hat, ep.arm, ep.returns, ep.propensity, j, n_boot=n_boot, seed=seed),
            t["mean_return"], t["sem_return"])
    oracle = tuple(arm_names.index(online["segment_oracle"]["best_arm_per_segment"][s])
                   for s in online["segment_oracle"]["best_arm_per_segment"])
    rules = {"segment oracle": oracle, **{n: m for n, m in SEGMENT_RULES.items() if tuple(m) != oracle}}
    for name, mapping in rules.items():
        if name == "segment oracle":
            t = online["segment_oracle"]
        else:
            t = evaluate_policy(SegmentOraclePolicy(mapping, layout), config, online["num_episodes"],
                                online["eval_seed"])
        target = np.asarray(mapping)[segment]
        add(f"{name} {mapping}", ope.arm_choice_dr(q_hat, ep.arm, ep.returns, ep.propensity, target,
                                                  n_boot=n_boot, seed=seed), t["mean_return"], t["sem_return"])
    t = online["logged_routing"]
    add(f"logged routing ({routing})", ope.logged_value(ep.returns, n_boot=n_boot, seed=seed),
        t["mean_return"], t["sem_return"])
    if module is not None:
        from rllib_fastq.evaluation import rollout

        t = evaluate_policy(rollout.policy_fn(module, "best"), config, online["num_episodes"], online["eval_seed"])
        add("FAST-Q arm choice", ope.arm_choice_dr(q_hat, ep.arm, ep.returns, ep.propensity, mv["chosen"],
                                                   n_boot=n_boot, seed=seed), t["mean_return"], t["sem_return"])
    return rows


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    est = np.array([r["estimate"] for r in rows])
    truth = np.array([r["truth"] for r in rows])
    covered = np.array([r["ci"][0] <= r["truth"] <= r["ci"][1] for r in rows])
    return {"policies": len(rows), "spearman": spearman(est, truth),
            "mean_relative_error": float(np.mean(np.abs(est - truth) / np.abs(truth))),
            "coverage": float(covered.mean()), "coverage_with_truth_se": float(np.mean([agrees(r) for r in rows]))}


def agrees(r: dict[str, Any]) -> bool:
    """The estimate and the (itself noisy) truth agree: within 1.96 combined standard errors
    (the estimate's s.e. read off its interval as width / 3.92)."""
    se = (r["ci"][1] - r["ci"][0]) / 3.92
    return abs(r["estimate"] - r["truth"]) <= 1.96 * float(np.hypot(se, r["truth_se"]))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| regime | seed | policy | OPE estimate | 95 % CI | truth (± s.e.) | rel. error | CI covers truth "
             "| agrees (truth's s.e. too) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci"]
        rel = abs(r["estimate"] - r["truth"]) / abs(r["truth"])
        lines.append(f"| {r['regime']} | {r['seed']} | {r['policy']} | {r['estimate']:.3f} | [{lo:.3f}, {hi:.3f}] | "
                     f"{r['truth']:.3f} ± {r['truth_se']:.3f} | {rel:.1%} | "
                     f"{'yes' if lo <= r['truth'] <= hi else 'no'} | {'yes' if agrees(r) else 'no'} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ope_validation", description=__doc__.splitlines()[0])
    p.add_argument("--routing", nargs="+", default=["misaligned"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--checkpoint", help="a FAST-Q checkpoint trained on these logs (adds its arm choice)")
    p.add_argument("--workdir", help="where the generated logs go (default: a temporary directory)")
    p.add_argument("--json", help="also write the rows and summary here")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.workdir or tmp
        rows = [r for routing in args.routing for seed in args.seeds
                for r in validate_regime(routing, seed, episodes=args.episodes, eval_episodes=args.eval_episodes,
                                         n_boot=args.n_boot, checkpoint=args.checkpoint, workdir=work)]
    summary = summarize(rows)
    print(markdown(rows))
    print()
    for routing in args.routing:
        for seed in args.seeds:
            r = summarize([x for x in rows if x["regime"] == routing and x["seed"] == seed])
            print(f"{routing} seed {seed}: Spearman {r['spearman']:.3f}, mean relative error "
                  f"{r['mean_relative_error']:.1%}, CI coverage {r['coverage']:.0%}")
    print(f"q̂: {rows[0]['q_hat']}; {summary['policies']} policies: Spearman {summary['spearman']:.3f}, "
          f"mean relative error {summary['mean_relative_error']:.1%}, CI coverage {summary['coverage']:.0%} "
          f"({summary['coverage_with_truth_se']:.0%} agree within the truth's s.e. too)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
