"""The MuJoCo dataset generator on a tiny budget, the D4RL score, and the shipped datasets."""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from rllib_fastq.data.io import read_transitions, validate_dataset
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.datasets import cards, mujoco
from rllib_fastq.evaluation.scores import D4RL_REF_SCORES, normalized_score

ENV = "Hopper-v5"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHIPPED = os.path.join(REPO, "offline_data", "mujoco")
POLICY_IDS = {"medium": {0}, "high": {0}, "medium-high": {0, 1}, "multi-policy": {0, 1, 2, 3, 4}}


@pytest.fixture(autouse=True, scope="module")
def _cwd_outside_the_repo(tmp_path_factory):
    """MuJoCo logs a deprecation warning to MUJOCO_LOG.TXT in the cwd; keep it out of the repo."""
    old = os.getcwd()
    os.chdir(tmp_path_factory.mktemp("cwd"))
    yield
    os.chdir(old)


def check_episodes(tr: Transitions) -> None:
    """Episodes are contiguous, t counts 0, 1, ..., only the last step ends, new_obs chains."""
    n = len(tr)
    change = np.concatenate([[True], tr.eps_id[1:] != tr.eps_id[:-1]])
    starts = np.flatnonzero(change)
    assert len(starts) == len(np.unique(tr.eps_id)), "an eps_id appears in two separate blocks"
    episode = np.cumsum(change) - 1
    assert np.array_equal(tr.t, np.arange(n) - starts[episode])
    last = np.concatenate([change[1:], [True]])
    done = tr.terminateds | tr.truncateds
    assert np.array_equal(done, last), "done must be set on, and only on, each episode's last step"
    same = ~last[:-1]
    assert np.array_equal(tr.new_obs[:-1][same], tr.obs[1:][same])


@pytest.mark.parametrize("env_id", ["Hopper-v5", "hopper", "HalfCheetah-v5", "halfcheetah", "Walker2d-v5"])
def test_normalized_score_anchors(env_id):
    lo, hi = D4RL_REF_SCORES[env_id.lower().split("-")[0]]
    assert normalized_score(env_id, lo) == pytest.approx(0.0)
    assert normalized_score(env_id, hi) == pytest.approx(100.0)


def test_normalized_score_values_and_unknown_env():
    assert normalized_score("Hopper-v5", 1607.0138475) == pytest.approx(50.0)
    assert normalized_score("walker2d", 1.629008 + 0.1 * (4592.3 - 1.629008)) == pytest.approx(10.0)
    with pytest.raises(ValueError, match="Ant-v5.*halfcheetah.*hopper.*walker2d"):
        normalized_score("Ant-v5", 100.0)


def test_module_imports_cheaply():
    # The package itself may load torch/ray; the generator must add no simulator or SAC on top.
    code = ("import sys, rllib_fastq; before = set(sys.modules); import rllib_fastq.datasets.mujoco; "
            "new = set(sys.modules) - before; "
            "bad = sorted(m for m in new if m.split('.')[0] in ('torch', 'mujoco', 'gymnasium') "
            "or m == 'rllib_fastq.datasets.sac'); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_replay_segments_round_trip(tmp_path):
    from rllib_fastq.datasets.sac import ReplayBuffer

    rng = np.random.default_rng(0)
    buf = ReplayBuffer(50, 3, 2)
    obs = rng.normal(size=3)
    for i in range(50):
        new = rng.normal(size=3)
        buf.add(obs, rng.uniform(-1, 1, 2), float(i), new, i == 19, i == 39)
        obs = rng.normal(size=3) if i in (19, 39) else new
    buf.save_segment(str(tmp_path), 0, 20)
    buf.save_segment(str(tmp_path), 20, 45)
    back = ReplayBuffer(50, 3, 2)
    back.load_segments(str(tmp_path), 45)
    assert back.size == 45
    for name in ("obs", "new_obs", "actions"):
        expect = getattr(buf, name)[:45].astype(np.float16).astype(np.float32)
        assert np.array_equal(getattr(back, name)[:45], expect), name
    assert np.array_equal(back.rewards[:45], buf.rewards[:45])
    assert np.array_equal(back.terminateds[:45], buf.terminateds[:45])
    with pytest.raises(ValueError, match="missing"):
        back.load_segments(str(tmp_path), 50)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A few hundred SAC steps on Hopper, stopped, resumed through the CLI, then datasets."""
    import torch

    from rllib_fastq.datasets.sac import SACConfig

    torch.set_num_threads(1)
    out = str(tmp_path_factory.mktemp("mujoco"))
    cfg = SACConfig(hidden=32, batch_size=32, start_steps=100)
    first = mujoco.train(ENV, out, 300, checkpoint_every=150, eval_episodes=1, sac_config=cfg,
                         log=lambda m: None)
    first = {"step": first["step"], "updates": first["sac"]["updates"],
             "evals": [e["step"] for e in first["evals"]]}
    replay = os.path.join(mujoco.checkpoint_dir(out, ENV), "replay")
    orphan = os.path.join(replay, f"seg_{first['step']:09d}_{first['step'] + 7:09d}.npz")
    with open(orphan, "wb"):  # as if killed after writing a segment, before state.pt
        pass
    rc = mujoco.main(["--env", ENV, "--stage", "train", "--out", out, "--steps", "500",
                      "--checkpoint-every", "150", "--eval-episodes", "1"])
    assert rc == 0
    card = mujoco.make_datasets(ENV, out, transitions=500)
    return out, first, card


def test_resume_continues_the_step_counter(trained):
    out, first, _ = trained
    state = mujoco.load_state(out, ENV)
    assert first["step"] >= 300 and state["step"] >= 500
    steps = [e["step"] for e in state["evals"]]
    assert steps[: len(first["evals"])] == first["evals"]
    assert len(steps) > len(first["evals"]) and steps == sorted(set(steps))
    # One update per env step from start_steps on: none lost or repeated across the restart.
    assert state["sac"]["updates"] == state["step"] - 100 + 1 > first["updates"]
    segs = sorted(glob.glob(os.path.join(mujoco.checkpoint_dir(out, ENV), "replay", "seg_*.npz")))
    assert os.path.basename(segs[-1]).endswith(f"_{state['step']:09d}.npz")
    assert not any(s.endswith(f"_{first['step'] + 7:09d}.npz") for s in segs), "orphan kept"


@pytest.mark.parametrize("name", mujoco.DATASETS)
def test_generated_dataset_is_valid(trained, name):
    out, _, card = trained
    path = os.path.join(out, ENV, f"{name}.parquet")
    info = card["datasets"][name]
    tr = read_transitions(path, num_policies=len(info["policy_names"]), obs_dim=11, action_dim=3)
    check_episodes(tr)
    assert info["rows"] == len(tr) and info["sha256"] == cards.sha256(path)
    assert tr.meta.num_policies == len(info["policy_names"])
    assert tr.meta.extra["env_id"] == ENV and tr.meta.extra["dataset"] == name
    pids = set(np.unique(tr.policy_id).tolist())
    if name == "medium-replay":
        state = mujoco.load_state(out, ENV)
        assert pids == {0, 1} and len(tr) <= state["step"]
        assert np.all(tr.policy_id[: 100] == 0)  # the uniform-random warm-up comes first
    else:
        assert len(tr) == 500 and pids == POLICY_IDS[name]
    if name == "multi-policy":
        assert np.bincount(tr.policy_id).tolist() == [100] * 5


def test_card_and_readme(trained):
    out, _, card = trained
    assert set(card["datasets"]) == set(mujoco.DATASETS)
    assert set(card["policies"]) == {"random", "quarter", "half", "medium", "high"}
    assert card["reference_returns"]["d4rl_expert"] == 3234.3
    assert np.isfinite(card["reference_returns"]["measured_random"])
    assert card["versions"]["gymnasium"] and card["seed"] == 0
    with open(os.path.join(out, ENV, "card.json")) as f:
        assert json.load(f) == card
    readme = open(os.path.join(out, ENV, "README.md")).read()
    assert "resumes" in readme and card["datasets"]["medium"]["sha256"][:16] in readme


def test_rollout_cuts_the_last_episode_and_labels_it():
    tr, returns = mujoco.rollout(ENV, None, 300, seed=3, policy_id=4, eps_prefix="x")
    assert len(tr) == 300 and set(tr.policy_id.tolist()) == {4}
    check_episodes(tr)
    assert tr.truncateds[-1] and not tr.terminateds[-1]
    assert len(returns) == len(np.unique(tr.eps_id)) - 1  # the cut episode has no return


def _shipped_envs() -> list[str]:
    return sorted(d for d in glob.glob(os.path.join(SHIPPED, "*")) if os.path.isdir(d))


def test_shipped_data_exists_and_is_consistent():
    """Every shipped env has a resumable checkpoint or a card whose checksums match its files."""
    envs = _shipped_envs()
    assert envs, f"{SHIPPED}: no MuJoCo datasets or checkpoints shipped"
    for d in envs:
        env_id = os.path.basename(d)
        state = mujoco.load_state(SHIPPED, env_id)
        card_path = os.path.join(d, "card.json")
        assert state is not None or os.path.exists(card_path), d
        if state is not None:
            from rllib_fastq.datasets.sac import ReplayBuffer

            z = sorted(glob.glob(os.path.join(mujoco.checkpoint_dir(SHIPPED, env_id), "replay", "*.npz")))
            with np.load(z[0]) as first:
                buf = ReplayBuffer(state["step"], first["obs"].shape[1], first["actions"].shape[1])
            buf.load_segments(os.path.dirname(z[0]), state["step"])  # raises if a segment is missing
        if os.path.exists(card_path):
            with open(card_path) as f:
                card = json.load(f)
            for info in card["datasets"].values():
                path = os.path.join(d, info["file"])
                assert cards.sha256(path) == info["sha256"], f"{path}: checksum differs from card"
                tr = validate_dataset(path)
                assert tr.meta.num_policies == len(info["policy_names"]) and len(tr) == info["rows"]
                assert set(np.unique(tr.policy_id).tolist()) <= set(range(len(info["policy_names"])))
                check_episodes(tr)


def test_shipped_random_share_is_reproducible():
    """The uniform-random share of each shipped multi-policy set is regenerated bit for bit."""
    cards = sorted(glob.glob(os.path.join(SHIPPED, "*", "card.json")))
    for card_path in cards:
        with open(card_path) as f:
            card = json.load(f)
        shipped = read_transitions(os.path.join(os.path.dirname(card_path), "multi-policy.parquet"))
        n = min(1000, int((shipped.policy_id == 0).sum()))
        # Same seed offset as make_datasets uses for policy 0 of the multi-policy set.
        tr, _ = mujoco.rollout(card["env_id"], None, n, seed=card["seed"] + 201, policy_id=0,
                               eps_prefix="p0-")
        for name in ("obs", "actions", "rewards", "new_obs", "terminateds", "eps_id", "t"):
            assert np.array_equal(getattr(tr, name), getattr(shipped, name)[:n]), (card_path, name)


def test_select_policies_keeps_five_distinct_ordered_policies_after_a_jump():
    """Training jumped from 20 to 55 normalised in one checkpoint: half must not be medium."""
    scores = [(10, 5.0), (20, 14.0), (30, 17.0), (40, 21.0), (50, 55.0), (60, 90.0), (70, 40.0)]
    evals = [{"step": s, "normalized": n, "return": n * 30, "snapshot": f"step_{s}.pt"} for s, n in scores]
    picks = mujoco.select_policies({"env_id": "Hopper-v5", "evals": evals, "medium_step": 50})
    steps = {k: v["step"] for k, v in picks.items()}
    # quarter: first reaching 55/4; half: nothing before medium reaches 27.5, so the best before it.
    assert steps == {"quarter": 20, "half": 40, "medium": 50, "high": 60}
