"""Player-platform quality benchmark (issue 6): FAST-Q, its ablations, TD3+BC, RLlib's CQL / IQL /
BC / MARWIL and the logging arms, scored ONLINE in the simulator on held-out players.

    python -m benchmarks.player_platform_quality [--seeds 5] [--quick] [--resume]

Protocol: every learned method gets the same number of gradient steps (FAST-Q: phase 1 + phase 2),
the FINAL policy is scored (no checkpoint selection) on ``--episodes`` held-out players seeded
10_000.. (the data were generated with seeds 0 and 1), with common random numbers across methods.
Results go to ``benchmarks/results/player_platform_quality.json`` after every run (``--resume``
skips runs already there); markdown tables go to stdout, plots to ``benchmarks/results/``.

Why this module is long: every method of the table (FAST-Q and its ablations, TD3+BC, RLlib's
baselines, the arms) runs, resumes and reports through one ``Bench`` object; the shared settings
already live in ``player_platform_common``, and the harness of the next issue replaces this file.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import sys
import time
import traceback
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import baselines, counterfactual  # noqa: E402
from benchmarks.player_platform_common import (  # noqa: E402
    CF_SEED,
    EVAL_SEED,
    FULL,
    GAMMA,
    HIDDENS,
    QUICK,
    RESULTS,
    TRAIN,
    chosen,
    evaluate,
    fastq_config,
)
from rllib_fastq import _rllib_compat as compat  # noqa: E402
from rllib_fastq.data.io import write_json_atomic  # noqa: E402

ABLATIONS = {
    "FAST-Q": {},
    "FAST-Q w/o adversary": {"grl_lambda": 0.0},
    "FAST-Q w/o exploration": {"max_exploration": 0.0},
    "FAST-Q w/o decomposition": {"decomposition_weight": 0.0, "td_weight": 1.0},
    "FAST-Q w/o phase 1": {"pretrain_steps": 0},
    # Trained as FAST-Q; acts with the arm the experiment's router prefers for the player (keep
    # the routing, let FAST-Q improve each arm's policy) instead of choosing the "best" arm by Q.
    "FAST-Q (routed arm)": {},
    # Settings chosen on tuning players by benchmarks/player_platform_tuning.py (see TUNED).
    "FAST-Q (tuned)": {},
    "FAST-Q (tuned) w/o adversary": {"grl_lambda": 0.0},
    "FAST-Q (tuned) routed arm": {},
}
ROUTED = {"FAST-Q (routed arm)", "FAST-Q (tuned) routed arm"}
# Method -> the tuning result it takes its settings from (ABLATIONS entries override them).
TUNED = {"FAST-Q (tuned)": "FAST-Q", "FAST-Q (tuned) w/o adversary": "FAST-Q", "FAST-Q (tuned) routed arm": "FAST-Q",
         "TD3+BC (tuned)": "TD3+BC"}
CF_METHODS = ("FAST-Q", "FAST-Q w/o adversary", "FAST-Q (tuned)", "FAST-Q (tuned) w/o adversary")


def routed_policy(module: Any) -> Any:
    """FAST-Q acting as the arm the router prefers for the player's observed segment."""
    from rllib_fastq.envs.arms import PREFERRED_ARM
    from rllib_fastq.evaluation.rollout import policy_fn

    per_arm = [policy_fn(module, k) for k in range(3)]

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        return per_arm[PREFERRED_ARM[int(np.argmax(obs["static"][:3]))]](obs)

    return act


def tuned_settings(method: str) -> dict[str, float]:
    return chosen(TUNED[method])


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.p = QUICK if args.quick else FULL
        self.path = pathlib.Path(args.out)
        self.res: dict[str, Any] = {}
        if args.resume and self.path.exists():
            self.res = json.loads(self.path.read_text())
        self.res.setdefault("runs", {})
        self.res.setdefault("counterfactual", {})
        self.res.setdefault("failures", {})
        self.res["meta"] = {
            "command": "python -m benchmarks.player_platform_quality " + " ".join(sys.argv[1:]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
                       f"torch {torch.__version__} CPU, 1 torch thread",
            "budget": self.p, "eval_seed": EVAL_SEED, "gamma": GAMMA, "hiddens": HIDDENS,
        }
        self._cf_states = self._cf_truth = None

    def save(self) -> None:
        write_json_atomic(self.path, self.res)

    def done(self, method: str, seed: int) -> bool:
        return str(seed) in self.res["runs"].get(method, {})

    def record(self, method: str, seed: int, entry: dict[str, Any]) -> None:
        self.res["runs"].setdefault(method, {})[str(seed)] = entry
        self.save()
        ev = entry["eval"]
        print(f"[{time.strftime('%H:%M:%S')}] {method} seed {seed}: return {ev['mean_return']:.3f} "
              f"({entry.get('train_s', 0):.0f}s train)", flush=True)

    def cf(self) -> tuple[list, dict]:
        if self._cf_states is None:
            t = time.perf_counter()
            self._cf_states = counterfactual.make_states(self.p["cf_states"], CF_SEED)
            self._cf_truth = counterfactual.true_values(self._cf_states, GAMMA, self.p["cf_rollouts"], CF_SEED + 1)
            print(f"counterfactual truth: {len(self._cf_states)} states in {time.perf_counter() - t:.0f}s",
                  flush=True)
        return self._cf_states, self._cf_truth

    def record_cf(self, method: str, seed: int, pred: np.ndarray) -> None:
        _, truth = self.cf()
        self.res["counterfactual"].setdefault(method, {})[str(seed)] = {
            name: counterfactual.ranking_metrics(pred, t) for name, t in truth.items()}

    # -- runs ------------------------------------------------------------------------------------

    def rules(self) -> None:
        from rllib_fastq.envs import ARM_NAMES, ArmPolicy, SegmentOraclePolicy

        if "rules" in self.res and not self.args.quick:
            return
        out = {f"arm {k} ({ARM_NAMES[k]})": evaluate(ArmPolicy(k), False, self.p["episodes"]) for k in range(3)}
        out["per-segment oracle"] = evaluate(SegmentOraclePolicy((0, 1, 2)), False, self.p["episodes"])
        self.res["rules"] = out
        self.save()

    def fastq(self, method: str, seed: int) -> None:
        from rllib_fastq.evaluation.rollout import policy_fn

        p, curve = self.p, []
        t = time.perf_counter()
        overrides = {**(tuned_settings(method) if method in TUNED else {}), **ABLATIONS[method]}
        algo = fastq_config(seed, p, overrides).build_algo()
        train_s = 0.0
        for i in range(p["total"] // p["spi"]):
            t0 = time.perf_counter()
            algo.train()
            train_s += time.perf_counter() - t0
            step = (i + 1) * p["spi"]
            if method == "FAST-Q" and p["pretrain"] < step:
                ev = evaluate(policy_fn(algo.get_module(), "best"), False, p["curve_episodes"])
                curve.append([step, ev["mean_return"]])
        module = algo.get_module()
        act = routed_policy(module) if method in ROUTED else policy_fn(module, "best")
        entry = {"eval": evaluate(act, False, p["episodes"]), "curve": curve,
                 "train_s": train_s, "wall_s": time.perf_counter() - t}
        if method in CF_METHODS:
            self.record_cf(method, seed, counterfactual.fastq_q1(module, self.cf()[0]))
        algo.stop()
        self.record(method, seed, entry)

    def td3bc(self, seed: int, method: str = "TD3+BC") -> None:
        p, curve = self.p, []
        t = time.perf_counter()
        alpha = tuned_settings(method)["alpha"] if method in TUNED else 2.5
        agent = baselines.NormalizedTD3BC(self.data, hiddens=HIDDENS, gamma=GAMMA, seed=seed, alpha=alpha)
        for _ in range(p["total"] // p["spi"]):
            agent.train(p["spi"])
            curve.append([agent.steps, evaluate(agent.policy_fn(), True, p["curve_episodes"])["mean_return"]])
        entry = {"eval": evaluate(agent.policy_fn(), True, p["episodes"]), "curve": curve,
                 "wall_s": time.perf_counter() - t}
        if method == "TD3+BC":
            self.record_cf(method, seed, counterfactual.td3bc_q1(agent, self.cf()[0]))
        self.record(method, seed, entry)

    def rllib(self, name: str, seed: int) -> None:
        p = self.p
        t = time.perf_counter()
        algo = baselines.rllib_config(name, TRAIN, steps_per_iter=p["spi"], gamma=GAMMA, seed=seed,
                                      hiddens=HIDDENS).build_algo()
        build_s = time.perf_counter() - t
        for _ in range(p["total"] // p["spi"]):
            algo.train()
        module = compat.local_learner(algo.learner_group).module["default_policy"]
        entry = {"eval": evaluate(baselines.rllib_policy_fn(module), True, p["episodes"]),
                 "build_s": build_s, "wall_s": time.perf_counter() - t}
        algo.stop()
        self.record(f"RLlib {name}", seed, entry)

    def run(self) -> None:
        seeds = list(range(self.args.seeds))
        only = set(self.args.only.split(",")) if self.args.only else None
        self.rules()
        self.data = baselines.load_flat(TRAIN)
        jobs: list[tuple[str, Any]] = []
        for seed in seeds:
            jobs += [("FAST-Q", seed), ("TD3+BC", seed)]
            jobs += [(m, seed) for m in ABLATIONS if m != "FAST-Q"] + [("TD3+BC (tuned)", seed)]
            jobs += [(f"RLlib {n}", seed) for n in baselines.RLLIB_ALGOS]
        for method, seed in jobs:
            if (only and method not in only) or self.done(method, seed):
                continue
            if self.res["failures"].get(method, {}).get("skip"):
                continue
            try:
                if method in ABLATIONS:
                    self.fastq(method, seed)
                elif method.startswith("TD3+BC"):
                    self.td3bc(seed, method)
                else:
                    self.rllib(method.split()[1], seed)
            except Exception as e:  # noqa: BLE001 - record, report and go on with the others
                traceback.print_exc()
                self.res["failures"][method] = {"seed": seed, "error": repr(e)[:800],
                                                "skip": method.startswith("RLlib")}
                self.save()


# -- report ----------------------------------------------------------------------------------------

COMPS = ("revenue", "engagement", "cost", "dwell")
ORDER = [*ABLATIONS, "TD3+BC", "TD3+BC (tuned)", *(f"RLlib {n}" for n in baselines.RLLIB_ALGOS)]


def summary(res: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """method -> {n, return: (mean, std), component: (mean, std)} over seeds (rules: one run)."""
    out: dict[str, dict[str, Any]] = {}
    for m in ORDER:
        runs = list(res["runs"].get(m, {}).values())
        if not runs:
            continue
        row: dict[str, Any] = {"n": len(runs)}
        vals = {"return": [r["eval"]["mean_return"] for r in runs]}
        vals |= {c: [r["eval"]["components"][c] for r in runs] for c in COMPS}
        for k, v in vals.items():
            row[k] = (float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
        out[m] = row
    for m, ev in res.get("rules", {}).items():
        out[m] = {"n": 0, "return": (ev["mean_return"], ev["sem_return"]),
                  **{c: (ev["components"][c], 0.0) for c in COMPS}}
    return out


def _pct(a: float, b: float) -> str:
    return f"{100 * (a - b) / abs(b):+.1f} %"


def tables(res: dict[str, Any]) -> str:
    s, meta = summary(res), res["meta"]
    lines = [f"Budget {meta['budget']['total']} gradient steps per learned method, final policy, "
             f"{meta['budget']['episodes']} held-out players (seeds {meta['eval_seed']}..).", "",
             "| method | seeds | return | revenue | engagement | cost | dwell |", "|---|---|---|---|---|---|---|"]
    for m, row in s.items():
        n = f"{row['n']}" if row["n"] else "rule"
        cells = [f"{row[k][0]:.2f} ± {row[k][1]:.2f}" if row["n"] or k == "return" else f"{row[k][0]:.2f}"
                 for k in ("return", *COMPS)]
        lines.append(f"| {m} | {n} | " + " | ".join(cells) + " |")
    lines.append("\nRule rows: one deterministic policy, ± is the standard error over players; learned rows: "
                 "mean ± std over training seeds.")
    rules = {m: r for m, r in s.items() if m.startswith("arm ")}
    for fq in ("FAST-Q", "FAST-Q (routed arm)", "FAST-Q (tuned)", "FAST-Q (tuned) routed arm"):
        if fq not in s or not rules:
            continue
        best = max(rules, key=lambda m: rules[m]["return"][0])
        td3 = "TD3+BC (tuned)" if fq in TUNED else "TD3+BC"
        refs = [(f"best arm: {best}", s[best])] + ([(td3, s[td3])] if td3 in s else [])
        lines += ["", f"| {fq} vs | return | revenue | engagement | dwell | cost |", "|---|---|---|---|---|---|"]
        for name, ref in refs:
            cells = [_pct(s[fq][k][0], ref[k][0]) for k in ("return", "revenue", "engagement", "dwell", "cost")]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "| method | casual | competitive | spender |  (return per observed segment)", "|---|---|---|---|"]
    evs = {m: [r["eval"] for r in res["runs"][m].values()] for m in ORDER if res["runs"].get(m)}
    evs |= {m: [ev] for m, ev in res.get("rules", {}).items()}
    for m, runs in evs.items():
        segs = [np.mean([r["segment_returns"].get(g, np.nan) for r in runs])
                for g in ("casual", "competitive", "spender")]
        lines.append(f"| {m} | " + " | ".join(f"{v:.2f}" for v in segs) + " |")
    cf = res.get("counterfactual", {})
    if cf:
        lines += ["", "| critic | continuation | seeds | pairwise acc. | top-1 acc. | Spearman (within state) "
                  "| Spearman (all pairs) |", "|---|---|---|---|---|---|---|"]
        for cont in ("switch", "one_step"):
            for m in (*CF_METHODS, "TD3+BC"):
                runs = [r[cont] for r in cf.get(m, {}).values()]
                if not runs:
                    continue
                cells = []
                for k in ("pairwise_accuracy", "top1_accuracy", "spearman_within_state", "spearman_global"):
                    v = [r[k] for r in runs]
                    cells.append(f"{np.mean(v):.3f} ± {np.std(v, ddof=1) if len(v) > 1 else 0.0:.3f}")
                lines.append(f"| {m} | {cont} | {len(runs)} | " + " | ".join(cells) + " |")
    for m, f in res.get("failures", {}).items():
        lines.append(f"\nFAILED: {m} (seed {f['seed']}): {f['error']}")
    return "\n".join(lines)


def plots(res: dict[str, Any], outdir: pathlib.Path, suffix: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = summary(res)
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in ("FAST-Q", "TD3+BC"):
        curves = [r["curve"] for r in res["runs"].get(m, {}).values() if r.get("curve")]
        if not curves:
            continue
        n = min(len(c) for c in curves)
        x = [p[0] for p in curves[0][:n]]
        y = np.array([[p[1] for p in c[:n]] for c in curves])
        ax.errorbar(x, y.mean(0), yerr=y.std(0), marker="o", capsize=3, label=f"{m} ({len(curves)} seeds)")
    for (m, v), style in zip(res.get("rules_curve", {}).items(), ("--", ":")):
        ax.axhline(v, ls=style, color="grey", label=m)
    n_curve = res["meta"]["budget"]["curve_episodes"]
    ax.set(xlabel="gradient steps (FAST-Q: incl. phase 1)", ylabel=f"return, first {n_curve} held-out players",
           title="Player platform: learning curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / f"player_platform_learning_curves{suffix}.png", dpi=120)
    plt.close(fig)

    names = [m for m in ("FAST-Q", "FAST-Q (tuned)", "FAST-Q (tuned) routed arm", "TD3+BC", "TD3+BC (tuned)",
                         "RLlib BC", "arm 1 (competitive)", "per-segment oracle") if m in s]
    fig, ax = plt.subplots(figsize=(9, 4))
    w = 0.8 / max(1, len(names))
    for i, m in enumerate(names):
        xs = np.arange(len(COMPS) + 1) + i * w
        ax.bar(xs, [s[m][k][0] for k in ("return", *COMPS)], w, yerr=[s[m][k][1] for k in ("return", *COMPS)],
               capsize=2, label=m)
    ax.set_xticks(np.arange(len(COMPS) + 1) + w * (len(names) - 1) / 2, ["return", *COMPS])
    ax.set(ylabel="per-episode sum", title="Player platform: return and reward components")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(outdir / f"player_platform_components{suffix}.png", dpi=120)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 seed, tiny budgets (minutes)")
    parser.add_argument("--resume", action="store_true", help="skip runs already in --out")
    parser.add_argument("--only", default="", help="comma-separated method names to run")
    parser.add_argument("--report-only", action="store_true", help="tables and plots from --out")
    parser.add_argument("--out", default=None)
    parser.add_argument("--merge", default="", help="comma-separated result files (e.g. of a parallel "
                        "--only run) whose runs are merged into --out before the report")
    args = parser.parse_args()
    if args.quick:
        args.seeds = 1
    args.out = args.out or str(RESULTS / ("player_platform_quality_quick.json" if args.quick
                                          else "player_platform_quality.json"))
    torch.set_num_threads(1)
    if not args.report_only:
        import ray

        from rllib_fastq.local_ray import init_local_ray

        for attempt in range(3):  # a busy machine can time out the first start
            try:
                init_local_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
                break
            except Exception:  # noqa: BLE001
                ray.shutdown()
                if attempt == 2:
                    raise
                time.sleep(10)
        Bench(args).run()
        ray.shutdown()
    res = json.loads(pathlib.Path(args.out).read_text())
    if "rules_curve" not in res:  # reference lines of the learning curves, on the curves' players
        from rllib_fastq.envs import ArmPolicy, SegmentOraclePolicy

        n = res["meta"]["budget"]["curve_episodes"]
        res["rules_curve"] = {"arm 1 (competitive)": evaluate(ArmPolicy(1), False, n)["mean_return"],
                              "per-segment oracle": evaluate(SegmentOraclePolicy((0, 1, 2)), False, n)["mean_return"]}
    for extra in filter(None, args.merge.split(",")):
        other = json.loads(pathlib.Path(extra).read_text())
        for key in ("runs", "counterfactual"):
            for m, by_seed in other.get(key, {}).items():
                res[key].setdefault(m, {}).update(by_seed)
        res["failures"].update(other.get("failures", {}))
    pathlib.Path(args.out).write_text(json.dumps(res, indent=1, default=float))
    print(tables(res))
    out = pathlib.Path(args.out)
    if out.name in ("player_platform_quality.json", "player_platform_quality_quick.json"):
        plots(res, out.parent, suffix="_quick" if args.quick else "")
    else:  # a side file of a parallel --only run: its few rows must not replace the main plots
        print(f"no plots for {out.name}: merge it into the main results (--report-only --merge {out})")


if __name__ == "__main__":
    main()
