"""Issue 37: nothing lost, every failure explained. One test per reproduced defect of `fastq train`,
`evaluate` and `tune` (Serve's are in test_serve.py): atomic --overwrite, --out checked up front,
--resume with identical counters, torn/corrupt checkpoint files, relative checkpoint paths, K from
every data file, unknown spec keys, unreadable data files, a bad Tune search point."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil

import numpy as np
import pyarrow.parquet as pq
import pytest

from rllib_fastq import checkpoints, tuning
from rllib_fastq.checkpoints import RUN_FILE, run_info
from rllib_fastq.cli import main
from rllib_fastq.data.io import read_transitions, transitions_to_table, write_transitions
from rllib_fastq.spec import load_spec
from tests.pendulum_data import make_pendulum_dataset
from tests.test_cli import HELDOUT, TINY

SMOKE = os.path.join(os.path.dirname(__file__), "..", "tune_configs", "smoke.yaml")


def _train(out, *extra: str, iterations: int = 2) -> tuple[int, str]:
    """`fastq train` at smoke size; ``extra``: flags (``--resume``) and ``--set`` items."""
    flags = [e for e in extra if e.startswith("--")]
    sets = [e for e in extra if not e.startswith("--")]
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--data", HELDOUT, "--iterations", str(iterations), "--out", str(out), *flags,
                   "--set", *TINY, "run.final_eval_episodes=1", *sets])
    return rc, buf.getvalue()


def _error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err


@pytest.fixture(scope="module")
def trained(ray_session, tmp_path_factory):
    """A smoke checkpoint trained 2 iterations, checkpointed every iteration."""
    out = tmp_path_factory.mktemp("robust") / "ckpt"
    rc, _ = _train(out, "run.checkpoint_every=1")
    assert rc == 0
    return out


def test_overwrite_killed_while_saving_keeps_the_old_checkpoint(trained, tmp_path, monkeypatch, capsys):
    out = tmp_path / "ckpt"
    shutil.copytree(trained, out)
    before = (out / RUN_FILE).read_text()
    real = checkpoints.write_json_durably

    def killed(path, obj):  # dies while the new checkpoint is being written
        if ".tmp-" in path:
            raise KeyboardInterrupt("killed")
        real(path, obj)

    monkeypatch.setattr(checkpoints, "write_json_durably", killed)
    with pytest.raises(KeyboardInterrupt):
        _train(out, "--overwrite", iterations=1)
    assert (out / RUN_FILE).read_text() == before
    checkpoints.load_module(str(out))  # still a complete checkpoint
    monkeypatch.undo()
    # The next run cleans up what the killed one left beside it.
    rc, stdout = _train(out, "--overwrite", "pretrain_steps=1000", iterations=1)
    assert rc == 0 and not checkpoints._siblings(str(out))
    assert json.loads((out / RUN_FILE).read_text())["progress"]["iterations_done"] == 1
    # Still in phase 1 at the end: a warning saying so and what to do.
    assert "warning: the learner never left phase 1" in stdout and "--iterations" in stdout
    assert "pretrain_steps" in stdout


def test_killed_between_the_two_renames_is_recovered(tmp_path):
    out = tmp_path / "ckpt"
    for name, done in ((".ckpt.old-1", 2), (".ckpt.tmp-1", 4), (".ckpt.tmp-2", 9)):
        (tmp_path / name).mkdir()
        if name != ".ckpt.tmp-2":  # incomplete: no run record
            (tmp_path / name / RUN_FILE).write_text(json.dumps({"progress": {"iterations_done": done}}))
    checkpoints.recover(str(out))
    assert json.loads((out / RUN_FILE).read_text())["progress"]["iterations_done"] == 4
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]


@pytest.mark.parametrize("where", ["under_a_file", "read_only"])
def test_unwritable_out_fails_before_training(tmp_path, capsys, where):
    if where == "under_a_file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "ckpt"
    else:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        out = ro / "ckpt"
        if os.access(ro, os.W_OK) and os.geteuid() == 0:
            # root ignores permission bits; an immutable directory would still refuse, but needs chattr
            try:
                os.mkdir(ro / "probe")
                os.rmdir(ro / "probe")
                pytest.skip("running as root: a read-only directory is writable")
            except OSError:
                pass
    rc, stdout = _train(out)
    assert rc == 2 and "training FAST-Q" not in stdout
    assert "cannot write there" in _error(capsys)


def test_resume_continues_with_identical_counters(trained, tmp_path, ray_session):
    straight = tmp_path / "straight"
    assert _train(straight, "run.checkpoint_every=1", iterations=3)[0] == 0
    resumed = tmp_path / "resumed"
    shutil.copytree(trained, resumed)  # what a run killed after iteration 2 leaves
    rc, stdout = _train(resumed, "run.checkpoint_every=1", "--resume", iterations=3)
    assert rc == 0 and "resuming" in stdout and "at iteration 2" in stdout and "iter 3/3" in stdout
    a, b = (run_info(str(d))["summary"]["history"] for d in (straight, resumed))
    keys = ("iteration", "phase", "num_gradient_steps", "num_actor_steps")
    assert [[h.get(k) for k in keys] for h in a] == [[h.get(k) for k in keys] for h in b]
    assert b[-1]["phase"] == 2 and b[-1]["iteration"] == 3


def test_resume_refuses_other_settings_and_missing_checkpoints(trained, tmp_path, capsys):
    resumed = tmp_path / "r"
    shutil.copytree(trained, resumed)
    assert _train(resumed, "alpha=7", "--resume", iterations=3)[0] == 2
    assert "trained with other settings (alpha differ)" in _error(capsys)
    assert _train(tmp_path / "none", "--resume")[0] == 2
    assert "holds no complete `fastq train` checkpoint" in _error(capsys)


def test_torn_and_corrupt_checkpoint_files_are_one_line(trained, tmp_path, capsys):
    torn = tmp_path / "torn"
    shutil.copytree(trained, torn)
    state = checkpoints.resolve_module_checkpoint(str(torn)) + "/module_state.pkl"
    with open(state, "r+b") as f:
        f.truncate(64)
    assert main(["evaluate", str(torn), "--episodes", "1"]) == 2
    assert "module_state.pkl: torn or corrupt checkpoint file" in _error(capsys)
    bad = tmp_path / "bad_json"
    shutil.copytree(trained, bad)
    (bad / RUN_FILE).write_text('{"spec": {"env": ')
    assert main(["evaluate", str(bad), "--episodes", "1"]) == 2
    assert f"{RUN_FILE}: corrupt run record" in _error(capsys)


def test_evaluate_with_a_relative_path(trained, monkeypatch, capsys):
    monkeypatch.chdir(trained.parent)
    assert main(["evaluate", trained.name, "--episodes", "1"]) == 0
    assert "mean return" in capsys.readouterr().out


def _no_meta(tr, path, fmt=None):
    """``tr`` written without the metadata that states K (so K must come from the rows)."""
    if fmt == "json":
        write_transitions(tr, path, fmt="json")
        if os.path.exists(str(path) + ".meta"):
            os.remove(str(path) + ".meta")
        return str(path)
    pq.write_table(transitions_to_table(tr).replace_schema_metadata(None), path)
    return str(path)


def test_num_policies_from_every_file_of_any_format(tmp_path, capsys):
    tr = make_pendulum_dataset(episodes=3)  # arms 0 and 1
    assert set(np.unique(tr.policy_id)) == {0, 1}
    js = _no_meta(tr, tmp_path / "d.json", fmt="json")
    assert load_spec(data=[js]).config["num_policies"] == 2
    d = tmp_path / "dir"
    d.mkdir()
    one = dataclasses.replace(tr, policy_id=np.zeros_like(tr.policy_id))
    _no_meta(one, d / "a.parquet")  # arm 0 only
    _no_meta(tr, d / "b.parquet")
    assert load_spec(data=[str(d)]).config["num_policies"] == 2
    # A stray id beyond a gap: the data check's one-line error, not K = 8 with empty arms.
    stray = tr.policy_id.copy()
    stray[5] = 7
    path = _no_meta(dataclasses.replace(tr, policy_id=stray), tmp_path / "stray.parquet")
    spec = load_spec(data=[path])
    assert spec.config["num_policies"] == 2
    with pytest.raises(ValueError, match=r"stray.parquet.*policy_id.*\[7\]"):
        read_transitions([path], num_policies=spec.config["num_policies"])


@pytest.mark.parametrize("content", [b"", b"PAR1\x00\x00garbage"])
def test_empty_or_truncated_first_parquet_is_named(tmp_path, capsys, content):
    bad = tmp_path / "first.parquet"
    bad.write_bytes(content)
    for extra in ([], ["--set", "num_policies=3"]):
        assert main(["train", "--data", str(bad), *extra, "--out", str(tmp_path / "o")]) == 2
        assert f"{bad}: cannot be read as parquet" in _error(capsys)


@pytest.mark.parametrize("key", ["run.iteration=1", "evaluation.interva=1", "tune.num_sample=2",
                                 "learners.num_gpus=1"])
def test_unknown_key_in_any_section(tmp_path, capsys, key):
    assert main(["train", "--set", key, "--out", str(tmp_path / "o")]) == 2
    err = _error(capsys)
    section, name = key.split("=")[0].split(".")
    assert f"{section}: unknown key(s) ['{name}']; known: [" in err


def test_bad_search_value_fails_before_fit(tmp_path):
    spec = load_spec(SMOKE, [f"tune.storage_path={tmp_path}", "search.alpha={grid_search: [-1.0, 2.0]}"])
    with pytest.raises(ValueError, match=r"search.alpha: the value -1.0 fails validation"):
        tuning.tune_search(spec)
    assert not os.listdir(tmp_path)  # nothing started


def test_trial_failing_validation_fails_alone(ray_session, tmp_path, monkeypatch):
    """A value only a trial sees (here: the up-front check switched off) fails that trial; the
    search goes on and exports the best of the others."""
    monkeypatch.setattr(tuning, "check_search_values", lambda cfg, search: None)
    spec = load_spec(SMOKE, [f"tune.storage_path={tmp_path}", "search.alpha={grid_search: [-1.0, 2.0]}",
                             "tune.max_failures=0"])
    best = tuning.tune_search(spec)
    errors = [t for t in best["trials"] if t["error"]]
    assert len(best["trials"]) == 2 and len(errors) == 1 and "alpha" in errors[0]["error"]
    assert best["best_config"] == {"alpha": 2.0} and best["best_checkpoint"]
    assert os.path.isfile(os.path.join(best["experiment"], "best.json"))


def test_resume_with_override_is_refused(tmp_path, capsys):
    assert main(["tune", "--resume", str(tmp_path), "--override", "alpha=2"]) == 2
    assert "--override cannot change a search being resumed" in _error(capsys)


def test_corrupt_tune_spec_is_named(tmp_path, capsys):
    (tmp_path / checkpoints.SPEC_FILE).write_text("{not json")
    assert main(["tune", "--resume", str(tmp_path)]) == 2
    assert f"{checkpoints.SPEC_FILE}: corrupt run record" in _error(capsys)

