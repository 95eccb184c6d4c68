"""`fastq tune` on tune_configs/smoke.yaml: an interrupted search resumes and runs to completion (metric
reported, best trial exported); a failed trial is retried from its last checkpoint."""

from __future__ import annotations

import json
import os
import signal

from ray import tune

from rllib_fastq import tuning
from rllib_fastq.cli import main
from rllib_fastq.evaluation.online import evaluate_checkpoint
from rllib_fastq.spec import PLAYER_PLATFORM_ENV, load_spec

SMOKE = os.path.join(os.path.dirname(__file__), "..", "tune_configs", "smoke.yaml")
METRIC = "evaluation/env_runners/episode_return_mean"


def _experiment(storage) -> str:
    (name,) = [d for d in os.listdir(storage) if d.startswith("smoke_")]
    return os.path.join(storage, name)


_interrupted: list[bool] = []


class _InterruptAfterFirstTrial(tune.Callback):
    """Ctrl+C once the first trial has finished, so the second never starts. Once only: Tune
    keeps the callbacks in the experiment and brings them back on restore."""

    def on_trial_complete(self, iteration, trials, trial, **info):
        if not _interrupted:
            _interrupted.append(True)
            os.kill(os.getpid(), signal.SIGINT)


def test_interrupted_search_resumes_and_exports_best(ray_session, tmp_path, capsys):
    spec = load_spec(SMOKE, [f"tune.storage_path={tmp_path}"])
    first = tuning.tune_search(spec, callbacks=[_InterruptAfterFirstTrial()])  # Tune returns on Ctrl+C
    experiment = _experiment(tmp_path)
    assert _interrupted and first["experiment"] == experiment
    assert [t["iterations"] for t in first["trials"]].count(2) == 1, first["trials"]
    capsys.readouterr()  # only the resumed run's output below

    export = tmp_path / "best.json"
    assert main(["tune", "--resume", experiment, "--export", str(export)]) == 0
    out = capsys.readouterr().out
    assert f"resuming {experiment}" in out
    assert "phase 2" in out and "eval return" in out  # progress lines of the resumed trial
    best = json.loads(export.read_text())
    assert best == json.loads(open(os.path.join(experiment, "best.json")).read())
    assert len(best["trials"]) == 2
    assert all(t["iterations"] == 2 and t[METRIC] is not None and t["error"] is None for t in best["trials"])
    assert best["best_value"] == max(t[METRIC] for t in best["trials"])
    assert best["best_config"]["alpha"] in (2.0, 3.0)
    assert os.path.isdir(os.path.join(best["best_checkpoint"], "learner_group"))
    assert f"best checkpoint: {best['best_checkpoint']}" in out
    # The exported checkpoint evaluates with the env recorded in the experiment.
    res = evaluate_checkpoint(best["best_checkpoint"], episodes=2)
    assert res["env"] == PLAYER_PLATFORM_ENV and "revenue" in res["components"]


def test_failed_trial_is_retried_from_its_checkpoint(ray_session, tmp_path):
    marker = tmp_path / "failed_once"

    def fail_once_at_iteration_2(algorithm, metrics_logger=None, result=None, **kwargs):
        if result["training_iteration"] == 2 and not marker.exists():
            marker.write_text("x")
            raise RuntimeError("injected trial failure")

    spec = load_spec(SMOKE, [f"tune.storage_path={tmp_path}", "search.alpha={choice: [2.0]}",
                                      "tune.max_failures=1"])
    spec.config["callbacks_on_train_result"] = fail_once_at_iteration_2
    best = tuning.tune_search(spec)
    assert marker.exists()  # it did fail once
    (trial,) = best["trials"]
    assert trial["error"] is None and trial["iterations"] == 2 and trial[METRIC] is not None
    result = json.loads(open(os.path.join(best["experiment"], trial["trial"], "result.json")).readlines()[-1])
    assert result["iterations_since_restore"] == 1  # restored at iteration 1, not restarted from scratch
