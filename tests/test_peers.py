"""The d3rlpy peers' main-environment side: loading an exported TorchScript policy, and the clear
error when the peers' venv is missing. Needs no d3rlpy and no `.venv-peers`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from benchmarks.peers.policy import PeerTrainingError, load_peer_policy, train_peer

# torch.jit is deprecated in recent torch but is d3rlpy's export format; the test builds one with it.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class _Linear(torch.nn.Module):
    """Stands in for d3rlpy's traced greedy policy: [B, obs_dim] -> [B, act_dim], unclipped."""

    def __init__(self, obs_dim: int, act_dim: int):
        super().__init__()
        self.fc = torch.nn.Linear(obs_dim, act_dim)
        with torch.no_grad():
            self.fc.weight.fill_(1.0)
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x)


@pytest.fixture()
def policy_dir(tmp_path):
    module = torch.jit.trace(_Linear(5, 3), torch.zeros(1, 5))
    module.save(str(tmp_path / "policy.pt"))
    return tmp_path


def test_load_peer_policy_single_and_batch(policy_dir):
    policy = load_peer_policy(policy_dir)  # a directory resolves to its policy.pt
    a = policy(np.full(5, 0.1))  # sum = 0.5: inside [-1, 1], passed through
    assert a.shape == (3,) and a.dtype == np.float32
    np.testing.assert_allclose(a, 0.5, atol=1e-6)

    obs = np.stack([np.full(5, 1.0), np.full(5, -1.0), np.zeros(5)])  # sums 5, -5, 0
    batch = policy(obs)
    assert batch.shape == (3, 3)
    np.testing.assert_allclose(batch[0], 1.0)  # clipped from 5
    np.testing.assert_allclose(batch[1], -1.0)  # clipped from -5
    np.testing.assert_allclose(batch[2], 0.0)

    same = load_peer_policy(policy_dir / "policy.pt")
    np.testing.assert_allclose(same(obs), batch)


def test_load_peer_policy_errors(tmp_path, policy_dir):
    with pytest.raises(FileNotFoundError):
        load_peer_policy(tmp_path / "missing")
    with pytest.raises(ValueError, match="flat observation"):
        load_peer_policy(policy_dir)(np.zeros((1, 1, 5)))


def test_train_peer_without_venv_names_setup_script(tmp_path):
    with pytest.raises(PeerTrainingError, match=r"benchmarks/peers/setup\.sh") as err:
        train_peer(tmp_path / "data.parquet", "bc", steps=10, seed=0, gamma=0.9, out=tmp_path / "out",
                   python=tmp_path / "no-venv" / "bin" / "python")
    assert "no-venv" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_train_peer_failure_carries_stderr(tmp_path):
    # Any interpreter that exits non-zero stands in for a failed d3rlpy run (no peers' venv needed).
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'boom: d3rlpy exploded' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(PeerTrainingError, match="boom: d3rlpy exploded") as err:
        train_peer(tmp_path / "data.parquet", "iql", steps=10, seed=0, gamma=0.9, out=tmp_path / "out",
                   python=fake)
    assert "exit 3" in str(err.value)


def test_train_peer_rejects_unknown_algo(tmp_path):
    with pytest.raises(ValueError, match="algo"):
        train_peer(tmp_path / "d.parquet", "sac", steps=1, seed=0, gamma=0.9, out=tmp_path)


def test_the_peers_venv_is_created_once_on_first_use(tmp_path):
    from benchmarks.peers.policy import ensure_peers_venv

    # A stand-in for setup.sh: it creates the venv's interpreter where FASTQ_PEERS_VENV says and
    # counts its runs.
    setup = tmp_path / "setup.sh"
    setup.write_text('mkdir -p "$FASTQ_PEERS_VENV/bin" && touch "$FASTQ_PEERS_VENV/bin/python"\n'
                     f'echo run >> {tmp_path / "runs"}\n')
    venv = tmp_path / "venv"
    assert ensure_peers_venv(venv, setup) == venv / "bin" / "python"
    assert ensure_peers_venv(venv, setup).exists()
    assert (tmp_path / "runs").read_text().count("run") == 1  # the second call found it


def test_a_second_job_waits_for_the_venv_to_be_finished_not_for_its_interpreter(tmp_path):
    import threading

    from benchmarks.peers.policy import ensure_peers_venv

    # The stand-in creates the interpreter first and the packages a moment later, like setup.sh.
    setup = tmp_path / "setup.sh"
    setup.write_text('mkdir -p "$FASTQ_PEERS_VENV/bin" && touch "$FASTQ_PEERS_VENV/bin/python"\n'
                     'sleep 1 && touch "$FASTQ_PEERS_VENV/numpy"\n')
    venv = tmp_path / "venv"
    found = []

    def job():
        ensure_peers_venv(venv, setup)
        found.append((venv / "numpy").exists())

    jobs = [threading.Thread(target=job) for _ in range(2)]
    for j in jobs:
        j.start()
    for j in jobs:
        j.join()
    assert found == [True, True]
    (venv / "numpy").unlink()
    (venv / ".fastq-peers-ready").unlink()  # a half-built venv (interpreter, no marker) is built again
    ensure_peers_venv(venv, setup)
    assert (venv / "numpy").exists()


def test_a_failed_peers_venv_set_up_says_so_with_its_output(tmp_path):
    from benchmarks.peers.policy import ensure_peers_venv

    setup = tmp_path / "setup.sh"
    setup.write_text("echo 'pip: no matching distribution for d3rlpy' >&2\nexit 1\n")
    with pytest.raises(PeerTrainingError, match="no matching distribution") as err:
        ensure_peers_venv(tmp_path / "venv", setup)
    assert "exit 1" in str(err.value)
