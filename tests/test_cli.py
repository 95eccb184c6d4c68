"""The `fastq` command: --help of every subcommand, `train` and `evaluate` at smoke size, and the
one-line errors (exit 2, no traceback) for user mistakes."""

from __future__ import annotations

import contextlib
import io
import json
import os

import pytest

from rllib_fastq import spec as specs
from rllib_fastq import tuning
from rllib_fastq.checkpoints import RUN_FILE, run_info
from rllib_fastq.cli import main
from rllib_fastq.data.io import write_transitions
from tests.pendulum_data import make_pendulum_dataset

HELDOUT = str(specs.PLAYER_PLATFORM_DIR / "heldout.parquet")
CONFIGS = os.path.join(os.path.dirname(__file__), "..", "tune_configs")
TINY = ["dataset_num_iters_per_learner=10", "pretrain_steps=10", "exploration_ramp_steps=20", "br_dim=16",
        "expert_hiddens=[32,16]", "adversary_hiddens=[32]", "actor_hiddens=[32,32]", "critic_hiddens=[32,32]",
        "lstm_hidden=16", "static_hidden=8", "evaluation.interval=1", "evaluation.episodes=2",
        "run.final_eval_episodes=4"]


@pytest.mark.parametrize("command", [["train"], ["tune"], ["evaluate"], ["serve"], ["data"], ["data", "mujoco"]])
def test_help(command, capsys):
    with pytest.raises(SystemExit) as e:
        main([*command, "--help"])
    assert e.value.code == 0
    assert f"usage: fastq {' '.join(command)}" in capsys.readouterr().out


def smoke_train(out: str) -> str:
    """`fastq train` at smoke size into ``out``; its stdout."""
    buf = io.StringIO()  # capsys is function-scoped: redirect by hand
    with contextlib.redirect_stdout(buf):
        rc = main(["train", "--data", HELDOUT, "--iterations", "2", "--out", out, "--set", *TINY])
    assert rc == 0
    return buf.getvalue()


@pytest.fixture(scope="module")
def checkpoint(ray_session, tmp_path_factory):
    """`fastq train` at smoke size: (checkpoint dir, its stdout)."""
    out = str(tmp_path_factory.mktemp("train") / "ckpt")
    return out, smoke_train(out)


def test_train_progress_checkpoint_and_summary(checkpoint):
    out, stdout = checkpoint
    assert "iter 1/2 | phase 1 | expert_loss" in stdout and "iter 2/2 | phase 2 | td_loss" in stdout
    assert "eval return" in stdout
    assert os.path.isdir(os.path.join(out, "learner_group"))
    ev = run_info(out)["summary"]["evaluation"]
    assert ev["num_episodes"] == 4 and set(ev["components"]) == {"revenue", "engagement", "cost", "dwell"}
    assert ev["best_arm"] == "competitive" and set(ev["arms"]) == {"retention", "competitive", "monetization"}
    assert f"checkpoint: {out}" in stdout
    assert f"mean return {ev['mean_return']:.3f}" in stdout and "best arm competitive 7.738" in stdout


def test_same_command_gives_the_same_checkpoint(checkpoint, tmp_path):
    """The default specs fix `seed`: a rerun repeats every loss and the evaluation bit for bit."""
    out, _ = checkpoint
    again = str(tmp_path / "again")
    smoke_train(again)
    first, second = (run_info(d)["summary"] for d in (out, again))
    losses = ("expert_loss", "td_loss", "actor_loss", "q_mean")
    assert [[h.get(k) for k in losses] for h in first["history"]] == [[h.get(k) for k in losses]
                                                                      for h in second["history"]]
    assert first["evaluation"]["mean_return"] == second["evaluation"]["mean_return"]
    assert first["history"][1]["td_loss"] > 0


def test_evaluate_online_and_offline(checkpoint, capsys):
    out, _ = checkpoint
    assert main(["evaluate", out, "--episodes", "3", "--policy-id", "1"]) == 0
    text = capsys.readouterr().out
    assert "policy 1: mean return" in text and "over 3 episodes" in text and "per component: revenue" in text
    res_path = os.path.join(os.path.dirname(out), "offline.json")
    assert main(["evaluate", out, "--data", HELDOUT, "--json", res_path]) == 0
    off = json.loads(open(res_path).read())["offline"]
    assert off["rows"] == 5000 and off["gamma"] == 0.9  # the player-platform spec's and off["td_rmse"] > 0
    assert "TD RMSE" in capsys.readouterr().out


def test_overwrite_replaces_checkpoint(ray_session, tmp_path):
    out = tmp_path / "ckpt"
    out.mkdir()
    (out / "stale.txt").write_text("old")
    assert main(["train", "--data", HELDOUT, "--iterations", "1", "--out", str(out), "--overwrite",
                 "--set", *TINY, "run.final_eval_episodes=1"]) == 0
    assert not (out / "stale.txt").exists() and (out / RUN_FILE).exists()


def _bad_yaml(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("data: [x.parquet]\nsearch_space: {}\n")
    return str(p)


@pytest.mark.parametrize("argv, message", [
    (["train", "--data", "missing.parquet"], "data: missing.parquet does not exist"),
    (["train", "--set", "alpha"], "expected key=value"),
    (["train", "--set", "alfa=2"], "unknown FastQConfig setting 'alfa'"),
    (["train", "--set", "learners.num_gpus=1"], "learners: unknown key(s) ['num_gpus']"),
    (["train", "--set", "alpha=-1"], "`alpha` must be a number >= 0"),
    (["train", "--iterations", "0"], "--iterations: expected >= 1"),
    (["train", "--config", "BAD_YAML"], "unknown key(s) ['search_space']"),
    (["train", "--config", "missing.yaml"], "--config: missing.yaml does not exist"),
    (["tune"], "give a tune_configs/*.yaml file or --resume DIR"),
    (["tune", "--resume", "."], "not a `fastq tune` experiment"),
    (["evaluate", "no/such/ckpt"], "checkpoint no/such/ckpt does not exist"),
])
def test_user_errors_exit_2_with_one_line(argv, message, tmp_path, capsys):
    argv = [_bad_yaml(tmp_path) if a == "BAD_YAML" else a for a in argv]
    if argv[0] == "train":  # never the default checkpoints/ of the working tree
        argv += ["--out", str(tmp_path / "out")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"fastq {argv[0]}: error: ")


def test_existing_checkpoint_is_not_overwritten(checkpoint, capsys):
    out, _ = checkpoint
    before = sorted(os.listdir(out))
    assert main(["train", "--data", HELDOUT, "--out", out]) == 2
    assert "exists; pass --overwrite" in capsys.readouterr().err
    assert sorted(os.listdir(out)) == before


def test_debug_shows_the_traceback():
    with pytest.raises(FileNotFoundError, match="missing.parquet"):
        main(["--debug", "train", "--data", "missing.parquet"])


def test_specs_default_generic_and_shipped_configs(tmp_path):
    spec = specs.load_spec()  # `fastq train` without arguments: the main job
    assert spec.env == specs.PLAYER_PLATFORM_ENV and spec.data[0].endswith("train.parquet")
    assert spec.card.endswith("card.json")
    # The main job is tune_configs/player_platform.yaml; the search runs its tune.overrides.
    assert (spec.evaluation.interval, spec.evaluation.episodes, spec.run.out) == (4, 10, "checkpoints/fastq")
    assert spec.config["seed"] == 0 and spec.run.iterations == 12 and spec.run.final_eval_episodes == 300
    tuned = specs.load_spec(os.path.join(CONFIGS, "player_platform.yaml"), for_tune=True)
    assert (tuned.evaluation.interval, tuned.evaluation.episodes, tuned.config["seed"]) == (1, 20, None)
    # Other data: FastQConfig's defaults, K read off the data, no env unless given.
    path = write_transitions(make_pendulum_dataset(episodes=2), tmp_path / "p.parquet")
    generic = specs.load_spec(data=[str(path)], env="Pendulum-v1")
    assert generic.config == {"seed": 0, "num_policies": 2}
    assert generic.env == "Pendulum-v1" and generic.card is None
    for name in ("smoke", "player_platform", "gpu_cluster"):
        cfg, spec = specs.config_from_yaml(os.path.join(CONFIGS, f"{name}.yaml"), ["actor_lr=1e-4"])
        assert cfg.actor_lr == 1e-4 and spec.tune.metric == specs.EVAL_KEY
        assert tuning.search_space(spec.search)
    assert specs.config_from_yaml(os.path.join(CONFIGS, "gpu_cluster.yaml"))[0].num_gpus_per_learner == 1
    hopper = os.path.join(CONFIGS, "mujoco_hopper.yaml")
    if os.path.exists(specs.ROOT / "offline_data/mujoco/Hopper-v5/multi-policy.parquet"):
        cfg, spec = specs.config_from_yaml(hopper)
        assert cfg.num_policies == 5 and spec.env == "Hopper-v5"
    else:  # `fastq data mujoco` has not made the data yet: a one-line error naming the file
        with pytest.raises(FileNotFoundError, match="Hopper-v5/multi-policy.parquet does not exist"):
            specs.load_spec(hopper)


def test_train_on_other_data_evaluates_in_the_named_env(ray_session, tmp_path, capsys):
    """No card, no YAML: K from the data, the env only for the final evaluation."""
    data = write_transitions(make_pendulum_dataset(episodes=2), tmp_path / "p.parquet")
    assert main(["train", "--data", str(data), "--env", "Pendulum-v1", "--iterations", "2", "--out",
                 str(tmp_path / "ckpt"), "--set", "dataset_num_iters_per_learner=10", "pretrain_steps=10",
                 "run.final_eval_episodes=1"]) == 0
    out = capsys.readouterr().out
    assert "K=2" in out and "over 1 episodes of Pendulum-v1 (seed 10000)" in out
    assert "logging arms" not in out  # no card for this data
