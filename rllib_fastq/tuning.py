"""Tune searches over FastQConfig from a run spec (the ``search`` and ``tune`` sections).

``fastq tune`` wraps :func:`tune_search`; the spec format is in ``tune_configs/README.md``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from rllib_fastq.checkpoints import SPEC_FILE
from rllib_fastq.fastq import FastQConfig
from rllib_fastq.workflow import EVAL_KEY, build_config, echo, ensure_ray, progress_line

SAMPLERS = ("uniform", "loguniform", "quniform", "randint", "choice", "grid_search")


def search_space(search: dict[str, Any]) -> dict[str, Any]:
    """YAML samplers (``{"loguniform": [1e-4, 1e-3]}``, ``{"choice": [...]}``, ``{"grid_search": [...]}``)
    → Tune domains, keyed by FastQConfig attribute."""
    from ray import tune

    cfg, out = FastQConfig(), {}
    for key, value in (search or {}).items():
        if not hasattr(cfg, key):
            raise ValueError(f"search: unknown FastQConfig setting {key!r}")
        if not (isinstance(value, dict) and len(value) == 1 and next(iter(value)) in SAMPLERS):
            raise ValueError(f"search.{key}: expected one sampler of {list(SAMPLERS)}, "
                             "e.g. {loguniform: [1e-4, 1e-3]}")
        name, args = next(iter(value.items()))
        out[key] = getattr(tune, name)(args) if name in ("choice", "grid_search") else getattr(tune, name)(*args)
    return out


def _tune_settings(spec: dict[str, Any]) -> dict[str, Any]:
    # 2-CPU defaults: one trial at a time (a trial holds a CPU for its driver and learner).
    t = {"metric": EVAL_KEY if spec.get("env") else "learners/default_policy/td_loss",
         "mode": "max" if spec.get("env") else "min", "num_samples": 1, "max_concurrent_trials": 1,
         "scheduler": {"type": "asha"}, "stop": {"training_iteration": spec.get("run", {}).get("iterations", 10)},
         "max_failures": 1, "checkpoint_frequency": 1, "num_to_keep": 2, "storage_path": "ray_results"}
    t.update(spec.get("tune") or {})
    unknown = sorted(set(t) - {"metric", "mode", "num_samples", "max_concurrent_trials", "scheduler", "stop",
                               "max_failures", "checkpoint_frequency", "num_to_keep", "storage_path"})
    if unknown:
        raise ValueError(f"tune: unknown key(s) {unknown}")
    if t["mode"] not in ("min", "max"):
        raise ValueError(f"tune.mode: expected 'min' or 'max', got {t['mode']!r}")
    return t


def _scheduler(t: dict[str, Any]) -> Any:
    from ray.tune.schedulers import ASHAScheduler

    s = dict(t["scheduler"] or {"type": "fifo"})
    kind = s.pop("type", "asha")
    if kind == "fifo":
        return None
    if kind != "asha":
        raise ValueError(f"tune.scheduler.type: expected 'asha' or 'fifo', got {kind!r}")
    max_t = int(t["stop"].get("training_iteration", 100))
    return ASHAScheduler(time_attr="training_iteration", max_t=max_t, **{"grace_period": 1, **s})


def _best(results: Any, t: dict[str, Any], experiment_path: str) -> dict[str, Any]:
    """The best trial (by its last reported metric), its best checkpoint, and every trial."""
    from ray.tune.utils import flatten_dict

    metric, mode = t["metric"], t["mode"]
    trials = []
    for r in results:
        m = flatten_dict(r.metrics or {}, delimiter="/")
        trials.append({"trial": r.path and os.path.basename(r.path), "iterations": m.get("training_iteration"),
                       metric: m.get(metric), "error": str(r.error).strip().splitlines()[0] if r.error else None})
    best = results.get_best_result(metric=metric, mode=mode, scope="last")
    ckpt = best.checkpoint  # the final policy of the best trial (the score protocol: final, not best)
    search = set(json.loads(Path(experiment_path, SPEC_FILE).read_text()).get("search") or {})
    return {"experiment": experiment_path, "metric": metric, "mode": mode,
            "best_value": flatten_dict(best.metrics, delimiter="/").get(metric),
            "best_trial": os.path.basename(best.path), "best_checkpoint": ckpt.path if ckpt else None,
            "best_config": {k: best.config.get(k) for k in sorted(search)}, "trials": trials}


class _Progress(Callback):
    """Our progress line per trial result (Tune's own tables print the whole config)."""

    def __init__(self, log: Callable[[str], None], eval_interval: int):
        self.log, self.eval_interval = log, eval_interval

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self.log(f"[{trial.trial_id}] " + progress_line(result, eval_interval=self.eval_interval))

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.log(f"[{trial.trial_id}] failed (retried from its last checkpoint up to tune.max_failures times)")


def tune_search(spec: dict[str, Any] | None = None, *, resume: str | None = None,
                callbacks: Sequence[Any] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or ``resume``) the spec's Tune search; writes and returns ``best.json`` in the experiment."""
    from ray import tune

    log = log or echo

    if resume is not None:
        experiment = os.path.abspath(resume)
        if not os.path.isfile(os.path.join(experiment, SPEC_FILE)):
            raise FileNotFoundError(f"--resume {resume}: not a `fastq tune` experiment (no {SPEC_FILE})")
        spec = json.loads(Path(experiment, SPEC_FILE).read_text())
    assert spec is not None
    t = _tune_settings(spec)
    cfg = build_config(spec)
    for key, domain in search_space(spec.get("search") or {}).items():
        setattr(cfg, key, domain)  # Tune samples these when it turns the config into trials
    ensure_ray()
    if resume is not None:
        # Unfinished trials continue from their last checkpoint; errored ones are retried from theirs.
        # The param space is given again: Tune keeps parts of it as object refs of the old Ray session.
        tuner = tune.Tuner.restore(experiment, trainable="FASTQ", param_space=cfg, resume_unfinished=True,
                                   resume_errored=True)
        log(f"resuming {experiment}")
    else:
        storage = os.path.abspath(t["storage_path"])
        name = f"{spec.get('name', 'fastq')}_{time.strftime('%Y%m%d_%H%M%S')}"
        experiment = os.path.join(storage, name)
        os.makedirs(experiment, exist_ok=True)
        Path(experiment, SPEC_FILE).write_text(json.dumps(spec, indent=1, default=repr))  # repr: callables
        tuner = tune.Tuner(
            "FASTQ", param_space=cfg,
            tune_config=tune.TuneConfig(metric=t["metric"], mode=t["mode"], num_samples=int(t["num_samples"]),
                                        max_concurrent_trials=int(t["max_concurrent_trials"]), scheduler=_scheduler(t)),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, stop=dict(t["stop"]), verbose=0,
                callbacks=[_Progress(log, int((spec.get("evaluation") or {}).get("interval") or 0)), *callbacks],
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=int(t["checkpoint_frequency"]),
                                                        checkpoint_at_end=True, num_to_keep=int(t["num_to_keep"])),
                failure_config=tune.FailureConfig(max_failures=int(t["max_failures"]))))
        log(f"Tune search {name}: metric {t['metric']} ({t['mode']}), {t['num_samples']} sample(s), "
            f"stop {t['stop']}; experiment in {experiment}")
    results = tuner.fit()
    best = _best(results, t, experiment)
    Path(experiment, "best.json").write_text(json.dumps(best, indent=1, default=str))
    return best
