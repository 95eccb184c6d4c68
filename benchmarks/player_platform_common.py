"""What the player-platform benchmarks share: the data, the budget, FAST-Q's settings, the scoring.

``player_platform_quality`` and ``player_platform_tuning`` (and the diagnostics) import this
module; neither imports the other. FAST-Q's settings (networks, gamma, reward weights, exploration)
are the main job's, read from ``tune_configs/player_platform.yaml``; the step budgets below are the
benchmarks' own (FULL matches the main job's 12 iterations of 250 steps).
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

from rllib_fastq.spec import MAIN_JOB_YAML, read_yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
#: The main job's FastQConfig settings; the budget keys are set per run from FULL/QUICK.
MAIN_JOB = {k: v for k, v in read_yaml(str(MAIN_JOB_YAML))["config"].items()
            if k not in ("seed", "pretrain_steps", "dataset_num_iters_per_learner", "exploration_ramp_steps")}
TRAIN = str(ROOT / "offline_data/player_platform/train.parquet")
RESULTS = ROOT / "benchmarks/results"
TUNING_OUT = RESULTS / "player_platform_tuning.json"
EVAL_SEED, CF_SEED = 10_000, 30_000
GAMMA, HIDDENS = MAIN_JOB["gamma"], MAIN_JOB["critic_hiddens"]
FULL = {"spi": 250, "pretrain": 500, "total": 1500, "ramp": 1000, "episodes": 300, "curve_episodes": 100,
        "cf_states": 200, "cf_rollouts": 8}
QUICK = {"spi": 50, "pretrain": 100, "total": 300, "ramp": 200, "episodes": 30, "curve_episodes": 10,
         "cf_states": 20, "cf_rollouts": 2}


def fastq_config(seed: int, p: dict[str, int], overrides: dict[str, Any]) -> Any:
    from rllib_fastq import FastQConfig

    training = dict(MAIN_JOB, pretrain_steps=p["pretrain"], exploration_ramp_steps=p["ramp"])
    training.update(overrides)
    return (FastQConfig()
            .offline_data(input_=[TRAIN], dataset_num_iters_per_learner=p["spi"])
            .training(**training)
            .debugging(seed=seed))


def evaluate(fn: Any, flat: bool, episodes: int, seed: int = EVAL_SEED) -> dict[str, Any]:
    """Online in the simulator on ``episodes`` players seeded ``seed``.. (default: the held-out ones)."""
    from rllib_fastq.envs import evaluate_policy

    return evaluate_policy(fn, {"flat_obs": True} if flat else None, num_episodes=episodes, seed=seed)


def chosen(method: str) -> dict[str, float]:
    """The settings tuning chose for ``method``: "FAST-Q" {alpha, grl_lambda} or "TD3+BC" {alpha}."""
    if not TUNING_OUT.exists() or "chosen" not in json.loads(TUNING_OUT.read_text()):
        raise SystemExit(f"{TUNING_OUT.relative_to(ROOT)} has no chosen settings: run "
                         "`python -m benchmarks.player_platform_tuning` first (it tunes on tuning players).")
    return dict(json.loads(TUNING_OUT.read_text())["chosen"][method])


