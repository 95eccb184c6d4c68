"""Every example runs end to end in smoke mode, as a user would run it (own process, own Ray)."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "examples")


def run_example(name: str, *args: str, env_smoke: bool = False) -> str:
    """Run ``examples/<name>`` in smoke mode (flag or FASTQ_SMOKE=1); its stdout."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if env_smoke:
        env["FASTQ_SMOKE"] = "1"
    else:
        args = ("--smoke", *args)
    proc = subprocess.run([sys.executable, os.path.join(EXAMPLES, name), *args], env=env, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_quickstart(tmp_path):
    out = run_example("quickstart.py", "--out", str(tmp_path / "ckpt"))
    assert "iteration 3: phase 2, td_loss" in out
    assert f"saved checkpoint to {tmp_path / 'ckpt'}" in out
    assert os.path.isdir(tmp_path / "ckpt" / "learner_group")
    assert re.search(r"FAST-Q \('best' arm\): mean return -?\d+\.\d+ over 10 players; revenue", out)
    assert "best arm competitive 7.738" in out


def test_tune_search(tmp_path):
    out = run_example("tune_search.py", "--storage", str(tmp_path), env_smoke=True)
    best = re.search(r"best checkpoint: (\S+)", out).group(1)
    assert best.startswith(str(tmp_path)) and os.path.isdir(os.path.join(best, "learner_group"))
    assert re.search(r"best evaluation/env_runners/episode_return_mean: -?\d+\.\d+ with \{'alpha': [23]\.0\}", out)
    assert "re-evaluated on 5 players" in out
    assert os.path.isfile(re.search(r"results: (\S+)", out).group(1))


def test_serve_roundtrip():
    out = run_example("serve_roundtrip.py", "--port", str(_free_port()))
    m = re.search(r"Q (-?\d+\.\d+) = (.*)", out)
    assert m, out
    parts = dict((name, float(v)) for v, name in re.findall(r"(-?\d+\.\d+) \((\w+)\)", m.group(2)))
    assert set(parts) == {"revenue", "engagement", "cost", "dwell", "residual"}
    assert sum(parts.values()) == pytest.approx(float(m.group(1)), abs=1e-3)  # the decomposition sums to Q
    assert re.search(r"POST /act -> arm [012], action \[", out) and "serve shut down" in out


def test_minari_to_fastq():
    out = run_example("minari_to_fastq.py", env_smoke=True)
    assert "Minari dataset pendulum/two-arms-v0: 6 episodes, 1200 steps" in out
    assert re.search(r"converted to \S+pendulum\.parquet", out)
    assert "trained 3 iterations (60 gradient steps)" in out
    assert re.search(r"FAST-Q on Pendulum-v1: mean return -\d+\.\d", out)


def test_pandas_logs():
    out = run_example("pandas_logs.py")
    assert "400 transitions, arms ['bold', 'steady']" in out
    assert "trained: phase 2" in out
    rows = re.findall(r"user u\d+: arm (bold|steady), discount -?\d\.\d+, Q (-?\d+\.\d+) = revenue (-?\d+\.\d+), "
                      r"cost (-?\d+\.\d+), residual (-?\d+\.\d+)", out)
    assert len(rows) == 3
    for _, q, *parts in rows:
        assert sum(map(float, parts)) == pytest.approx(float(q), abs=2e-3)


def test_plot_learning(tmp_path):
    out = run_example("plot_learning.py", "--out", str(tmp_path))
    assert "iter 4/4 | phase 2" in out and "wrote" in out
    for name in ("learning_curves.png", "q_decomposition.png"):
        with open(tmp_path / name, "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
