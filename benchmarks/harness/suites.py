"""Suites: which datasets, which methods, which budget; and the resumable run loop.

The player-platform suite (issue 33, DESIGN.md §4.1): for each routing regime (``aligned``,
``misaligned``, ``feature-rule``, ``uniform``, ``low-overlap``) and seed ``s``, 1000 logged players
are generated with data seed ``s`` (held-out split ``s + 1``; the card measures the arms, the logged
routing, the per-segment oracle and the per-player policy online on its own players) into
``benchmarks/results/data/`` (git-ignored, reused by every method). Every method is trained on that
dataset with seed ``s`` and its FINAL policy is scored online in the simulator on the held-out
players seeded ``EVAL_SEED``, ``EVAL_SEED + 1``, ... (the same players for every method and every
dataset: common random numbers; disjoint from the data seeds 0..5 and the cards' players).

Budgets (``BUDGETS``). ``full`` is sized for the whole suite (5 regimes × 5 seeds × the 19
methods) to run in under 2 hours on the 2-core machine with ``--jobs 2`` (two processes, each taking
every other (regime, seed) dataset); BENCHMARKS.md "Cost per run" has the clean-clone measurement.
Two changes brought it there from ~2.3 h without changing what is trained: the reference preset's
dropout LSTM runs a hand-written BPTT (``rllib_fastq/torch/networks.py``, twice as fast, the same
maths), and policies that take a batch (FAST-Q, RLlib, d3rlpy) are evaluated with their 200 players
stepped side by side (``evaluate_policy(batched=True)``: the same episodes; ~1 s instead of ~25 s):

- evaluation: 200 held-out players per run; the cards measure their reference values on 200 other
  players (``quick``: 20 players per run);
- FAST-Q (defaults and reference preset): 12 iterations × 250 = 3000 gradient steps (the main job's
  budget), phase 1 the default ``pretrain_steps="auto"`` (10 passes over the ~20–31k rows at batch
  256, at least 1000 steps);
- BC and TD3+BC (plain PyTorch, 128×128, batch 256): 3000 gradient steps, as FAST-Q;
- RLlib BC / MARWIL (128×128, batch 256): 3 × 200 = 600 steps; RLlib IQL: 3 × 100 = 300 steps
  (~11 updates/s here); RLlib CQL is not run (~1 update/s; its older numbers stay in BENCHMARKS.md);
- d3rlpy BC / TD3+BC / IQL / AWAC: 600 steps, CQL: 150 steps (~5 updates/s), all with 256×256
  networks and batch 256 (d3rlpy's default encoder; its reproduction scripts' 3×256 CQL and
  4×256 / batch-1024 AWAC ran at 1.9 and 3.5 updates/s here), otherwise the reproduction settings
  of ``benchmarks/peers/train_d3rlpy.py``.

``python -m benchmarks report`` prints the measured cost per method and the projection from the store.
"""

from __future__ import annotations

import copy
import gc
import json
import os
import pathlib
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.harness import store as store_mod
from benchmarks.harness.registry import REGISTRY, DatasetHandle

ROOT = store_mod.ROOT
DATA_CACHE = ROOT / "benchmarks/results/data"
EVAL_SEED = 10_000
PLAYER_PLATFORM = "player-platform"
REGIMES = ("aligned", "misaligned", "feature-rule", "uniform", "low-overlap")

FULL: dict[str, Any] = {
    "episodes": 200, "eval_seed": EVAL_SEED, "data_episodes": 1000, "card_eval_episodes": 200,
    "fastq": {"iterations": 12, "steps_per_iter": 250, "pretrain_steps": None},
    "bc_steps": 3000, "td3bc_steps": 3000,
    "rllib": {"iterations": 3, "steps_per_iter": 200},
    "rllib_iql": {"iterations": 3, "steps_per_iter": 100},
    "d3rlpy": {"steps": 600, "cql_steps": 150, "hidden": [256, 256], "batch_size": 256, "timeout_s": 900},
}
QUICK: dict[str, Any] = {
    "episodes": 20, "eval_seed": EVAL_SEED, "data_episodes": 1000, "card_eval_episodes": 300,
    "fastq": {"iterations": 2, "steps_per_iter": 25, "pretrain_steps": 20},
    "bc_steps": 50, "td3bc_steps": 50,
    "rllib": {"iterations": 2, "steps_per_iter": 25},
    "rllib_iql": {"iterations": 2, "steps_per_iter": 25},
    "d3rlpy": {"steps": 50, "cql_steps": 50, "hidden": [256, 256], "batch_size": 256, "timeout_s": 300},
}
BUDGETS = {"full": FULL, "quick": QUICK}
QUICK_SEEDS = 1


def suite_key(suite: str, budget: str) -> str:
    """The store's suite name: ``player-platform`` at the full budget, ``player-platform@quick`` else."""
    return suite if budget == "full" else f"{suite}@{budget}"


def player_platform_dataset(regime: str, seed: int, budget: dict[str, Any], cache: pathlib.Path = DATA_CACHE,
                            suite: str = PLAYER_PLATFORM) -> DatasetHandle:
    """The (cached) dataset of ``regime`` with data seed ``seed``."""
    from rllib_fastq.datasets.player_platform import generate_player_platform_dataset

    path = cache / regime / f"seed{seed}-ep{budget['data_episodes']}-card{budget['card_eval_episodes']}"
    if not (path / "card.json").exists():
        t = time.perf_counter()
        generate_player_platform_dataset(path, episodes=budget["data_episodes"], seed=seed, routing=regime,
                                         eval_episodes=budget["card_eval_episodes"], overwrite=True)
        print(f"[{time.strftime('%H:%M:%S')}] generated {path.relative_to(cache)} "
              f"in {time.perf_counter() - t:.0f}s", flush=True)
    return DatasetHandle.load(suite, regime, seed, path)


def _start_ray() -> None:
    import ray

    from rllib_fastq.local_ray import init_local_ray

    for attempt in range(3):  # a busy machine can time out the first start
        try:
            init_local_ray(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
            return
        except Exception:  # noqa: BLE001
            ray.shutdown()
            if attempt == 2:
                raise
            time.sleep(10)


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (d3rlpy's venv runs as a child); unlike
    wall time, it barely depends on what else shares the cores (Ray's worker processes not counted)."""
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + c.ru_utime + c.ru_stime


def fit_and_score(fit: Callable[[], Any], score: Callable[[Any], tuple[float, dict[str, Any]]]
                  ) -> tuple[float, dict[str, Any]]:
    """Train (``fit()`` → a ``Trained``), score it (``score(trained)`` → (value, eval record)),
    close it: (value, extras with the timings, the eval record and ``after_eval``'s)."""
    t, cpu = time.perf_counter(), _cpu_s()
    trained = fit()
    fit_s, fit_cpu_s = time.perf_counter() - t, _cpu_s() - cpu
    try:
        t = time.perf_counter()
        value, ev = score(trained)
        extras = {**trained.extras, "fit_s": round(fit_s, 2), "eval_s": round(time.perf_counter() - t, 2),
                  "fit_cpu_s": round(fit_cpu_s, 2), "eval": ev}
        if trained.after_eval is not None:
            extras.update(trained.after_eval())
    finally:
        if trained.close is not None:
            trained.close()
        del trained
        gc.collect()  # release RLlib's Ray Data iterators while Ray still runs (no noise at exit)
    return value, extras


def run_one(ds: DatasetHandle, method: str, seed: int, budget: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Train ``method`` on ``ds`` and score its final policy online: (mean return, extras)."""
    from rllib_fastq.envs import evaluate_policy

    def score(trained: Any) -> tuple[float, dict[str, Any]]:
        ev = evaluate_policy(trained.policy, None, num_episodes=budget["episodes"], seed=budget["eval_seed"],
                             batched=trained.batched)
        return ev["mean_return"], {k: ev[k] for k in ("mean_return", "std_return", "sem_return", "mean_length",
                                                      "churn_rate", "num_episodes", "components", "segment_returns")}

    return fit_and_score(lambda: REGISTRY[method].fn(ds, seed, budget), score)


def shard_of(regimes: Sequence[str], seeds: Sequence[int], shard: tuple[int, int] | None) -> list[tuple[str, int]]:
    """The (regime, seed) datasets of shard ``(i, n)``: every n-th one from the i-th, so the
    ``--jobs n`` processes get the regimes' seeds in turn and similar work; None: all of them."""
    cells = [(r, s) for r in regimes for s in seeds]
    if shard is None:
        return cells
    i, n = shard
    if not 0 <= i < n:
        raise ValueError(f"shard: expected i/n with 0 <= i < n, got {i}/{n}")
    return cells[i::n]


def with_fastq_training(budget: str, settings: Sequence[str]) -> dict[str, Any] | None:
    """``BUDGETS[budget]`` with FAST-Q's extra ``.training()`` settings ``["key=value", ...]``
    (values parsed as JSON, else kept as strings) under ``["fastq"]["training"]``; None without any."""
    if not settings:
        return None
    training: dict[str, Any] = {}
    for item in settings:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--fastq-training: expected KEY=VALUE, got {item!r}")
        try:
            training[key] = json.loads(value)
        except json.JSONDecodeError:
            training[key] = value
    detail = copy.deepcopy(BUDGETS[budget])
    detail["fastq"]["training"] = training
    return detail


def run_suite(*, suite: str = PLAYER_PLATFORM, regimes: Sequence[str] = REGIMES, methods: Sequence[str],
              seeds: Sequence[int], budget: str = "full", force: bool = False,
              store: store_mod.Store | None = None, budget_detail: dict[str, Any] | None = None,
              data_cache: pathlib.Path = DATA_CACHE, command: Sequence[str] | None = None,
              shard: tuple[int, int] | None = None) -> list[dict[str, Any]]:
    """Run every (regime, seed, method) not yet in the store (all of them with ``force``), of
    ``shard`` (:func:`shard_of`) when given.

    Returns the records appended. A failure is recorded with its error and the loop goes on.
    (The ``mujoco`` suite runs through ``benchmarks.harness.mujoco.run_suite``, on :func:`execute`.)
    """
    if suite != PLAYER_PLATFORM:
        raise ValueError(f"suite: {suite!r} does not run here; player-platform runs here, mujoco through "
                         "benchmarks.harness.mujoco.run_suite (`python -m benchmarks run SUITE` picks)")
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        raise ValueError(f"methods: unknown {unknown}; known: {list(REGISTRY)}")
    bad = [r for r in regimes if r not in REGIMES]
    if bad:
        raise ValueError(f"regimes: unknown {bad}; known: {list(REGIMES)}")
    detail = budget_detail or BUDGETS[budget]
    detail = {**detail, "work_dir": str(data_cache)}
    todo = [(r, s, m) for r, s in shard_of(regimes, seeds, shard) for m in methods]
    return execute(suite_key(suite, budget), todo, budget=budget, detail=detail, force=force, store=store,
                   command=command, needs_ray=lambda m: REGISTRY[m].needs_ray,
                   load=lambda r, s: player_platform_dataset(r, s, detail, data_cache),
                   run=lambda ds, m, s: run_one(ds, m, s, detail))


def execute(key: str, cells: Sequence[tuple[str, int, str]], *, budget: str, detail: dict[str, Any],
            force: bool, store: store_mod.Store | None, command: Sequence[str] | None,
            needs_ray: Callable[[str], bool], load: Callable[[str, int], Any],
            run: Callable[[Any, str, int], tuple[float, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The resumable loop of every suite: run the (dataset, seed, method) ``cells`` whose key
    (``key``, dataset, method, seed) has no successful record at this budget (all with ``force``),
    one dataset in memory at a time, appending one record per run (failures with their error)."""
    store = store or store_mod.Store()
    recorded = {k: v for k, v in detail.items() if k != "work_dir"}
    done = set() if force else store.done(key, recorded)
    todo = [(d, s, m) for d, s, m in cells if (key, d, m, s) not in done]
    print(f"{key}: {len(todo)} runs to do, {len(cells) - len(todo)} already in {store.path}", flush=True)
    if not todo:
        return []
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(1)
    if any(needs_ray(m) for _, _, m in todo):
        _start_ray()
    command = list(command or sys.argv)
    commit = store_mod.git_commit()
    out, datasets = [], {}
    for name, seed, method in todo:
        load_avg = store_mod.load_average()
        t = time.perf_counter()
        score, extras, error = None, {}, None
        try:
            if (name, seed) not in datasets:
                datasets.clear()  # one dataset in memory at a time
                datasets[(name, seed)] = load(name, seed)
            ds = datasets[(name, seed)]
            t = time.perf_counter()
            score, extras = run(ds, method, seed)
        except Exception as err:  # noqa: BLE001 - record, report and go on with the others
            error = f"{type(err).__name__}: {err}"[:2000] + "\n" + traceback.format_exc()[-2000:]
            print(f"FAILED {name} {method} seed {seed}: {type(err).__name__}: {str(err)[:300]}", flush=True)
        rec = store_mod.record(suite=key, dataset=name, method=method, seed=seed, score=score, budget=budget,
                               budget_detail=recorded,
                               wall_s=time.perf_counter() - t, command=command, extras=extras, error=error,
                               commit=commit, load_before=load_avg)
        store.append(rec)
        out.append(rec)
        if score is not None:
            print(f"[{time.strftime('%H:%M:%S')}] {name:12s} seed {seed} {method:24s} {score:8.3f}  "
                  f"({rec['wall_s']:.0f}s)", flush=True)
    return out
