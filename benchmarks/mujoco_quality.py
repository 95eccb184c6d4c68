"""D4RL-style MuJoCo quality benchmark (issue 6, part 2) on the datasets of ``fastq data mujoco``.

    python -m benchmarks.mujoco_quality --env HalfCheetah-v5 [--datasets medium,medium-replay,multi-policy]
        [--seeds 3] [--steps 5000] [--only "FAST-Q,TD3+BC"] [--report-only [--merge A.json,B.json]]

Methods, all with the same number of gradient steps of batch 256 and the same 256-256 MLPs:

* ``FAST-Q``: the dataset's behaviour ``policy_id`` s as arms (K = the number of policies in the
  file; 1 for ``medium``), phase 1 for the first ``--pretrain`` steps, acting with the "best" arm;
* ``FAST-Q (K=1)``: the same rows with the labels dropped (all ``policy_id`` = 0), i.e. FAST-Q as
  plain single-policy offline RL; only run where the file has more than one policy;
* ``TD3+BC``: the plain PyTorch loop of ``benchmarks/td3bc_plain.py`` with its state normalisation;
* ``RLlib BC``, ``RLlib IQL``, ``RLlib CQL``: RLlib 2.60's own algorithms (new API stack, library
  defaults except the shared widths, batch and learning rates, and CQL's ``bc_iters=0``: see
  ``benchmarks/rllib_cql_counter.py``).

The FINAL policy is scored (no checkpoint selection): the deterministic policy's undiscounted
return over ``--episodes`` episodes seeded 100_000.. (the data used seeds below 10_000), reported
as a D4RL normalised score (``rllib_fastq.evaluation.scores``). Results go to
``benchmarks/results/mujoco_quality_<env>.json`` after every run (one file per environment, so
environments can run side by side); tables go to stdout (``--merge`` adds other environments'
files to the table), a learning-curve
plot per environment to ``benchmarks/results/``.
Rerunning skips the (dataset, method, seed) runs already in the JSON and resumes an unfinished
RLlib run from its last checkpoint (``benchmarks/results/.checkpoints/``); ``--first-seed`` lets
separate processes (separate ``--out`` files, joined with ``--merge``) take one seed each.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import pathlib
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("OMP_NUM_THREADS", "1")

import gymnasium as gym  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from benchmarks import baselines  # noqa: E402
from rllib_fastq import _rllib_compat as compat  # noqa: E402
from rllib_fastq.data.io import write_json_atomic  # noqa: E402
from rllib_fastq.evaluation.rollout import evaluate_policy_fn  # noqa: E402
from rllib_fastq.evaluation.scores import normalized_score  # noqa: E402

DATA = ROOT / "offline_data/mujoco"
RESULTS = ROOT / "benchmarks/results"
EVAL_SEED = 100_000
HIDDENS = [256, 256]
METHODS = ("FAST-Q", "FAST-Q (best logged arm)", "FAST-Q (K=1)", "TD3+BC", "RLlib BC", "RLlib IQL", "RLlib CQL")
DEFAULT_METHODS = "FAST-Q,FAST-Q (K=1),TD3+BC,RLlib BC"
# Published D4RL v2 normalised scores at 1M gradient steps (Kostrikov et al., "Offline RL with
# Implicit Q-Learning", ICLR 2022, Table 1; CQL as re-run there). Other data: D4RL's behaviour
# policies, and their "medium-expert" mixes an expert where our "medium-high" has our best SAC policy.
PUBLISHED = {
    ("HalfCheetah-v5", "medium"): {"BC": 42.6, "TD3+BC": 48.3, "CQL": 44.0, "IQL": 47.4},
    ("Hopper-v5", "medium"): {"BC": 52.9, "TD3+BC": 59.3, "CQL": 58.5, "IQL": 66.3},
    ("Walker2d-v5", "medium"): {"BC": 75.3, "TD3+BC": 83.7, "CQL": 72.5, "IQL": 78.3},
    ("HalfCheetah-v5", "medium-replay"): {"BC": 36.6, "TD3+BC": 44.6, "CQL": 45.5, "IQL": 44.2},
    ("Hopper-v5", "medium-replay"): {"BC": 18.1, "TD3+BC": 60.9, "CQL": 95.0, "IQL": 94.7},
    ("Walker2d-v5", "medium-replay"): {"BC": 26.0, "TD3+BC": 81.8, "CQL": 77.2, "IQL": 73.9},
    ("HalfCheetah-v5", "medium-high"): {"BC": 55.2, "TD3+BC": 90.7, "CQL": 91.6, "IQL": 86.7},
    ("Hopper-v5", "medium-high"): {"BC": 52.5, "TD3+BC": 98.0, "CQL": 105.4, "IQL": 91.5},
    ("Walker2d-v5", "medium-high"): {"BC": 107.5, "TD3+BC": 110.1, "CQL": 108.8, "IQL": 109.6},
}


def score(act: Callable[[np.ndarray], np.ndarray], env_id: str, episodes: int) -> dict[str, float]:
    """Mean undiscounted return of ``act`` over ``episodes`` episodes seeded EVAL_SEED + i, normalised."""
    ret = evaluate_policy_fn(act, env_id, num_episodes=episodes, seed=EVAL_SEED)["mean_return"]
    return {"return": ret, "normalized": normalized_score(env_id, ret), "episodes": episodes}


def best_logged_arm(path: str) -> int:
    """The arm whose logged episodes have the highest mean return: a choice from the data alone."""
    import pandas as pd

    from rllib_fastq.data.io import read_transitions

    tr = read_transitions(path)
    episodes = pd.DataFrame({"eps": tr.eps_id, "arm": tr.policy_id, "r": tr.rewards}).groupby("eps")
    per_episode = pd.DataFrame({"arm": episodes["arm"].first(), "ret": episodes["r"].sum()})
    return int(per_episode.groupby("arm")["ret"].mean().idxmax())


def unlabelled_copy(path: str, tmp: str) -> str:
    """The dataset with every ``policy_id`` set to 0 (FAST-Q as single-policy offline RL)."""
    from rllib_fastq.data.io import read_transitions, write_transitions

    tr = read_transitions(path)
    extra = {k: v for k, v in tr.meta.extra.items() if k != "policy_names"}
    meta = dataclasses.replace(tr.meta, num_policies=1, extra=extra)
    tr = dataclasses.replace(tr, policy_id=np.zeros_like(tr.policy_id), meta=meta)
    out = os.path.join(tmp, os.path.basename(path).replace(".parquet", "-k1.parquet"))
    return write_transitions(tr, out, overwrite=True)


class Checkpoints:
    """Resumable RLlib runs: the algorithm is saved after every ``train()`` iteration.

    RLlib's CQL runs take 1-2.5 h here and background jobs do not survive a session change, so a
    rerun of the same command restores the newest checkpoint (weights, optimiser states, iteration
    count) and goes on. The offline data stream restarts, so a resumed run is a statistically
    equivalent run, not a bit-identical one. A new checkpoint is complete before the pointer to it
    is replaced and before the older one is deleted, so a kill at any moment keeps one checkpoint.
    """

    def __init__(self, root: pathlib.Path):
        self.root = root
        self.pointer = root / "latest.json"

    def restore(self, algo: Any) -> int:
        """Restore the newest checkpoint into ``algo``; the number of iterations it had done (0: none)."""
        if not self.pointer.exists():
            return 0
        latest = json.loads(self.pointer.read_text())
        algo.restore_from_path(str(self.root / latest["dir"]))
        return int(latest["iterations"])

    def save(self, algo: Any, iterations: int) -> None:
        old = json.loads(self.pointer.read_text())["dir"] if self.pointer.exists() else None
        name = f"iter_{iterations:04d}"
        algo.save_to_path(str(self.root / name))
        write_json_atomic(self.pointer, {"dir": name, "iterations": iterations})
        if old and old != name:
            shutil.rmtree(self.root / old, ignore_errors=True)

    def clear(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


class Bench:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.path = pathlib.Path(args.out)
        self.res: dict[str, Any] = json.loads(self.path.read_text()) if self.path.exists() else {}
        self.res.setdefault("runs", {})
        self.res.setdefault("failures", {})
        self.res.setdefault("meta", {})[args.env] = {
            "command": "python -m benchmarks.mujoco_quality " + " ".join(sys.argv[1:]),
            "date_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M"),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs (shared), "
                       f"torch {torch.__version__} CPU, 1 torch thread",
            "steps": args.steps, "pretrain": args.pretrain, "episodes": args.episodes, "eval_seed": EVAL_SEED,
        }

    def save(self) -> None:
        write_json_atomic(self.path, self.res)

    def record(self, key: str, method: str, seed: int, entry: dict[str, Any]) -> None:
        self.res["runs"].setdefault(key, {}).setdefault(method, {})[str(seed)] = entry
        self.res["failures"].get(key, {}).pop(method, None)
        self.save()
        print(f"[{time.strftime('%H:%M:%S')}] {key} {method} seed {seed}: normalised "
              f"{entry['eval']['normalized']:.1f} (return {entry['eval']['return']:.0f}, "
              f"{entry['wall_s']:.0f}s)", flush=True)

    def curve_point(self, act: Callable, step: int) -> list[float]:
        return [step, score(act, self.args.env, self.args.curve_episodes)["normalized"]]

    def fastq(self, path: str, k: int, seed: int, arm: int | str = "best") -> dict[str, Any]:
        """FAST-Q acting as ``arm``: "best" (by its critic) or a fixed arm index."""
        from rllib_fastq import FastQConfig
        from rllib_fastq.evaluation.rollout import policy_fn

        a = self.args
        spi = a.steps_per_iter
        cfg = (FastQConfig()
               .offline_data(input_=[path], dataset_num_iters_per_learner=spi)
               .training(num_policies=k, pretrain_steps=a.pretrain,
                         exploration_ramp_steps=a.steps - a.pretrain, actor_hiddens=HIDDENS,
                         critic_hiddens=HIDDENS)
               .debugging(seed=seed))
        algo = cfg.build_algo()
        curve = []
        for i in range(a.steps // spi):
            algo.train()
            if (i + 1) * spi > a.pretrain and ((i + 1) * spi) % a.curve_every == 0:
                curve.append(self.curve_point(policy_fn(algo.get_module(), arm), (i + 1) * spi))
        entry = {"eval": score(policy_fn(algo.get_module(), arm), a.env, a.episodes), "curve": curve, "arm": arm}
        algo.stop()
        return entry

    def td3bc(self, path: str, seed: int) -> dict[str, Any]:
        a = self.args
        agent = baselines.NormalizedTD3BC(baselines.load_flat(path), hiddens=HIDDENS, gamma=0.99, seed=seed)
        curve = []
        while agent.steps < a.steps:
            agent.train(a.steps_per_iter)
            if agent.steps % a.curve_every == 0:
                curve.append(self.curve_point(agent.policy_fn(), agent.steps))
        return {"eval": score(agent.policy_fn(), a.env, a.episodes), "curve": curve}

    def rllib(self, name: str, path: str, seed: int) -> dict[str, Any]:
        a = self.args
        env = gym.make(a.env)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        t = time.perf_counter()
        algo = baselines.rllib_config(name, path, steps_per_iter=a.steps_per_iter, gamma=0.99, seed=seed,
                                      hiddens=HIDDENS, env=a.env, obs_dim=obs_dim, act_dim=act_dim).build_algo()
        build_s = time.perf_counter() - t
        run_id = f"{a.env}-{pathlib.Path(path).stem}-{name}-seed{seed}-{a.steps}x{a.steps_per_iter}"
        ckpt = Checkpoints(RESULTS / ".checkpoints" / run_id)
        done = ckpt.restore(algo)
        if done:
            print(f"[{time.strftime('%H:%M:%S')}] {name} seed {seed}: resumed at step {done * a.steps_per_iter}",
                  flush=True)
        for i in range(done, a.steps // a.steps_per_iter):
            algo.train()
            ckpt.save(algo, i + 1)
        module = compat.local_learner(algo.learner_group).module["default_policy"]
        entry = {"eval": score(baselines.rllib_policy_fn(module), a.env, a.episodes), "build_s": build_s,
                 "resumed_at_step": done * a.steps_per_iter}
        algo.stop()
        ckpt.clear()  # the caller records the entry next; a crash in between only repeats the evaluation
        return entry

    def run(self) -> None:
        a = self.args
        only = [m.strip() for m in a.only.split(",")]
        unknown = set(only) - set(METHODS)
        if unknown:
            raise SystemExit(f"--only: unknown method(s) {sorted(unknown)}; choose from {METHODS}")
        from rllib_fastq.data.io import read_transitions

        tmp = tempfile.mkdtemp(prefix="mujoco_quality_")  # the unlabelled copies
        for ds in a.datasets.split(","):
            path = str(DATA / a.env / f"{ds}.parquet")
            if not os.path.exists(path):
                raise SystemExit(f"{path} is missing: run `fastq data mujoco --env {a.env}` first.")
            k = int(np.unique(read_transitions(path).policy_id).size)
            key = f"{a.env}/{ds}"
            for seed in range(a.first_seed, a.seeds):
                for method in only:
                    if str(seed) in self.res["runs"].get(key, {}).get(method, {}):
                        continue
                    if method in ("FAST-Q (K=1)", "FAST-Q (best logged arm)") and k == 1:
                        continue  # identical to FAST-Q on a single-policy file
                    t = time.perf_counter()
                    try:
                        if method == "FAST-Q":
                            entry = self.fastq(path, k, seed)
                        elif method == "FAST-Q (best logged arm)":
                            entry = self.fastq(path, k, seed, arm=best_logged_arm(path))
                        elif method == "FAST-Q (K=1)":
                            entry = self.fastq(unlabelled_copy(path, tmp), 1, seed)
                        elif method == "TD3+BC":
                            entry = self.td3bc(path, seed)
                        else:
                            entry = self.rllib(method.split()[1], path, seed)
                    except Exception as e:  # noqa: BLE001 - record, report and go on with the others
                        traceback.print_exc()
                        self.res["failures"].setdefault(key, {})[method] = {"seed": seed, "error": repr(e)[:800]}
                        self.save()
                        continue
                    entry.update(wall_s=time.perf_counter() - t, k=k)
                    self.record(key, method, seed, entry)


def behaviour_score(env: str, dataset: str) -> str:
    """The normalised return of the policy behind a single-policy dataset (its card); "mixed" otherwise."""
    card = DATA / env / "card.json"
    if dataset not in ("medium", "high") or not card.exists():
        return "mixed"
    return f"{json.loads(card.read_text())['policies'][dataset]['normalized']:.1f}"


def report(res: dict[str, Any]) -> None:
    """Markdown: one row per (env, dataset), normalised score mean ± std over seeds per method."""
    cols = [m for m in METHODS if any(m in v for v in res["runs"].values())]
    print("| dataset | K | behaviour | " + " | ".join(cols) + " | published D4RL v2 (BC / TD3+BC / CQL / IQL) |")
    print("|---|---|---|" + "---|" * len(cols) + "---|")
    for key in sorted(res["runs"]):
        env, ds = key.split("/")
        runs = res["runs"][key]
        k = next((r["k"] for m in runs.values() for r in m.values()), "")
        cells = []
        for m in cols:
            vals = [r["eval"]["normalized"] for r in runs.get(m, {}).values()]
            if not vals:
                cells.append("")
            elif len(vals) == 1:
                cells.append(f"{vals[0]:.1f} (1)")
            else:  # population std (ddof 0) over training seeds
                cells.append(f"{np.mean(vals):.1f} ± {np.std(vals):.1f} ({len(vals)})")
        pub = PUBLISHED.get((env, ds))
        pub_s = " / ".join(f"{pub[n]:.1f}" for n in ("BC", "TD3+BC", "CQL", "IQL")) if pub else "n/a"
        print(f"| {env.split('-')[0]} {ds} | {k} | {behaviour_score(env, ds)} | " + " | ".join(cells)
              + f" | {pub_s} |")
    for key, fails in res.get("failures", {}).items():
        for m, f in fails.items():
            print(f"failed: {key} {m} seed {f['seed']}: {f['error'][:200]}")


def plot(res: dict[str, Any], env: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plotted = ("FAST-Q", "FAST-Q (K=1)", "TD3+BC")
    keys = sorted(
        k for k, methods in res["runs"].items()
        if k.startswith(env + "/") and any(m in methods for m in plotted)
    )
    if not keys:  # a side file of other methods (e.g. only RLlib CQL) must not overwrite the env's plot
        return
    fig, axes = plt.subplots(1, len(keys), figsize=(4.5 * len(keys), 3.5), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for m in plotted:
            curves = [r["curve"] for r in res["runs"][key].get(m, {}).values() if r.get("curve")]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            arr = np.array([c[:n] for c in curves])
            x, y = arr[0, :, 0], arr[:, :, 1]
            ax.plot(x, y.mean(0), label=f"{m} ({len(curves)} seeds)")
            ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.2)
        ax.set_title(key)
        ax.set_xlabel("gradient steps")
        ax.set_ylabel("normalised score")
        ax.legend(fontsize=7)
    fig.tight_layout()
    out = RESULTS / f"mujoco_{env.split('-')[0].lower()}_learning_curves.png"
    fig.savefig(out, dpi=100)
    print(f"plot: {out.relative_to(ROOT)}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--env", default="HalfCheetah-v5", choices=["HalfCheetah-v5", "Hopper-v5", "Walker2d-v5"])
    p.add_argument("--datasets", default="medium,medium-replay,multi-policy,medium-high")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0,
                   help="run seeds first-seed..seeds-1 only (to run one seed per process, side by side)")
    p.add_argument("--steps", type=int, default=5000, help="gradient steps per method (FAST-Q: both phases)")
    p.add_argument("--pretrain", type=int, default=1000, help="FAST-Q phase-1 steps (part of --steps)")
    p.add_argument("--steps-per-iter", type=int, default=500)
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes of the final policy")
    p.add_argument("--curve-every", type=int, default=1000)
    p.add_argument("--curve-episodes", type=int, default=3)
    p.add_argument("--only", default=DEFAULT_METHODS, help=f"comma-separated subset of {METHODS}")
    p.add_argument("--out", default=None, help="results JSON (default: benchmarks/results/mujoco_quality_<env>.json)")
    p.add_argument("--report-only", action="store_true")
    p.add_argument("--merge", default="", help="comma-separated result files of other envs for the table")
    args = p.parse_args()
    args.out = args.out or str(RESULTS / f"mujoco_quality_{args.env.split('-')[0].lower()}.json")
    if args.steps % args.steps_per_iter or args.pretrain % args.steps_per_iter:
        raise SystemExit("--steps and --pretrain must be multiples of --steps-per-iter")
    torch.set_num_threads(1)
    bench = Bench(args)
    if not args.report_only:
        from rllib_fastq.local_ray import init_local_ray

        init_local_ray(num_cpus=2, log_to_driver=False)
        bench.run()
    res = {"runs": json.loads(json.dumps(bench.res["runs"])), "failures": dict(bench.res["failures"])}
    for path in filter(None, args.merge.split(",")):
        other = json.loads(pathlib.Path(path).read_text())
        for key, methods in other["runs"].items():  # per (dataset, method, seed): files may share a dataset
            for method, seeds in methods.items():
                res["runs"].setdefault(key, {}).setdefault(method, {}).update(seeds)
        res["failures"].update(other.get("failures", {}))
    report(res)
    plot(bench.res, args.env)


if __name__ == "__main__":
    main()
