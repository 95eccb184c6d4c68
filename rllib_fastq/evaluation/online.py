"""Online (simulator) and offline evaluation of a trained module or checkpoint: what ``fastq
evaluate`` and the end of ``fastq train`` run. The player-platform env gets the simulator's own
evaluation (per-component returns, segments, the card's arms on the same players); any other env
gets the generic rollout (with the D4RL-normalised score for the MuJoCo tasks).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rllib_fastq.checkpoints import load_module, run_info
from rllib_fastq.data import schema
from rllib_fastq.spec import PLAYER_PLATFORM_ENV, RunSpec, resolve_path


def _card(spec: RunSpec) -> dict[str, Any] | None:
    if spec.card and os.path.exists(spec.card):
        return json.loads(Path(spec.card).read_text())
    return None


def evaluate_module(module: Any, spec: RunSpec, *, episodes: int = 100, policy_id: int | str = "best",
                    seed: int | None = None) -> dict[str, Any]:
    """Online value of ``module`` in the spec's env: return, per-component means, and the logging
    arms' values from the card (player platform) or the D4RL-normalised score (MuJoCo)."""
    from rllib_fastq.evaluation import rollout

    env = spec.env
    card = _card(spec)
    if env == PLAYER_PLATFORM_ENV:
        from rllib_fastq.envs import evaluate_policy

        # The card's evaluation seed: the policy meets the same players the arms were scored on.
        seed = seed if seed is not None else (card or {}).get("online", {}).get("eval_seed", 2_000_006)
        res = evaluate_policy(rollout.policy_fn(module, policy_id, batched=True), spec.env_config, episodes, seed,
                              batched=True)
    else:
        seed = 10_000 if seed is None else seed  # above the seeds data generators use
        res = rollout.evaluate_module(module, env, num_episodes=episodes, seed=seed, policy_id=policy_id,
                                      env_config=spec.env_config)
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
                        episodes: int = 100, policy_id: int | str = "best", seed: int | None = None,
                        ope_method: str = "auto") -> dict[str, Any]:
    """Evaluate a checkpoint online in ``env`` (default: the one it was trained with) or offline
    on ``data`` (the off-policy value, :func:`rllib_fastq.evaluation.ope.estimate_policy_value`
    with ``ope_method``, and the TD metrics under ``"offline"``); a policy id of an arm index or
    ``"best"``."""
    if not os.path.exists(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    if episodes < 1:
        raise ValueError(f"--episodes: expected >= 1, got {episodes}")
    checkpoint = os.path.abspath(checkpoint)
    module = load_module(checkpoint)
    schema.check_arm_or_best(policy_id, module.num_policies, "--policy-id")
    info = run_info(checkpoint)
    recorded = info.get("spec") or {}
    if data:
        from rllib_fastq.evaluation.offline import offline_metrics
        from rllib_fastq.evaluation.ope import estimate_policy_value

        paths = [resolve_path(p, "--data") for p in data]
        gamma = float(info.get("gamma", 0.99))
        # The off-policy value of the served policy (issue 36) beside the TD metrics.
        ope = estimate_policy_value(module, paths, policy_id=policy_id, method=ope_method, gamma=gamma)
        return {"checkpoint": checkpoint, **ope, "offline": offline_metrics(module, paths, gamma)}
    spec = RunSpec(env=env or recorded.get("env"), env_config=dict(recorded.get("env_config") or {}),
                   card=recorded.get("card"))
    if not spec.env:
        raise ValueError(f"{checkpoint}: no env recorded with this checkpoint; pass --env ID or --data PATH")
    if env and env != recorded.get("env"):
        spec.card, spec.env_config = None, {}  # the card describes another env's arms
    return {"checkpoint": checkpoint, **evaluate_module(module, spec, episodes=episodes, policy_id=policy_id,
                                                        seed=seed)}
