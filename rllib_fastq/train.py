"""``fastq train``: the training loop, its progress lines, periodic atomic checkpoints, ``--resume``.

Checkpoints go to ``out`` every ``run.checkpoint_every`` iterations and at the end, each written
beside it and renamed into place (:func:`rllib_fastq.checkpoints.save_atomic`), so a killed run
keeps its last complete checkpoint; ``resume=True`` continues from it with the learner's counters
(phase, gradient steps) and RLlib's iteration count as they were.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from rllib_fastq import checkpoints
from rllib_fastq.checkpoints import RUN_FILE
from rllib_fastq.evaluation.online import evaluate_module
from rllib_fastq.spec import RunSpec, build_config, echo, ensure_ray

PHASE_KEY = ("learners", "default_policy", "phase")


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


def phase1_warning(phase: int | None, spec: RunSpec, iterations: int, steps_per_iter: int) -> str | None:
    """The warning printed when a run ends with the learner still in phase 1 (no policy trained)."""
    if phase != 1:
        return None
    pre = spec.config.get("pretrain_steps", "its default")
    return (f"warning: the learner never left phase 1 (pretrain_steps={pre}; this run made "
            f"{iterations * steps_per_iter} gradient steps): the actor and critic were not trained. Train longer "
            f"(--iterations, run.iterations) or shorten phase 1 (--set pretrain_steps=N with N < "
            f"{iterations * steps_per_iter}).")


def _check_out(out: str, overwrite: bool) -> None:
    if os.path.exists(out) and (not os.path.isdir(out) or os.listdir(out)) and not overwrite:
        raise FileExistsError(f"--out {out} exists; pass --overwrite to replace it or --resume to continue it")


def _plain(x: Any) -> Any:
    return json.loads(json.dumps(x, default=checkpoints.json_default))


def _resume_state(out: str, spec: RunSpec) -> dict[str, Any]:
    """The run record of ``out`` to resume from; refuses (one line) when it was trained on other
    data or with another config (``run``/``evaluation`` settings and ``--iterations`` may change)."""
    info = checkpoints.complete_run(out) if os.path.isdir(out) else None
    if info is None:
        if os.path.isfile(os.path.join(out, RUN_FILE)):
            checkpoints.read_run_file(os.path.join(out, RUN_FILE))  # corrupt: names it
        raise FileNotFoundError(f"--resume: {out} holds no complete `fastq train` checkpoint (no {RUN_FILE} "
                                "with progress); train without --resume")
    old, now = info.get("spec") or {}, _plain(spec.to_dict())
    if now["data"] != old.get("data"):
        raise ValueError(f"--resume: the checkpoint in {out} was trained on other data ({old.get('data')}); "
                         "resume with the same --data or train into a new --out")
    a = {k: v for k, v in now["config"].items() if not callable(spec.config.get(k))}
    b = {k: v for k, v in (old.get("config") or {}).items() if k in a or not str(v).startswith("<")}
    diff = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    if diff:
        raise ValueError(f"--resume: the checkpoint in {out} was trained with other settings ({', '.join(diff)} "
                         "differ); resume with the same settings or train into a new --out")
    return info


def train(spec: RunSpec, *, iterations: int | None = None, out: str | None = None, overwrite: bool = False,
          resume: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Train (or ``resume``), checkpoint to ``out``, evaluate it (when the env is known); the summary."""
    log = log or echo
    iterations = int(iterations if iterations is not None else spec.run.iterations)
    if iterations < 1:
        raise ValueError(f"--iterations: expected >= 1, got {iterations}")
    every = int(spec.run.checkpoint_every)
    if every < 0:
        raise ValueError(f"run.checkpoint_every: expected >= 0 (0: only at the end), got {every}")
    if resume and overwrite:
        raise ValueError("--resume and --overwrite exclude each other")
    out = os.path.abspath(out or spec.run.out)
    # Before training: never lose minutes to a refused save.
    checkpoints.check_writable(out)
    checkpoints.recover(out)  # a swap a killed run left half done
    state = _resume_state(out, spec) if resume else None
    if state is None:
        _check_out(out, overwrite)
    cfg = build_config(spec)
    ensure_ray()
    t0 = time.time()
    algo = cfg.build_algo()
    history: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    eval_interval = int(spec.evaluation.interval or 0)
    try:
        start = 0
        if state is not None:
            algo.restore_from_path(out)
            start, history = int(algo.iteration), list((state.get("summary") or {}).get("history") or [])
            if start > iterations:
                raise ValueError(f"--resume: {out} is at iteration {start}, beyond --iterations {iterations}")
            log(f"resuming {out} at iteration {start}")
        log(f"training FAST-Q on {', '.join(spec.data)}: {algo.dataset_info['rows']} rows, "
            f"K={cfg.num_policies}, {iterations} iterations of {cfg.dataset_num_iters_per_learner} steps")
        phase = None
        for _ in range(start, iterations):
            result = algo.train()
            log(progress_line(result, iterations, eval_interval))
            lr = result.get("learners", {}).get("default_policy", {})
            phase = int(lr["phase"]) if "phase" in lr else phase
            it = int(result["training_iteration"])
            history.append({"iteration": it, "time_s": result.get("time_this_iter_s"),
                            "eval_return": result.get("evaluation", {}).get("env_runners", {})
                            .get("episode_return_mean"),
                            **{k: float(v) for k, v in lr.items() if isinstance(v, (int, float))}})
            if every and it % every == 0 and it < iterations:
                _save(algo, out, spec, cfg, {"iterations": iterations, "history": history}, it)
        if phase is None and history:
            phase = int(history[-1].get("phase", 0)) or None
        summary = {"checkpoint": out, "iterations": iterations, "train_seconds": time.time() - t0,
                   "history": history}
        _save(algo, out, spec, cfg, summary, int(algo.iteration))
        if (warning := phase1_warning(phase, spec, iterations, int(cfg.dataset_num_iters_per_learner))):
            log(warning)
            summary["warning"] = warning
        if spec.env:
            episodes = int(spec.run.final_eval_episodes)
            log(f"evaluating the 'best'-arm policy on {episodes} held-out episodes of {spec.env} ...")
            summary["evaluation"] = evaluate_module(algo.get_module(), spec, episodes=episodes)
            _record(out, spec, cfg, summary, int(algo.iteration))
    finally:
        algo.stop()
    return summary


def _record_obj(spec: RunSpec, cfg: Any, summary: dict[str, Any], done: int) -> dict[str, Any]:
    return {"spec": spec.to_dict(), "gamma": cfg.gamma, "summary": summary,
            "progress": {"iterations_done": done}}


def _save(algo: Any, out: str, spec: RunSpec, cfg: Any, summary: dict[str, Any], done: int) -> None:
    def write(tmp: str) -> None:
        algo.save_to_path(tmp)
        checkpoints.write_json_durably(os.path.join(tmp, RUN_FILE), _record_obj(spec, cfg, summary, done))

    checkpoints.save_atomic(out, write)


def _record(out: str, spec: RunSpec, cfg: Any, summary: dict[str, Any], done: int) -> None:
    checkpoints.write_json_durably(os.path.join(out, RUN_FILE), _record_obj(spec, cfg, summary, done))
