"""The ``fastq`` command: ``train``, ``tune``, ``serve``, ``data``, ``evaluate``, ``explain``.

User errors (bad files, bad values) end with a non-zero exit and a one-line reason, no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import sys
import warnings
from typing import Any

from rllib_fastq.data import schema

# ``fastq data <source>``: each source module provides ``add_cli_arguments(parser)`` and
# ``run_cli(args) -> int``.
DATA_SOURCES = {
    "player-platform": "rllib_fastq.datasets.player_platform",
    "mujoco": "rllib_fastq.datasets.mujoco",
}
SERVE_MODULE = "rllib_fastq.serve"  # same contract as the data sources

USER_ERRORS = (ValueError, FileNotFoundError, FileExistsError, KeyError, TypeError)


def _policy_id(value: str) -> int | str:
    try:
        return schema.parse_arm_or_best(value)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _print_eval(ev: dict[str, Any]) -> None:
    """The evaluation block of ``train`` and ``evaluate``."""
    sem = f" ± {ev['sem_return']:.2f} (s.e.)" if "sem_return" in ev else f" ± {ev['std_return']:.2f} (std)"
    print(f"policy {ev['policy_id']!r}: mean return {ev['mean_return']:.3f}{sem} over {ev['num_episodes']} "
          f"episodes of {ev['env']} (seed {ev['seed']})")
    comps = ev.get("components")
    if isinstance(comps, dict):
        print("  per component: " + ", ".join(f"{k} {v:.3f}" for k, v in comps.items()))
    if "normalized_score" in ev:
        print(f"  D4RL-normalised score: {ev['normalized_score']:.1f}")
    if "arms" in ev:
        print("  logging arms (card, same players): " + ", ".join(f"{k} {v:.3f}" for k, v in ev["arms"].items()))
        verdict = "beats" if ev["margin_over_best_arm"] > 0 else "does not beat"
        print(f"  best arm {ev['best_arm']} {ev['best_arm_return']:.3f}: FAST-Q {verdict} it "
              f"({100 * ev['margin_over_best_arm']:+.1f} %)")


def run_train(args: argparse.Namespace) -> int:
    """``fastq train``: per-iteration progress, then a summary."""
    from rllib_fastq.spec import load_spec
    from rllib_fastq.train import train

    spec = load_spec(args.config, args.set or (), data=args.data, env=args.env)
    summary = train(spec, iterations=args.iterations, out=args.out, overwrite=args.overwrite, resume=args.resume)
    print(f"checkpoint: {summary['checkpoint']} ({summary['iterations']} iterations, "
          f"{summary['train_seconds']:.0f} s)")
    if "evaluation" in summary:
        _print_eval(summary["evaluation"])
    return 0


def run_tune(args: argparse.Namespace) -> int:
    """``fastq tune``: run or resume a search; print and export the best trial."""
    from rllib_fastq import tuning
    from rllib_fastq.spec import load_spec

    if (args.resume is None) == (args.config is None):
        raise ValueError("give a tune_configs/*.yaml file or --resume DIR (one of them)")
    if args.resume and args.override:
        raise ValueError("--override cannot change a search being resumed (its trials keep the settings "
                         "they started with); start a new search with the overrides instead")
    spec = None if args.resume else load_spec(args.config, args.override or (), for_tune=True)
    best = tuning.tune_search(spec, resume=args.resume)
    for t in best["trials"]:
        print(f"trial {t['trial']}: {t['iterations']} iterations, {best['metric']} = {t[best['metric']]}"
              + (f", error: {t['error']}" if t["error"] else ""))
    print(f"best trial {best['best_trial']}: {best['metric']} = {best['best_value']}")
    print(f"best config: {json.dumps(best['best_config'])}")
    print(f"best checkpoint: {best['best_checkpoint']}")
    out = args.export or f"{best['experiment']}/best.json"
    if args.export:
        with open(args.export, "w") as f:
            json.dump(best, f, indent=1, default=str)
    print(f"exported: {out}")
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    """``fastq evaluate``: online (env) or offline (dataset) metrics of a checkpoint."""
    from rllib_fastq.evaluation.online import evaluate_checkpoint

    res = evaluate_checkpoint(args.checkpoint, env=args.env, data=args.data, episodes=args.episodes,
                                       policy_id=args.policy_id, seed=args.seed, ope_method=args.ope_method)
    if "offline" in res:
        from rllib_fastq.evaluation.ope import format_report

        print(format_report(res))
        off = res["offline"]
        print(f"offline on {off['rows']} rows: actor action MSE {off['actor_action_mse']:.4f}, expert action MSE "
              f"{off['expert_action_mse']:.4f}, Q mean {off['q_mean']:.3f}, TD RMSE {off['td_rmse']:.4f} "
              f"(gamma {off['gamma']})")
    else:
        _print_eval(res)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1, default=float)
    return 0


def run_explain(args: argparse.Namespace) -> int:
    """``fastq explain``: the per-component values of the chosen and the routed arm (and a PNG)."""
    from rllib_fastq.checkpoints import load_module, run_info
    from rllib_fastq.evaluation import explain_plot

    if not os.path.exists(args.checkpoint):
        raise FileNotFoundError(f"checkpoint {args.checkpoint} does not exist")
    module = load_module(args.checkpoint)
    schema.check_arm_or_best(args.policy_id, module.num_policies, "--policy-id")
    x = explain_plot.parse_obs(args.obs, module.layout)
    card = (run_info(args.checkpoint).get("spec") or {}).get("card")
    arm_names = json.loads(open(card).read()).get("arm_names") if card and os.path.isfile(card) else None
    if args.png:
        ex = explain_plot.write_explanation_png(module, x, args.png, policy_id=args.policy_id, arm_names=arm_names)
    else:
        ex = explain_plot.explain_arms(module, x, args.policy_id)
    for key in ("chosen", "routed"):
        e = ex[key]
        parts = " + ".join(f"{n} {v:.3f}" for n, v in e["components"].items())
        print(f"{key} arm {e['arm']}: Q {e['q']:.3f} = {parts}")
        if "arm_value_components" in e:  # arm_value_decomposition: V_k = Σ_j w_j V_{k,j}
            vparts = ", ".join(f"{n} {v:.3f}" for n, v in e["arm_value_components"].items())
            print(f"{key} arm {e['arm']}: arm value {e['arm_value']:.3f} = Σ_j w_j V_j; V_j: {vparts}")
    print("arm values: " + ", ".join(f"{v:.3f}" for v in ex["arm_values"]) + "; routing probabilities: "
          + ", ".join(f"{v:.3f}" for v in ex["routing_probabilities"]))
    if args.png:
        print(f"png: {args.png}")
    return 0


def _serve_parser(p: argparse.ArgumentParser) -> None:
    try:
        mod = importlib.import_module(SERVE_MODULE)
    except ModuleNotFoundError as e:
        if e.name != SERVE_MODULE:
            raise

        def missing(args: argparse.Namespace) -> int:
            raise ValueError(f"serving needs {SERVE_MODULE}, which this installation does not have")

        p.add_argument("checkpoint")
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=8000)
        p.set_defaults(run=missing)
        return
    mod.add_cli_arguments(p)
    p.set_defaults(run=mod.run_cli)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fastq", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks and Ray's logs")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train on offline data, evaluate, save a checkpoint",
                       description="Train FAST-Q. Without arguments: the shipped player-platform data, "
                                   "a few minutes on 2 CPUs, compared with the logging arms.")
    p.add_argument("--data", nargs="+", metavar="PATH", help="parquet/JSON files or directories")
    p.add_argument("--config", metavar="YAML", help="a tune_configs/*.yaml run spec (its search is ignored)")
    p.add_argument("--iterations", type=int, help="training iterations (default: the spec's run.iterations)")
    p.add_argument("--set", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="override a setting: alpha=2.5, run.final_eval_episodes=50, learners.num_learners=2")
    p.add_argument("--env", metavar="ENV_ID", help="evaluate in this env (gymnasium id)")
    p.add_argument("--out", metavar="DIR", help="checkpoint directory (default: the spec's run.out)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing checkpoint (the old one is kept until the new one is complete)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose last complete checkpoint is in --out (same data and settings; "
                        "checkpoints every run.checkpoint_every iterations)")
    p.set_defaults(run=run_train)

    p = sub.add_parser("tune", help="run a Tune search from a tune_configs/*.yaml file")
    p.add_argument("config", nargs="?", metavar="YAML", help="the search (see tune_configs/README.md)")
    p.add_argument("--override", action="extend", nargs="+", metavar="KEY=VALUE",
                   help="override a setting: tune.num_samples=2, search.alpha={choice: [2, 3]}")
    p.add_argument("--resume", metavar="DIR", help="resume an interrupted search (its experiment directory)")
    p.add_argument("--export", metavar="JSON", help="also write the best trial's config and checkpoint here")
    p.set_defaults(run=run_tune)

    p = sub.add_parser("evaluate", help="evaluate a checkpoint online (env) or offline (dataset)",
                       description="Evaluate a checkpoint: online in an env, or from logs (--data): the "
                                   "policy's off-policy value with its 95 %% interval, the logged routing's "
                                   "value, per component, and TD metrics.")
    p.add_argument("checkpoint")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--env", metavar="ID", help="gymnasium env id (default: the one it was trained with)")
    src.add_argument("--data", nargs="+", metavar="PATH", help="offline metrics on this (held-out) data")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--policy-id", type=_policy_id, default="best", help="an arm index or 'best' (default)")
    p.add_argument("--seed", type=int, help="first episode seed (default: the dataset card's)")
    p.add_argument("--ope-method", choices=("auto", "dr", "fqe"), default="auto",
                   help="with --data: the off-policy estimator of the policy's value: 'dr' the arm choice's "
                        "doubly-robust value (the served policy when serve_action='expert'), 'fqe' fitted Q "
                        "evaluation of the served actions, 'auto' (default) DR for serve_action='expert', else FQE")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.set_defaults(run=run_evaluate)

    p = sub.add_parser("explain", help="per-component values of the chosen and the routed arm (and a PNG)")
    p.add_argument("checkpoint")
    p.add_argument("--obs", required=True, metavar="JSON",
                   help="one flat observation as JSON ([...] or {\"temporal\": ..., \"static\": ...}) or a JSON file")
    p.add_argument("--policy-id", type=_policy_id, default="best", help="an arm index or 'best' (default)")
    p.add_argument("--png", metavar="PATH", help="write the bars per component here (needs matplotlib)")
    p.set_defaults(run=run_explain)

    _serve_parser(sub.add_parser("serve", help="serve a checkpoint over HTTP (Ray Serve)"))

    data = sub.add_parser("data", help="generate or convert offline datasets")
    data_sub = data.add_subparsers(dest="source", required=True)
    for name, module in DATA_SOURCES.items():
        p = data_sub.add_parser(name, help=f"make the {name} datasets")
        importlib.import_module(module).add_cli_arguments(p)
        p.set_defaults(run=importlib.import_module(module).run_cli)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.debug:  # Ray/RLlib's start-up warnings drown the progress lines
        for name in ("ray", "ray.rllib", "ray.tune", "ray.serve"):
            logging.getLogger(name).setLevel(logging.ERROR)
        warnings.filterwarnings("ignore")
    try:
        return int(args.run(args) or 0)
    except USER_ERRORS as e:
        if args.debug:
            raise
        msg = str(e).strip().splitlines()
        print(f"fastq {args.command}: error: {msg[0] if msg else type(e).__name__}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
