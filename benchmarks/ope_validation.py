"""Off-policy estimates against the simulator's truth (issue 36, item 3, small).

    python -m benchmarks.ope_validation                                   # misaligned routing, seed 0
    python -m benchmarks.ope_validation --routing aligned misaligned --seeds 0 1
    python -m benchmarks.ope_validation --checkpoint CK                   # + FAST-Q's arm choice
    python -m benchmarks.ope_validation --routing misaligned aligned --seeds 0 1 --learned \
        --json benchmarks/results/ope_validation.json --markdown benchmarks/results/ope_validation.md

For each routing regime and seed: generate player-platform logs (``episodes`` players, the card's
online truth on ``eval_episodes`` other players), then estimate from the logs alone the value of

- each arm as a policy (every player on arm k),
- segment rules (observed segment → arm: the card's per-segment oracle, the "aligned" and
  "misaligned" preferences, when they differ from it; their truth is run here on the card's
  evaluation players),
- the logged routing (its logged mean return: on-policy),
- FAST-Q's arm choice when ``--checkpoint`` is given (truth: the module served online on the card's
  evaluation players),

- with ``--learned``: BC, FAST-Q (defaults) and FAST-Q (reference preset), each trained on the logs
  by the suite's own code (``benchmarks.harness.registry``: ``plain_bc``, ``_fastq``; the
  ``--budget`` of ``benchmarks.harness.suites``, ``full`` by default: 3000 BC steps, 12 × 250
  FAST-Q steps) on the suite's cached dataset, estimated from the logs with the estimator
  ``fastq evaluate CHECKPOINT --data LOGS`` uses (:func:`rllib_fastq.evaluation.ope.estimate_policy_value`:
  the DR arm choice for FAST-Q's defaults, which serve the chosen arm's cloned action; undiscounted
  FQE, ``gamma = 1``, for the reference, which serves the TD3+BC actor), BC by the same undiscounted
  FQE (:func:`rllib_fastq.evaluation.ope.fqe_from_logs`, BC's flat policy), and each measured
  online on the card's evaluation players (the same players as every other truth here); plus, as a
  diagnostic outside the summary, the arms as deterministic policies by the same FQE,

with the arm-level doubly-robust estimator (:func:`rllib_fastq.evaluation.ope.arm_choice_dr`,
the logged propensities), ``q̂`` = a per-arm ridge regression of the episode return on the first
observation (or the module's arm values with ``--checkpoint``). Prints a markdown table (estimate,
95 % CI, truth ± its standard error, covered?) and the summary: Spearman rank correlation, mean
relative error and CI coverage over the policies.

Two truths per rule (arms, segment rules, routing): ``truth``, the noise-free rule the suite serves,
and ``truth as logged``, the rule with the logs' action noise (``envs.arms.WithLoggingNoise``, same
players): what the logs hold, so what the DR and the logged mean estimate (the noise costs 4-8 %).
Learned policies have one truth. Each truth is a mean over ``eval_episodes`` players (s.e. shown).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
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


def dataset_dir(routing: str, seed: int, *, episodes: int, eval_episodes: int, workdir: str | None) -> str:
    """The logs of (routing, seed): the suite's cached dataset (``benchmarks/results/data``, the
    same files the suite trains on) unless ``workdir`` is given."""
    if workdir is None:
        from benchmarks.harness.suites import player_platform_dataset

        budget = {"data_episodes": episodes, "card_eval_episodes": eval_episodes}
        return str(player_platform_dataset(routing, seed, budget).dir)
    from rllib_fastq.datasets.player_platform import generate_player_platform_dataset

    out = os.path.join(workdir, f"{routing}-{seed}")
    if not os.path.exists(os.path.join(out, "card.json")):
        generate_player_platform_dataset(out, episodes=episodes, seed=seed, routing=routing,
                                         eval_episodes=eval_episodes)
    return out


def validate_regime(routing: str, seed: int, *, episodes: int, eval_episodes: int, n_boot: int,
                    checkpoint: str | None, workdir: str | None, learned: bool = False,
                    budget: str = "full", fqe_steps: int = ope.FQE_STEPS, fqe_ensemble: int = 1,
                    fqe_arms: bool = True) -> list[dict[str, Any]]:
    from rllib_fastq.envs.arms import ArmPolicy, SegmentOraclePolicy, WithLoggingNoise
    from rllib_fastq.envs.evaluate import evaluate_policy
    from rllib_fastq.envs.player_platform import PlayerPlatformConfig
    from rllib_fastq.envs.routing import Router, RoutingPolicy

    out = dataset_dir(routing, seed, episodes=episodes, eval_episodes=eval_episodes, workdir=workdir)
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

    def add(name: str, est: dict[str, Any], truth: float, truth_se: float, *, estimator: str = "DR arm choice",
            kind: str = "rule", in_summary: bool = True, **extra: Any) -> None:
        rows.append({"regime": routing, "seed": seed, "policy": name, "estimate": est["estimate"],
                     "ci": est["ci"], "truth": truth, "truth_se": truth_se, "q_hat": dm_name,
                     "direct_method": est.get("direct_method"), "estimator": estimator, "kind": kind,
                     "in_summary": in_summary, **extra})

    def as_logged(policy: Any) -> dict[str, float]:
        """The rule's truth with the logs' action noise (what the logs hold), on the same players."""
        t = evaluate_policy(WithLoggingNoise(policy, config.logging_noise, seed=seed), config,
                            online["num_episodes"], online["eval_seed"])
        return {"truth_as_logged": t["mean_return"], "truth_as_logged_se": t["sem_return"]}

    for j, name in enumerate(arm_names):
        t = online["arms"][name]
        add(f"arm {name}", ope.arm_choice_dr(q_hat, ep.arm, ep.returns, ep.propensity, j, n_boot=n_boot, seed=seed),
            t["mean_return"], t["sem_return"], **as_logged(ArmPolicy(j, layout)))
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
                                                  n_boot=n_boot, seed=seed), t["mean_return"], t["sem_return"],
            **as_logged(SegmentOraclePolicy(mapping, layout)))
    t = online["logged_routing"]
    router = Router.from_card(card, k)
    add(f"logged routing ({routing})", ope.logged_value(ep.returns, n_boot=n_boot, seed=seed),
        t["mean_return"], t["sem_return"], estimator="logged mean",
        **as_logged(RoutingPolicy(router, layout, seed=online["eval_seed"])))
    if learned:
        add_learned(routing, seed, out, tr, ep, config, online, n_boot=n_boot, budget=budget,
                    fqe_steps=fqe_steps, fqe_ensemble=fqe_ensemble, add=add, fqe_arms=fqe_arms)
    if module is not None:
        from rllib_fastq.evaluation import rollout

        t = evaluate_policy(rollout.policy_fn(module, "best"), config, online["num_episodes"], online["eval_seed"])
        add("FAST-Q arm choice", ope.arm_choice_dr(q_hat, ep.arm, ep.returns, ep.propensity, mv["chosen"],
                                                   n_boot=n_boot, seed=seed), t["mean_return"], t["sem_return"],
            kind="learned")
    return rows


def _fqe_name(res: dict[str, Any]) -> str:
    return "FQE (gamma 1)" + (f", ensemble of {res['ensemble']}" if res.get("ensemble", 1) > 1 else "")


def _batched(fn: Any) -> Any:
    """A one-observation policy as one of a batch of flat observations (for FQE)."""
    return lambda x: np.stack([np.asarray(fn(o), np.float32) for o in np.asarray(x)])


def add_learned(routing: str, seed: int, out: str, tr: Any, ep: Any, config: Any, online: dict[str, Any], *,
                n_boot: int, budget: str, fqe_steps: int, fqe_ensemble: int, add: Any, fqe_arms: bool = True) -> None:
    """Train BC, FAST-Q and FAST-Q (reference) on the logs with the suite's code, estimate each
    from the logs alone and measure it online on the card's evaluation players; the arms by FQE
    as a diagnostic. Each row goes through ``add`` (the caller's row list)."""
    import time

    import torch

    from benchmarks.harness import registry, suites
    from benchmarks.harness.simple import PlainBC
    from rllib_fastq.data.schema import ObsLayout
    from rllib_fastq.envs.arms import ArmPolicy
    from rllib_fastq.envs.evaluate import evaluate_policy

    b = suites.BUDGETS[budget]
    ds = registry.DatasetHandle.load(suites.PLAYER_PLATFORM, routing, seed, out)
    layout = ObsLayout.from_dict(ds.card["obs_layout"])

    def truth(policy: Any) -> dict[str, Any]:
        return evaluate_policy(policy, config, online["num_episodes"], online["eval_seed"])

    def log(msg: str) -> None:
        print(f"[{time.strftime('%H:%M:%S')}] {routing} seed {seed}: {msg}", flush=True)

    # BC: the suite's plain_bc (same class, hiddens, steps), kept here to reach its network for a
    # batched policy.
    t0 = time.perf_counter()
    agent = PlainBC(ds.flat(), hiddens=registry.HIDDENS, seed=seed)
    agent.train(b["bc_steps"])

    def bc_batch(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            s = (torch.as_tensor(np.asarray(x, np.float32)) - agent.mean) / agent.std
            return torch.tanh(agent.actor(s)).numpy()

    fq = {"steps": fqe_steps, "ensemble": fqe_ensemble, "seed": seed, "n_boot": n_boot}
    est = ope.fqe_from_logs(tr, bc_batch, gamma=1.0, ep=ep, **fq)
    t = truth(registry.flat_policy(agent.policy_fn()))
    add("BC", {"estimate": est["values"][0], "ci": est["cis"][0]}, t["mean_return"], t["sem_return"],
        estimator=_fqe_name(est), kind="learned", fqe_td_loss=est["final_td_loss"], gradient_steps=agent.steps,
        action_shift=est["action_shift"], fqe_members=est["member_values"])
    log(f"BC estimate {est['values'][0]:.3f} truth {t['mean_return']:.3f} ({time.perf_counter() - t0:.0f}s)")

    for reference in (False, True):
        name = "FAST-Q (reference)" if reference else "FAST-Q"
        t0 = time.perf_counter()
        trained = registry._fastq(ds, seed, b, reference=reference)
        try:
            module = trained.close.__self__.get_module()  # close is the Algorithm's bound stop()
            # What `fastq evaluate CHECKPOINT --data LOGS` reports (method "auto": the DR arm choice
            # for serve_action="expert", undiscounted FQE for the actor).
            res = ope.estimate_policy_value(module, tr, method="auto", fqe_steps=fqe_steps, fqe_ensemble=fqe_ensemble,
                                            n_boot=n_boot, seed=seed)
            t = truth(trained.policy)
            shares = trained.after_eval() if trained.after_eval else {}
        finally:
            trained.close()
        extra = {"serve_action": res["serve_action"], "method": res["method"],
                 "chosen_arm_share_logs": res["chosen_arm_share"], **shares, **trained.extras}
        if "fqe" in res:
            extra.update(fqe_td_loss=res["fqe"]["final_td_loss"], action_shift=res["fqe"]["action_shift"],
                         fqe_members=res["fqe"]["member_values"])
        else:
            extra.update(direct_method=res["dr"]["direct_method"], dr_correction=res["dr"]["correction"])
        add(name, {"estimate": res["estimate"], "ci": res["ci"]}, t["mean_return"], t["sem_return"],
            estimator=_fqe_name(res["fqe"]) if "fqe" in res else "DR arm choice", kind="learned", **extra)
        log(f"{name} ({res['method']}) estimate {res['estimate']:.3f} truth {t['mean_return']:.3f} "
            f"({time.perf_counter() - t0:.0f}s)")

    # Diagnostic: the same FQE on the arms' deterministic rules (their truth is the card's).
    for k, arm in enumerate(ds.card["arm_names"] if fqe_arms else []):
        est = ope.fqe_from_logs(tr, _batched(ArmPolicy(k, layout)), gamma=1.0, ep=ep, **fq)
        t = online["arms"][arm]
        add(f"arm {arm} (FQE)", {"estimate": est["values"][0], "ci": est["cis"][0]}, t["mean_return"],
            t["sem_return"], estimator=_fqe_name(est), kind="diagnostic", in_summary=False,
            fqe_td_loss=est["final_td_loss"], action_shift=est["action_shift"], fqe_members=est["member_values"])
    if fqe_arms:
        log("arms by FQE done")


def against(r: dict[str, Any], truth: str) -> dict[str, Any]:
    """Row ``r`` judged against its ``truth`` ("truth" or "truth_as_logged"; rows with one truth,
    the learned policies, keep it)."""
    if truth == "truth" or truth not in r:
        return r
    return {**r, "truth": r[truth], "truth_se": r[f"{truth}_se"]}


def summarize(rows: list[dict[str, Any]]) -> dict[str, float]:
    if not rows:
        return {"policies": 0}
    est = np.array([r["estimate"] for r in rows])
    truth = np.array([r["truth"] for r in rows])
    covered = np.array([r["ci"][0] <= r["truth"] <= r["ci"][1] for r in rows])
    return {"policies": len(rows), "spearman": spearman(est, truth) if len(rows) > 1 else float("nan"),
            "mean_relative_error": float(np.mean(np.abs(est - truth) / np.abs(truth))),
            "coverage": float(covered.mean()), "coverage_with_truth_se": float(np.mean([agrees(r) for r in rows]))}


def summaries(rows: list[dict[str, Any]], truth: str = "truth") -> dict[str, dict[str, float]]:
    """Over the summary rows (one estimate per policy), all and by kind, and the FQE diagnostics,
    against ``truth`` ("truth": the rules as served; "truth_as_logged": as the logs hold them)."""
    rows = [against(r, truth) for r in rows]
    main = [r for r in rows if r.get("in_summary", True)]
    out = {"all": summarize(main), "rules": summarize([r for r in main if r.get("kind", "rule") == "rule"]),
           "learned": summarize([r for r in main if r.get("kind") == "learned"])}
    diag = [r for r in rows if r.get("kind") == "diagnostic"]
    if diag:
        out["arms by FQE (diagnostic)"] = summarize(diag)
    for name in sorted({r["policy"] for r in main if r.get("kind") == "learned"}):
        out[f"learned: {name}"] = summarize([r for r in main if r["policy"] == name])
    return out


TRUTHS = {"truth": "Against the truth (rules as served, without the logging noise):",
          "truth_as_logged": "Against the truth as logged (rules with the logs' action noise; learned policies "
                             "as served):"}


def summary_lines(rows: list[dict[str, Any]]) -> list[str]:
    lines = []
    for truth, title in TRUTHS.items():
        if truth != "truth" and not any(truth in r for r in rows):
            continue
        lines.append(title)
        for name, r in summaries(rows, truth).items():
            if not r["policies"]:
                continue
            lines.append(f"- {name}: {r['policies']} policies, Spearman {r['spearman']:.3f}, mean relative error "
                         f"{r['mean_relative_error']:.1%}, CI coverage {r['coverage']:.0%} "
                         f"({r['coverage_with_truth_se']:.0%} agree within the truth's s.e. too)")
        judged = [against(x, truth) for x in rows if x.get("in_summary", True)]
        for routing, seed in sorted({(r["regime"], r["seed"]) for r in rows}):
            r = summarize([x for x in judged if x["regime"] == routing and x["seed"] == seed])
            lines.append(f"- {routing} seed {seed}: Spearman {r['spearman']:.3f}, mean relative error "
                         f"{r['mean_relative_error']:.1%}, CI coverage {r['coverage']:.0%}")
    return lines


def agrees(r: dict[str, Any]) -> bool:
    """The estimate and the (itself noisy) truth agree: within 1.96 combined standard errors
    (the estimate's s.e. read off its interval as width / 3.92)."""
    se = (r["ci"][1] - r["ci"][0]) / 3.92
    return abs(r["estimate"] - r["truth"]) <= 1.96 * float(np.hypot(se, r["truth_se"]))


def markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| regime | seed | policy | estimator | OPE estimate | 95 % CI | truth (± s.e.) | rel. error "
             "| CI covers truth | agrees (truth's s.e. too) | truth as logged (± s.e.) | rel. error | covers |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = r["ci"]
        rel = abs(r["estimate"] - r["truth"]) / abs(r["truth"])
        name = r["policy"] if r.get("in_summary", True) else f"*{r['policy']}*"
        logged = "| (as served) | | |"
        if "truth_as_logged" in r:
            t, se = r["truth_as_logged"], r["truth_as_logged_se"]
            logged = (f"| {t:.3f} ± {se:.3f} | {abs(r['estimate'] - t) / abs(t):.1%} | "
                      f"{'yes' if lo <= t <= hi else 'no'} |")
        lines.append(f"| {r['regime']} | {r['seed']} | {name} | {r.get('estimator', 'DR arm choice')} | "
                     f"{r['estimate']:.3f} | [{lo:.3f}, {hi:.3f}] | {r['truth']:.3f} ± {r['truth_se']:.3f} | "
                     f"{rel:.1%} | "
                     f"{'yes' if lo <= r['truth'] <= hi else 'no'} | {'yes' if agrees(r) else 'no'} {logged}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.ope_validation", description=__doc__.splitlines()[0])
    p.add_argument("--routing", nargs="+", default=["misaligned"])
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--episodes", type=int, default=1000)
    p.add_argument("--eval-episodes", type=int, default=200)
    p.add_argument("--n-boot", type=int, default=1000)
    p.add_argument("--checkpoint", help="a FAST-Q checkpoint trained on these logs (adds its arm choice)")
    p.add_argument("--learned", action="store_true",
                   help="also train BC, FAST-Q and FAST-Q (reference) on each dataset (the suite's code and "
                        "budget), estimate them from the logs and measure them online")
    p.add_argument("--budget", default="full", choices=("full", "quick"), help="the suite's budget for --learned")
    p.add_argument("--fqe-steps", type=int, default=ope.FQE_STEPS, help="FQE gradient steps (--learned)")
    p.add_argument("--fqe-ensemble", type=int, default=1,
                   help="FQE's bootstrap ensemble size (--learned): an interval that holds the fit's noise")
    p.add_argument("--no-fqe-arms", action="store_true",
                   help="skip the diagnostic rows (the arms by FQE) of --learned: saves 3 FQE fits per dataset")
    p.add_argument("--workdir", help="generate the logs here (default: the suite's cache, benchmarks/results/data)")
    p.add_argument("--json", help="also write the rows and summary here")
    p.add_argument("--markdown", help="also write the table and summary here")
    args = p.parse_args(argv)
    if args.learned:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
        import torch

        from benchmarks.harness.suites import _start_ray

        torch.set_num_threads(1)
        _start_ray()
    command = "python -m benchmarks.ope_validation " + " ".join(argv if argv is not None else sys.argv[1:])
    rows: list[dict[str, Any]] = []
    for routing in args.routing:
        for seed in args.seeds:
            rows += validate_regime(routing, seed, episodes=args.episodes, eval_episodes=args.eval_episodes,
                                    n_boot=args.n_boot, checkpoint=args.checkpoint, workdir=args.workdir,
                                    learned=args.learned, budget=args.budget, fqe_steps=args.fqe_steps,
                                    fqe_ensemble=args.fqe_ensemble, fqe_arms=not args.no_fqe_arms)
            if args.json:  # after every dataset: a long run leaves what it measured
                Path(args.json).write_text(json.dumps({"command": command, "rows": rows, "summary": summaries(rows),
                                                       "summary_as_logged": summaries(rows, "truth_as_logged")},
                                                      indent=1, default=float))
    table, lines = markdown(rows), summary_lines(rows)
    print(table)
    print()
    print(f"q̂ of the DR rows: {rows[0]['q_hat']} (FAST-Q's rows: its own arm values)")
    print("\n".join(lines))
    if args.markdown:
        Path(args.markdown).write_text(f"# Off-policy estimates against the simulator's truth\n\n`{command}`\n\n"
                                       f"{table}\n\n" + "\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
