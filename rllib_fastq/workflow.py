"""Run specs (the YAML files of ``tune_configs/``), training, evaluation and Tune searches.

A *spec* is a plain dict with the sections of a ``tune_configs/*.yaml`` file (documented in
``tune_configs/README.md``): ``data``, ``env``, ``env_config``, ``card``, ``config`` (any
:class:`FastQConfig` attribute), ``learners``, ``evaluation``, ``run``, ``search`` and ``tune``.
``fastq train|evaluate`` are thin wrappers around the functions here; Tune searches are in
:mod:`rllib_fastq.tuning`.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from rllib_fastq.checkpoints import RUN_FILE, load_module, run_info
from rllib_fastq.data import schema
from rllib_fastq.evaluation.offline import offline_metrics
from rllib_fastq.fastq import FastQConfig

ROOT = Path(__file__).resolve().parents[1]
PLAYER_PLATFORM_DIR = ROOT / "offline_data" / "player_platform"
PLAYER_PLATFORM_ENV = "rllib_fastq/PlayerPlatform-v0"


def player_platform_cache_dir() -> Path:
    """Where an installed package (no checkout beside it) keeps its player-platform data:
    ``$RLLIB_FASTQ_DATA`` or ``$XDG_CACHE_HOME/rllib_fastq`` (default ``~/.cache/rllib_fastq``)."""
    root = os.environ.get("RLLIB_FASTQ_DATA") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "rllib_fastq")
    return Path(root) / "player_platform"


def player_platform_dir(log: Callable[[str], None] | None = None) -> Path:
    """The shipped player-platform dataset: the checkout's ``offline_data/player_platform`` when
    present; else (an installed package) the user cache, generated there on first use with the
    defaults of ``fastq data player-platform`` (1000 players, seed 0), as the shipped files were."""
    if (PLAYER_PLATFORM_DIR / "train.parquet").is_file():
        return PLAYER_PLATFORM_DIR
    cache = player_platform_cache_dir()
    if not (cache / "card.json").is_file():
        from rllib_fastq.datasets.player_platform import generate_player_platform_dataset

        (log or echo)(f"no shipped player-platform data beside the package: generating it into {cache} "
                      "(once; `fastq data player-platform` defaults)")
        generate_player_platform_dataset(cache, overwrite=True)
    return cache
EVAL_KEY = "evaluation/env_runners/episode_return_mean"

SECTIONS = ("name", "data", "env", "env_config", "card", "config", "learners", "evaluation", "run",
            "search", "tune")
LEARNER_KEYS = ("num_learners", "num_cpus_per_learner", "num_gpus_per_learner")

# The main job: the shipped player-platform data, sizes that train in a few minutes on 2 CPUs
# (2 iterations of phase 1, then phase 2) and already beat the best logging arm. Both default specs
# fix `seed` (weights, batch draws, target noise): the same command gives the same checkpoint.
PLAYER_PLATFORM_SPEC: dict[str, Any] = {
    "name": "player_platform",
    "data": [str(PLAYER_PLATFORM_DIR / "train.parquet")],
    "env": PLAYER_PLATFORM_ENV,
    "env_config": {},
    "card": str(PLAYER_PLATFORM_DIR / "card.json"),
    "config": {
        "seed": 0, "num_policies": 3, "pretrain_steps": 500, "dataset_num_iters_per_learner": 250, "gamma": 0.9,
        "reward_weights": [0.25, 0.25, -0.25, 0.25],
        "reward_component_names": ["revenue", "engagement", "cost", "dwell"],
        "lstm_dropout": 0.0, "actor_hiddens": [128, 128], "critic_hiddens": [128, 128],
        "expert_hiddens": [128, 64], "br_dim": 64, "adversary_hiddens": [128],
        "max_exploration": 0.6, "exploration_ramp_steps": 1000,
    },
    "learners": {"num_learners": 0},
    "evaluation": {"interval": 4, "episodes": 10},
    "run": {"iterations": 12, "final_eval_episodes": 300, "out": "checkpoints/fastq"},
}
GENERIC_SPEC: dict[str, Any] = {"name": "fastq", "config": {"seed": 0}, "learners": {"num_learners": 0},
                                "evaluation": {"interval": 0, "episodes": 10},
                                "run": {"iterations": 10, "final_eval_episodes": 20, "out": "checkpoints/fastq"}}


# -- specs --------------------------------------------------------------------------------------

class _Loader(yaml.SafeLoader):
    """YAML 1.1 reads ``1e-4`` (no dot) as a string; learning rates are written that way."""


_Loader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
                              list("-+0123456789."))


def _resolve_path(p: str, what: str) -> str:
    """Absolute path of ``p`` (relative to the working directory, else to the repository);
    absolute because Tune runs trials in their own directories."""
    for base in (Path.cwd(), ROOT):
        cand = (base / os.path.expanduser(p)).resolve()
        if cand.exists():
            return str(cand)
    raise FileNotFoundError(f"{what}: {p} does not exist")


def parse_overrides(overrides: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``["alpha=2.5", "tune.num_samples=4"]`` → ``[(path, value), ...]``; a bare key names a
    ``config`` entry (or a top-level section such as ``env``); values are YAML (``[1, 2]``,
    ``{choice: [..]}``) and replace what the path held."""
    out = []
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set/--override {item!r}: expected key=value (e.g. alpha=2.5 or tune.num_samples=4)")
        parts = key.strip().split(".")
        if len(parts) == 1 and parts[0] not in SECTIONS:
            parts = ["config", parts[0]]
        if parts[0] not in SECTIONS:
            raise ValueError(f"--set/--override {item!r}: unknown section {parts[0]!r}; known: {list(SECTIONS)}")
        out.append((parts, yaml.load(value, Loader=_Loader)))
    return out


def _num_policies(paths: list[str]) -> int:
    """K from the data (the largest ``policy_id`` + 1), so a plain ``--data`` run needs no settings."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    k = 1
    for p in paths:
        if p.endswith(".parquet") and "policy_id" in pq.read_schema(p).names:
            k = max(k, int(pc.max(pq.read_table(p, columns=["policy_id"])["policy_id"]).as_py()) + 1)
    return k


def _player_platform_data(data: Sequence[str] | None) -> bool:
    """True when the first data path sits beside a player-platform dataset card."""
    card = Path(data[0]).resolve().parent / "card.json" if data else None
    return card is not None and card.is_file() and json.loads(card.read_text()).get("name") == "player-platform"


def load_spec(path: str | None = None, overrides: Sequence[str] = (), data: Sequence[str] | None = None,
              env: str | None = None) -> dict[str, Any]:
    """The run spec: a YAML file (or the defaults) with ``overrides``, ``data`` and ``env`` applied.

    Without a file: the player-platform main job when no data is given or the data sit beside a
    player-platform ``card.json``, else FastQConfig's defaults with K read off the data.
    """
    if path is not None:
        path = _resolve_path(path, "--config")
        with open(path) as f:
            try:
                spec = yaml.load(f, Loader=_Loader) or {}
            except yaml.YAMLError as e:
                raise ValueError(f"{path}: not valid YAML ({str(e).splitlines()[0]})") from None
        if not isinstance(spec, dict):
            raise ValueError(f"{path}: expected a mapping of sections {SECTIONS}")
        unknown = sorted(set(spec) - set(SECTIONS))
        if unknown:
            raise ValueError(f"{path}: unknown key(s) {unknown}; known sections: {list(SECTIONS)}")
    elif not data or _player_platform_data(data):
        spec = copy.deepcopy(PLAYER_PLATFORM_SPEC)
        if not data and (shipped := player_platform_dir()) != PLAYER_PLATFORM_DIR:
            spec["data"], spec["card"] = [str(shipped / "train.parquet")], str(shipped / "card.json")
    else:
        spec = copy.deepcopy(GENERIC_SPEC)
    for parts, value in parse_overrides(overrides):
        node = spec
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    if data:
        spec["data"] = list(data)
        if path is None and not _player_platform_data(data):
            spec.pop("card", None)
    if env is not None:
        spec["env"] = env
    if not spec.get("data"):
        raise ValueError("no data: give --data PATH or a config with a `data:` list")
    spec["data"] = [_resolve_path(p, "data") for p in ([spec["data"]] if isinstance(spec["data"], str)
                                                         else spec["data"])]
    if spec.get("card"):
        spec["card"] = _resolve_path(spec["card"], "card")
    if "num_policies" not in spec.setdefault("config", {}):
        spec["config"]["num_policies"] = _num_policies(spec["data"])
    return spec


def build_config(spec: dict[str, Any]) -> FastQConfig:
    """The FastQConfig a spec describes (validated, so bad values fail before Ray starts)."""
    cfg = FastQConfig()
    for key in spec.get("config") or {}:
        if not hasattr(cfg, key) or key.startswith("_"):
            raise ValueError(f"config: unknown FastQConfig setting {key!r}")
    cfg.update_from_dict(dict(spec.get("config") or {}))
    cfg.offline_data(input_=list(spec["data"]))
    learners = dict(spec.get("learners") or {})
    bad = sorted(set(learners) - set(LEARNER_KEYS))
    if bad:
        raise ValueError(f"learners: unknown key(s) {bad}; known: {list(LEARNER_KEYS)}")
    cfg.learners(**learners)
    ev = spec.get("evaluation") or {}
    if spec.get("env") and ev.get("interval"):  # else the env only serves the final evaluation
        cfg.environment(env=spec["env"], env_config=dict(spec.get("env_config") or {}))
        cfg.evaluation(evaluation_interval=int(ev["interval"]), evaluation_num_env_runners=0,
                       evaluation_duration=int(ev.get("episodes", 10)), evaluation_duration_unit="episodes")
    cfg.validate()
    return cfg


def config_from_yaml(path: str | None, overrides: Sequence[str] = ()) -> tuple[FastQConfig, dict[str, Any]]:
    """``(FastQConfig, run_settings)`` of a ``tune_configs`` YAML file (None: the main job)."""
    spec = load_spec(path, overrides)
    return build_config(spec), spec


def ensure_ray() -> None:
    """A local loopback Ray session (2 CPUs at most) unless one is running."""
    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=min(2, os.cpu_count() or 1), log_to_driver=False, configure_logging=False)


# -- training -----------------------------------------------------------------------------------

def progress_line(result: dict[str, Any], iterations: int | None = None, eval_interval: int = 1) -> str:
    """One line per iteration: phase, the losses of that phase, eval return (when evaluated:
    RLlib repeats the last evaluation in the results of the iterations between)."""
    lr = result.get("learners", {}).get("default_policy", {})
    phase = int(lr.get("phase", 1))
    keys = (("expert_loss", "adversary_accuracy") if phase == 1 else
            ("td_loss", "q_mean", "actor_loss", "exploration_probability"))
    parts = [f"iter {result['training_iteration']}" + (f"/{iterations}" if iterations else ""), f"phase {phase}"]
    parts += [f"{k} {lr[k]:.4g}" for k in keys if k in lr]
    ret = result.get("evaluation", {}).get("env_runners", {}).get("episode_return_mean")
    if ret is not None and np.isfinite(ret) and eval_interval and result["training_iteration"] % eval_interval == 0:
        parts.append(f"eval return {ret:.3f}")
    parts.append(f"{result.get('time_this_iter_s', 0.0):.1f} s")
    return " | ".join(parts)


def _check_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it")


def echo(message: str) -> None:
    """Default progress output. A module-level function, not ``print`` itself: Tune pickles its
    callbacks, and Ray Data's progress bars replace ``builtins.print`` (it then no longer pickles)."""
    print(message, flush=True)


def train(spec: dict[str, Any], *, iterations: int | None = None, out: str | None = None,
          overwrite: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train, save a checkpoint to ``out``, evaluate it (when the env is known); the summary."""
    log = log or echo
    iterations = int(iterations if iterations is not None else spec.get("run", {}).get("iterations", 10))
    if iterations < 1:
        raise ValueError(f"--iterations: expected >= 1, got {iterations}")
    out = os.path.abspath(out or spec.get("run", {}).get("out", "checkpoints/fastq"))
    _check_out(out, overwrite)  # before training: never lose minutes to a refused save
    cfg = build_config(spec)
    ensure_ray()
    t0 = time.time()
    algo = cfg.build_algo()
    history = []
    try:
        log(f"training FAST-Q on {', '.join(spec['data'])}: {algo.dataset_info['rows']} rows, "
            f"K={cfg.num_policies}, {iterations} iterations of {cfg.dataset_num_iters_per_learner} steps")
        for _ in range(iterations):
            result = algo.train()
            log(progress_line(result, iterations, int(spec.get("evaluation", {}).get("interval") or 0)))
            lr = result.get("learners", {}).get("default_policy", {})
            history.append({"iteration": result["training_iteration"], "time_s": result.get("time_this_iter_s"),
                            "eval_return": result.get("evaluation", {}).get("env_runners", {})
                            .get("episode_return_mean"),
                            **{k: float(v) for k, v in lr.items() if isinstance(v, (int, float))}})
        if os.path.exists(out):
            shutil.rmtree(out) if os.path.isdir(out) else os.remove(out)
        algo.save_to_path(out)
        train_s = time.time() - t0
        summary: dict[str, Any] = {"checkpoint": out, "iterations": iterations, "train_seconds": train_s,
                                   "history": history}
        if spec.get("env"):
            episodes = int(spec.get("run", {}).get("final_eval_episodes", 20))
            log(f"evaluating the 'best'-arm policy on {episodes} held-out episodes of {spec['env']} ...")
            summary["evaluation"] = evaluate_module(algo.get_module(), spec, episodes=episodes)
    finally:
        algo.stop()
    with open(os.path.join(out, RUN_FILE), "w") as f:
        json.dump({"spec": spec, "gamma": cfg.gamma, "summary": summary}, f, indent=1, default=float)
    return summary


# -- evaluation ---------------------------------------------------------------------------------

def _card(spec: dict[str, Any]) -> dict[str, Any] | None:
    card = spec.get("card")
    if card and os.path.exists(card):
        return json.loads(Path(card).read_text())
    return None


def evaluate_module(module: Any, spec: dict[str, Any], *, episodes: int = 100, policy_id: int | str = "best",
                    seed: int | None = None) -> dict[str, Any]:
    """Online value of ``module`` in the spec's env: return, per-component means, and the logging
    arms' values from the card (player platform) or the D4RL-normalised score (MuJoCo)."""
    from rllib_fastq.evaluation import rollout

    env = spec["env"]
    card = _card(spec)
    if env == PLAYER_PLATFORM_ENV:
        from rllib_fastq.envs import evaluate_policy

        # The card's evaluation seed: the policy meets the same players the arms were scored on.
        seed = seed if seed is not None else (card or {}).get("online", {}).get("eval_seed", 2_000_006)
        res = evaluate_policy(rollout.policy_fn(module, policy_id), spec.get("env_config") or {}, episodes, seed)
    else:
        seed = 10_000 if seed is None else seed  # above the seeds data generators use
        res = rollout.evaluate_module(module, env, num_episodes=episodes, seed=seed, policy_id=policy_id,
                                      env_config=spec.get("env_config"))
        try:
            from rllib_fastq.evaluation.scores import normalized_score

            res["normalized_score"] = normalized_score(env, res["mean_return"])
        except (ImportError, ValueError):  # not a D4RL task
            pass
    res.update(env=env, policy_id=policy_id, seed=seed)
    if card and "online" in card:
        arms = card["online"]["arms"]
        res["arms"] = {name: a["mean_return"] for name, a in arms.items()}
        res["best_arm"] = card["online"]["best_arm"]
        res["best_arm_return"] = card["online"]["best_arm_return"]
        res["margin_over_best_arm"] = res["mean_return"] / res["best_arm_return"] - 1.0
    return res


def evaluate_checkpoint(checkpoint: str, *, env: str | None = None, data: Sequence[str] | None = None,
                        episodes: int = 100, policy_id: int | str = "best", seed: int | None = None) -> dict[str, Any]:
    """Evaluate a checkpoint online in ``env`` (default: the one it was trained with) or offline
    on ``data``; a policy id of an arm index or ``"best"``."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    if episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {episodes}")
    module = load_module(checkpoint)
    schema.check_arm_or_best(policy_id, module.num_policies, "--policy-id")
    info = run_info(checkpoint)
    spec = dict(info.get("spec") or {})
    if data:
        return {"checkpoint": checkpoint, "offline": offline_metrics(
            module, [_resolve_path(p, "--data") for p in data], float(info.get("gamma", 0.99)))}
    spec["env"] = env or spec.get("env")
    if not spec["env"]:
        raise ValueError(f"{checkpoint}: no env recorded with this checkpoint; pass --env ID or --data PATH")
    if env and env != info.get("spec", {}).get("env"):
        spec.pop("card", None)  # the card describes another env's arms
        spec["env_config"] = {}
    return {"checkpoint": checkpoint, **evaluate_module(module, spec, episodes=episodes, policy_id=policy_id,
                                                        seed=seed)}
