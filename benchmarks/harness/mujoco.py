"""The ``mujoco`` suite: D4RL-style MuJoCo quality (issue 6, part 2) on the harness (issue 33).

    python -m benchmarks run mujoco --seeds 3                                   # 12 datasets, full budget
    python -m benchmarks run mujoco --datasets Hopper-v5/medium --methods FAST-Q TD3+BC --seeds 3
    python -m benchmarks run mujoco --budget quick --datasets Hopper-v5/medium-replay   # smoke test
    python -m benchmarks report --suite mujoco

Datasets: ``<env>/<kind>`` for the envs HalfCheetah-v5, Hopper-v5, Walker2d-v5 and the kinds medium,
medium-replay, multi-policy, medium-high of ``offline_data/mujoco/`` (made by ``fastq data mujoco``;
the parquet files are read in place, seed-independent). K is the number of behaviour policies
(``policy_id`` s) in the file: 1 for ``medium``, 2 for medium-replay / medium-high, 5 for
multi-policy.

Methods (``MUJOCO``, registered like ``registry.REGISTRY``; all with the same gradient steps of
batch 256 and 256-256 MLPs, γ = 0.99):

* ``FAST-Q``: today's ``FastQConfig`` defaults, the file's ``policy_id`` s as arms, phase 1 for the
  budget's ``pretrain`` steps, the exploration ramp over the phase-2 steps;
* ``FAST-Q (best logged arm)``: the same training, acting as the arm whose logged episodes have the
  highest mean return (chosen from the data alone); only where K > 1;
* ``FAST-Q (K=1)``: the same rows with the labels dropped (FAST-Q as single-policy offline RL);
  only where K > 1 (on a K = 1 file it is ``FAST-Q``);
* ``TD3+BC``: ``benchmarks/td3bc_plain.py`` with its state normalisation, α = 2.5;
* ``BC``: the plain behaviour cloning of ``harness.simple.PlainBC``;
* ``RLlib BC``, ``RLlib IQL``: RLlib 2.60's own algorithms (``benchmarks.baselines.rllib_config``).

``RLlib CQL`` is not run here (~1 update/s on this machine, 36 runs ≈ 22 h): its records (and
the older BC-actor runs, ``RLlib CQL (BC actor)``) were imported from the old script's JSON files
(``benchmarks.harness.mujoco_import``), as were all 2026-12 numbers; imported records carry
``imported_from``. A new run of a key replaces the imported record in the report (latest wins);
imported keys count as done, so ``--force`` is what reruns them (e.g. with today's defaults).

Budget ``full`` (``FULL``, the old script's): 5,000 gradient steps per method (FAST-Q 1,000 phase 1 +
4,000 phase 2), 500 per ``train()`` iteration; the FINAL policy's deterministic return over 10
episodes seeded 100,000.. (the data used seeds below 10,000) as a D4RL normalised score
(``rllib_fastq.evaluation.scores``); a learning curve point every 1,000 steps (3 episodes).
``quick``: 100 steps (50 phase 1), 2 episodes: a smoke test of the path, not a measurement.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from benchmarks.harness import store as store_mod
from benchmarks.harness import suites
from benchmarks.harness.registry import Method, Trained

MUJOCO = "mujoco"
DATA = store_mod.ROOT / "offline_data/mujoco"
ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
KINDS = ("medium", "medium-replay", "multi-policy", "medium-high")
DATASETS = tuple(f"{e}/{k}" for e in ENVS for k in KINDS)
EVAL_SEED = 100_000

FULL: dict[str, Any] = {"steps": 5000, "pretrain": 1000, "steps_per_iter": 500, "episodes": 10,
                        "eval_seed": EVAL_SEED, "curve_every": 1000, "curve_episodes": 3, "hidden": [256, 256],
                        "gamma": 0.99}
QUICK: dict[str, Any] = {**FULL, "steps": 100, "pretrain": 50, "steps_per_iter": 50, "episodes": 2,
                         "curve_every": 100, "curve_episodes": 1}
BUDGETS = {"full": FULL, "quick": QUICK}
#: Methods whose numbers come only from the old script's files (not runnable here).
IMPORTED_ONLY = ("RLlib CQL", "RLlib CQL (BC actor)")


@dataclasses.dataclass
class MujocoDataset:
    """One D4RL-style file: ``name`` = ``<env>/<kind>``, ``k`` its number of behaviour policies."""

    name: str
    path: str
    k: int

    @property
    def env(self) -> str:
        return self.name.split("/")[0]

    @classmethod
    def load(cls, name: str, data: pathlib.Path = DATA) -> MujocoDataset:
        import pandas as pd

        path = data / f"{name}.parquet"
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: run `fastq data mujoco --env {name.split('/')[0]}` first")
        k = int(pd.read_parquet(path, columns=["policy_id"])["policy_id"].nunique())
        return cls(name, str(path), k)

    def unlabelled(self) -> str:
        """The file with every ``policy_id`` set to 0 (written once, into the git-ignored data cache)."""
        from rllib_fastq.data.io import read_transitions, write_transitions

        out = os.path.join(suites.DATA_CACHE, "mujoco-k1", f"{self.name}-k1.parquet")
        if not os.path.exists(out):
            os.makedirs(os.path.dirname(out), exist_ok=True)
            tr = read_transitions(self.path)
            extra = {k: v for k, v in tr.meta.extra.items() if k != "policy_names"}
            meta = dataclasses.replace(tr.meta, num_policies=1, extra=extra)
            write_transitions(dataclasses.replace(tr, policy_id=np.zeros_like(tr.policy_id), meta=meta), out,
                              overwrite=True)
        return out

    def best_logged_arm(self) -> int:
        """The arm whose logged episodes have the highest mean return: a choice from the data alone."""
        import pandas as pd

        from rllib_fastq.data.io import read_transitions

        tr = read_transitions(self.path)
        eps = pd.DataFrame({"eps": tr.eps_id, "arm": tr.policy_id, "r": tr.rewards}).groupby("eps")
        per_episode = pd.DataFrame({"arm": eps["arm"].first(), "ret": eps["r"].sum()})
        return int(per_episode.groupby("arm")["ret"].mean().idxmax())


def score(act: Callable[[np.ndarray], np.ndarray], env: str, episodes: int, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Mean undiscounted return of ``act`` over ``episodes`` episodes seeded ``seed + i``, normalised."""
    from rllib_fastq.evaluation.rollout import evaluate_policy_fn
    from rllib_fastq.evaluation.scores import normalized_score

    ev = evaluate_policy_fn(act, env, num_episodes=episodes, seed=seed)
    return {"return": ev["mean_return"], "std_return": ev["std_return"],
            "normalized": normalized_score(env, ev["mean_return"]), "episodes": episodes}


# -- the methods -----------------------------------------------------------------------------------

MUJOCO_METHODS: dict[str, Method] = {}
#: Methods that need behaviour labels: skipped on K = 1 files (they would repeat ``FAST-Q``).
NEEDS_LABELS = ("FAST-Q (best logged arm)", "FAST-Q (K=1)")


def register(name: str, kind: str = "learned", needs_ray: bool = False) -> Callable:
    def deco(fn: Callable[[MujocoDataset, int, dict[str, Any]], Trained]) -> Callable:
        if name in MUJOCO_METHODS:
            raise ValueError(f"mujoco method {name!r} registered twice")
        MUJOCO_METHODS[name] = Method(name, fn, kind, needs_ray)
        return fn

    return deco


def _curve(ds: MujocoDataset, act: Callable, step: int, b: dict[str, Any]) -> list[float]:
    return [step, score(act, ds.env, b["curve_episodes"], b["eval_seed"])["normalized"]]


def _fastq(ds: MujocoDataset, seed: int, b: dict[str, Any], *, path: str, k: int, arm: int | None) -> Trained:
    from rllib_fastq import FastQConfig
    from rllib_fastq.evaluation.rollout import policy_fn

    spi = b["steps_per_iter"]
    cfg = (FastQConfig()
           .offline_data(input_=[path], dataset_num_iters_per_learner=spi)
           .training(num_policies=k, pretrain_steps=b["pretrain"], exploration_ramp_steps=b["steps"] - b["pretrain"],
                     actor_hiddens=b["hidden"], critic_hiddens=b["hidden"], gamma=b["gamma"])
           .debugging(seed=seed))
    algo = cfg.build_algo()
    curve = []
    for i in range(b["steps"] // spi):
        algo.train()
        step = (i + 1) * spi
        if step > b["pretrain"] and step % b["curve_every"] == 0:
            curve.append(_curve(ds, policy_fn(algo.get_module(), arm), step, b))
    extras = {"k": k, "curve": curve, "arm": "default" if arm is None else arm,
              "arm_choice": cfg.arm_choice, "serve_action": getattr(cfg, "serve_action", None)}
    return Trained(policy_fn(algo.get_module(), arm), extras, close=algo.stop)


@register("FAST-Q", needs_ray=True)
def fastq(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
    return _fastq(ds, seed, b, path=ds.path, k=ds.k, arm=None)


@register("FAST-Q (best logged arm)", needs_ray=True)
def fastq_best_logged_arm(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
    return _fastq(ds, seed, b, path=ds.path, k=ds.k, arm=ds.best_logged_arm())


@register("FAST-Q (K=1)", needs_ray=True)
def fastq_k1(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
    return _fastq(ds, seed, b, path=ds.unlabelled(), k=1, arm=None)


def _stepwise(ds: MujocoDataset, agent: Any, b: dict[str, Any]) -> list[list[float]]:
    """Train a plain loop ``agent`` for the budget's steps, with the learning-curve points."""
    curve = []
    while agent.steps < b["steps"]:
        agent.train(b["steps_per_iter"])
        if agent.steps % b["curve_every"] == 0:
            curve.append(_curve(ds, agent.policy_fn(), agent.steps, b))
    return curve


@register("TD3+BC")
def td3bc(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
    from benchmarks.baselines import NormalizedTD3BC, load_flat

    agent = NormalizedTD3BC(load_flat(ds.path), hiddens=b["hidden"], gamma=b["gamma"], seed=seed)
    curve = _stepwise(ds, agent, b)
    return Trained(agent.policy_fn(), {"k": ds.k, "curve": curve, "gradient_steps": agent.steps, "alpha": 2.5})


@register("BC")
def plain_bc(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
    from benchmarks.baselines import load_flat
    from benchmarks.harness.simple import PlainBC

    agent = PlainBC(load_flat(ds.path), hiddens=b["hidden"], seed=seed)
    curve = _stepwise(ds, agent, b)
    return Trained(agent.policy_fn(), {"k": ds.k, "curve": curve, "gradient_steps": agent.steps})


def _rllib(name: str) -> Callable:
    def fn(ds: MujocoDataset, seed: int, b: dict[str, Any]) -> Trained:
        import gymnasium as gym

        from benchmarks import baselines
        from rllib_fastq import _rllib_compat as compat

        env = gym.make(ds.env)
        obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
        env.close()
        t = time.perf_counter()
        algo = baselines.rllib_config(name, ds.path, steps_per_iter=b["steps_per_iter"], gamma=b["gamma"], seed=seed,
                                      hiddens=b["hidden"], env=ds.env, obs_dim=obs_dim, act_dim=act_dim).build_algo()
        build_s = time.perf_counter() - t
        for _ in range(b["steps"] // b["steps_per_iter"]):
            algo.train()
        module = compat.local_learner(algo.learner_group).module["default_policy"]
        return Trained(baselines.rllib_policy_fn(module),
                       {"k": ds.k, "gradient_steps": b["steps"], "build_s": round(build_s, 2)}, close=algo.stop)

    return fn


for _name in ("BC", "IQL"):
    register(f"RLlib {_name}", needs_ray=True)(_rllib(_name))


# -- the run ---------------------------------------------------------------------------------------

def run_one(ds: MujocoDataset, method: str, seed: int, b: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    """Train ``method`` on ``ds`` and score its FINAL policy: (normalised score, extras)."""
    def normalized(trained: Any) -> tuple[float, dict[str, Any]]:
        ev = score(trained.policy, ds.env, b["episodes"], b["eval_seed"])
        return ev["normalized"], ev

    return suites.fit_and_score(lambda: MUJOCO_METHODS[method].fn(ds, seed, b), normalized)


def check(datasets: Sequence[str], methods: Sequence[str], budget: str) -> None:
    """Refuse unknown datasets, methods and budgets with the known names (before anything runs)."""
    bad = [d for d in datasets if d not in DATASETS]
    if bad:
        raise ValueError(f"mujoco: unknown datasets {bad}; known: {list(DATASETS)} (<env>/<kind>)")
    only = [m for m in methods if m in IMPORTED_ONLY]
    if only:
        raise ValueError(f"mujoco: {only} are not run on this harness (RLlib CQL: ~1 update/s, ~22 h for the "
                         "column); their numbers are imported records. Runnable: " + str(list(MUJOCO_METHODS)))
    unknown = [m for m in methods if m not in MUJOCO_METHODS]
    if unknown:
        raise ValueError(f"mujoco: unknown methods {unknown}; known: {list(MUJOCO_METHODS)}")
    if budget not in BUDGETS:
        raise ValueError(f"mujoco: unknown budget {budget!r}; known: {sorted(BUDGETS)}")


def run_suite(*, datasets: Sequence[str] = DATASETS, methods: Sequence[str] | None = None, seeds: Sequence[int],
              budget: str = "full", force: bool = False, store: store_mod.Store | None = None,
              budget_detail: dict[str, Any] | None = None, data: pathlib.Path = DATA,
              command: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Run every (dataset, seed, method) not yet in the store; label-only methods skip K = 1 files."""
    methods = list(methods or MUJOCO_METHODS)
    check(datasets, methods, budget)
    detail = budget_detail or BUDGETS[budget]
    single = {d for d in datasets if d.endswith("/medium")}  # K = 1 (checked again on load)
    cells = [(d, s, m) for d in datasets for s in seeds for m in methods if not (m in NEEDS_LABELS and d in single)]

    def run(ds: MujocoDataset, method: str, seed: int) -> tuple[float, dict[str, Any]]:
        if method in NEEDS_LABELS and ds.k == 1:
            raise ValueError(f"{method} needs a file with several behaviour policies; {ds.name} has K = 1")
        return run_one(ds, method, seed, detail)

    return suites.execute(suites.suite_key(MUJOCO, budget), cells, budget=budget, detail=detail, force=force,
                          store=store, command=command, needs_ray=lambda m: MUJOCO_METHODS[m].needs_ray,
                          load=lambda name, seed: MujocoDataset.load(name, data), run=run)
