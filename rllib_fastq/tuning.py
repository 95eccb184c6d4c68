"""Tune searches over FastQConfig from a run spec (the ``search`` and ``tune`` sections).

``fastq tune`` wraps :func:`tune_search`; the spec format is in ``tune_configs/README.md``.
Values a search can take that are known up front (grid and choice values, sampler bounds) are
validated before ``fit()``; a trial whose sampled config still fails validation fails as that
trial (its error recorded), and the search goes on and exports the best of the others.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from ray.tune import Callback

from rllib_fastq.checkpoints import SPEC_FILE, read_run_file
from rllib_fastq.fastq import FastQ, FastQConfig
from rllib_fastq.spec import EVAL_KEY, RunSpec, build_config, echo, ensure_ray
from rllib_fastq.train import progress_line

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


def _known_values(name: str, args: Any) -> list[Any]:
    """The values a sampler is known to take (grid/choice values; the bounds of a range)."""
    if name in ("choice", "grid_search"):
        return list(args)
    if name == "randint":
        return [args[0], args[1] - 1]  # high is exclusive
    return list(args[:2])


def check_search_values(cfg: FastQConfig, search: dict[str, Any]) -> None:
    """Each known value of each sampler set alone on ``cfg`` must pass FastQConfig validation, else
    one line naming the key and the value, before any trial runs."""
    for key, value in (search or {}).items():
        name, args = next(iter(value.items()))
        for v in _known_values(name, args):
            trial = cfg.copy(copy_frozen=False)
            setattr(trial, key, v)
            try:
                trial.validate()
            except ValueError as e:
                raise ValueError(f"search.{key}: the value {v!r} fails validation "
                                 f"({str(e).strip().splitlines()[0]})") from None


class TunedFastQ(FastQ):
    """FastQ for Tune: a config that fails validation fails its own trial (in the trial's setup),
    not the driver's ``fit()`` (Tune asks the trainable for its resources on the driver, and
    RLlib validates the config there)."""

    @classmethod
    def default_resource_request(cls, config: Any) -> Any:
        try:
            return super().default_resource_request(config)
        except ValueError:
            from ray.tune import PlacementGroupFactory

            return PlacementGroupFactory([{"CPU": 1}])  # the trial starts, and fails validating its config

    def __repr__(self) -> str:
        # RLlib's __repr__ reads self.config, which is unset when __init__ failed validating it; Ray
        # calls repr() while recording that error, and would report a dead worker instead.
        return type(self).__name__ if getattr(self, "config", None) is None else super().__repr__()


def _error_line(error: Any) -> str | None:
    """The line of a trial's error that says what went wrong (``ValueError: `alpha` must be ...``)."""
    if not error:
        return None
    lines = [line.strip() for line in str(error).strip().splitlines() if line.strip()]
    named = [line for line in lines if re.match(r"^[\w.]*(Error|Exception): ", line)]
    return named[0] if named else lines[0] if lines else type(error).__name__


def _tune_settings(spec: RunSpec) -> dict[str, Any]:
    # 2-CPU defaults (see spec.Tune): one trial at a time (a trial holds a CPU for its driver and learner).
    t = {k: v for k, v in dataclasses.asdict(spec.tune).items() if k != "overrides"}
    t["metric"] = t["metric"] or (EVAL_KEY if spec.env else "learners/default_policy/td_loss")
    t["mode"] = t["mode"] or ("max" if spec.env else "min")
    t["stop"] = t["stop"] or {"training_iteration": spec.run.iterations}
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
                       metric: m.get(metric), "error": _error_line(r.error)})
    scored = [r for r in results if flatten_dict(r.metrics or {}, delimiter="/").get(metric) is not None]
    if not scored:
        errors = "; ".join(t["error"] for t in trials if t["error"])
        raise ValueError(f"no trial of {experiment_path} reported {metric}" + (f" (errors: {errors})" if errors
                                                                              else ""))
    best = results.get_best_result(metric=metric, mode=mode, scope="last")
    ckpt = best.checkpoint  # the final policy of the best trial (the score protocol: final, not best)
    search = set(read_run_file(Path(experiment_path, SPEC_FILE)).get("search") or {})
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


def tune_search(spec: RunSpec | None = None, *, resume: str | None = None,
                callbacks: Sequence[Any] = (), log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Run (or ``resume``) the spec's Tune search; writes and returns ``best.json`` in the experiment."""
    from ray import tune

    log = log or echo

    if resume is not None:
        experiment = os.path.abspath(resume)
        if not os.path.isfile(os.path.join(experiment, SPEC_FILE)):
            raise FileNotFoundError(f"--resume {resume}: not a `fastq tune` experiment (no {SPEC_FILE})")
        spec = RunSpec.from_dict(read_run_file(os.path.join(experiment, SPEC_FILE)),
                                 where=os.path.join(experiment, SPEC_FILE))
    assert spec is not None
    t = _tune_settings(spec)
    cfg = build_config(spec)
    space = search_space(spec.search)
    check_search_values(cfg, spec.search)
    for key, domain in space.items():
        setattr(cfg, key, domain)  # Tune samples these when it turns the config into trials
    ensure_ray()
    if resume is not None:
        # Unfinished trials continue from their last checkpoint; errored ones are retried from theirs.
        # The param space is given again: Tune keeps parts of it as object refs of the old Ray session.
        tuner = tune.Tuner.restore(experiment, trainable=TunedFastQ, param_space=cfg, resume_unfinished=True,
                                   resume_errored=True)
        log(f"resuming {experiment}")
    else:
        storage = os.path.abspath(t["storage_path"])
        name = f"{spec.name}_{time.strftime('%Y%m%d_%H%M%S')}"
        experiment = os.path.join(storage, name)
        os.makedirs(experiment, exist_ok=True)
        Path(experiment, SPEC_FILE).write_text(json.dumps(spec.to_dict(), indent=1, default=repr))  # repr: callables
        tuner = tune.Tuner(
            TunedFastQ, param_space=cfg,
            tune_config=tune.TuneConfig(metric=t["metric"], mode=t["mode"], num_samples=int(t["num_samples"]),
                                        max_concurrent_trials=int(t["max_concurrent_trials"]), scheduler=_scheduler(t)),
            run_config=tune.RunConfig(
                name=name, storage_path=storage, stop=dict(t["stop"]), verbose=0,
                callbacks=[_Progress(log, int(spec.evaluation.interval or 0)), *callbacks],
                checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=int(t["checkpoint_frequency"]),
                                                        checkpoint_at_end=True, num_to_keep=int(t["num_to_keep"])),
                failure_config=tune.FailureConfig(max_failures=int(t["max_failures"]))))
        log(f"Tune search {name}: metric {t['metric']} ({t['mode']}), {t['num_samples']} sample(s), "
            f"stop {t['stop']}; experiment in {experiment}")
    results = tuner.fit()
    best = _best(results, t, experiment)
    Path(experiment, "best.json").write_text(json.dumps(best, indent=1, default=str))
    return best
