"""Use d3rlpy peers from the main environment: train one in the peers' venv, load its exported policy.

d3rlpy 2.8.1 and ``ray[rllib]==2.60`` need different gymnasium versions, so the peers train in their
own virtual environment (``benchmarks/peers/setup.sh`` creates ``<repo>/.venv-peers``) through
:func:`train_peer`, which runs ``train_d3rlpy.py`` there as a subprocess. The exported policy is a
TorchScript file (d3rlpy's ``save_policy``) that needs only torch, so :func:`load_peer_policy` loads
it here without d3rlpy and returns a plain ``obs -> action`` function for our evaluation harness.
"""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

PEERS_DIR = Path(__file__).resolve().parent
REPO_ROOT = PEERS_DIR.parent.parent
TRAIN_SCRIPT = PEERS_DIR / "train_d3rlpy.py"
SETUP_SCRIPT = PEERS_DIR / "setup.sh"
DEFAULT_VENV = REPO_ROOT / ".venv-peers"
ALGOS = ("bc", "td3plusbc", "iql", "cql", "awac")


class PeerTrainingError(RuntimeError):
    """A peer could not be trained: the venv is missing or ``train_d3rlpy.py`` failed."""


def peers_python(venv: str | os.PathLike[str] | None = None) -> Path:
    """The peers' interpreter: ``$FASTQ_PEERS_VENV`` or ``<repo>/.venv-peers``, ``bin/python`` inside."""
    root = Path(venv or os.environ.get("FASTQ_PEERS_VENV") or DEFAULT_VENV)
    return root / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


#: Written into the venv when the set-up script has finished: the venv is ready to run the peers.
READY_MARKER = ".fastq-peers-ready"


def ensure_peers_venv(venv: str | os.PathLike[str] | None = None, setup: Path = SETUP_SCRIPT) -> Path:
    """The peers' interpreter (:func:`peers_python`), creating the venv with ``setup`` (``bash
    benchmarks/peers/setup.sh``, idempotent) when it does not exist yet, so the suite's command
    runs the d3rlpy peers from a clean clone. A file lock beside the venv keeps two ``--jobs``
    processes from building it at once, and the venv counts as ready only once the script has
    finished (a marker file, :data:`READY_MARKER`): its interpreter exists from the script's first
    step, long before d3rlpy is installed, and a second process that took that for ready ran the
    peers in a venv without numpy.

    Raises:
        PeerTrainingError: the set-up script failed (its output's tail is in the message).
    """
    import fcntl

    py = peers_python(venv)
    root = py.parent.parent
    ready = root / READY_MARKER
    if ready.exists():
        return py
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not ready.exists():  # another process may have built it while this one waited
            print(f"creating the d3rlpy peers' venv {root} (bash {setup}; once)", flush=True)
            proc = subprocess.run(["bash", str(setup)], capture_output=True, text=True, check=False,
                                  env={**os.environ, "FASTQ_PEERS_VENV": str(root)})
            if proc.returncode != 0 or not py.exists():
                raise PeerTrainingError(f"creating the peers' venv with `bash {setup}` failed (exit "
                                        f"{proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}")
            ready.write_text(f"bash {setup} finished\n")
    return py


def load_peer_policy(path: str | os.PathLike[str]) -> Callable[[np.ndarray], np.ndarray]:
    """Load an exported peer policy (TorchScript) as ``obs -> action``.

    Args:
        path: the ``policy.pt`` file, or the training output directory that holds it.

    Returns:
        A function mapping one flat observation ``[obs_dim]`` to one action ``[act_dim]``, or a batch
        ``[B, obs_dim]`` to ``[B, act_dim]``; float32 numpy arrays, clipped to [-1, 1]. The graph
        includes the observation scaler fitted on the training data, so it takes raw observations.
    """
    import torch

    p = Path(path)
    if p.is_dir():
        p = p / "policy.pt"
    if not p.is_file():
        raise FileNotFoundError(f"no exported peer policy at {p}")
    with warnings.catch_warnings():
        # torch >= 2.9 deprecates TorchScript, but it is d3rlpy 2.8.1's export format (save_policy).
        warnings.simplefilter("ignore", DeprecationWarning)
        module = torch.jit.load(str(p), map_location="cpu")
    module.eval()

    def policy(obs: np.ndarray) -> np.ndarray:
        x = np.asarray(obs, dtype=np.float32)
        single = x.ndim == 1
        if single:
            x = x[None]
        if x.ndim != 2:
            raise ValueError(f"expected a flat observation [obs_dim] or a batch [B, obs_dim], got shape {x.shape}")
        with torch.inference_mode():
            y = module(torch.from_numpy(np.ascontiguousarray(x)))
        a = np.clip(y.detach().cpu().numpy().astype(np.float32, copy=False), -1.0, 1.0)
        return a[0] if single else a

    policy.path = str(p)  # type: ignore[attr-defined]
    return policy


def train_peer(
    data: str | os.PathLike[str],
    algo: str,
    *,
    steps: int,
    seed: int,
    gamma: float,
    out: str | os.PathLike[str],
    python: str | os.PathLike[str] | None = None,
    timeout: float | None = None,
    batch_size: int | None = None,
    hidden: Sequence[int] | None = None,
) -> Path:
    """Train one d3rlpy peer in the peers' venv and return the exported ``policy.pt``.

    Args:
        data: a FAST-Q parquet file (flat ``obs``/``actions`` list columns).
        algo: one of ``bc``, ``td3plusbc``, ``iql``, ``cql``, ``awac``.
        steps: gradient steps.
        seed: seed for d3rlpy (torch, numpy, random).
        gamma: discount factor.
        out: output directory; receives ``policy.pt`` and ``meta.json``.
        python: the interpreter to run ``train_d3rlpy.py`` with (default: :func:`ensure_peers_venv`,
            which creates the peers' venv on first use).
        timeout: seconds before the run is killed (``None``: no limit).
        batch_size: override of the reproduction script's batch size.
        hidden: override of the reproduction script's encoder hidden sizes.

    Raises:
        PeerTrainingError: the given interpreter does not exist (run ``benchmarks/peers/setup.sh``),
            the venv could not be created, the run
            failed (its stderr is in the message), it timed out, or it wrote no policy.
    """
    if algo not in ALGOS:
        raise ValueError(f"algo: expected one of {ALGOS}, got {algo!r}")
    py = Path(python) if python is not None else ensure_peers_venv()
    if not py.exists():
        raise PeerTrainingError(
            f"the d3rlpy peers' Python {py} does not exist; create the peers' venv with "
            f"`bash {SETUP_SCRIPT.relative_to(REPO_ROOT)}` (d3rlpy 2.8.1 needs gymnasium 1.0.0, "
            "which ray[rllib] 2.60 cannot share)"
        )
    out_dir = Path(out)
    cmd = [
        str(py), str(TRAIN_SCRIPT), "--data", str(data), "--algo", algo, "--steps", str(steps),
        "--seed", str(seed), "--gamma", repr(float(gamma)), "--out", str(out_dir),
    ]
    if batch_size is not None:
        cmd += ["--batch-size", str(batch_size)]
    if hidden is not None:
        cmd += ["--hidden", ",".join(str(int(h)) for h in hidden)]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    env.pop("PYTHONPATH", None)  # keep the main environment's packages out of the peers' venv
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
    except subprocess.TimeoutExpired as err:
        tail = _tail(err.stderr)
        raise PeerTrainingError(f"d3rlpy {algo} timed out after {timeout} s: {' '.join(cmd)}\n{tail}") from err
    if proc.returncode != 0:
        raise PeerTrainingError(
            f"d3rlpy {algo} failed (exit {proc.returncode}): {' '.join(cmd)}\n--- stderr ---\n{_tail(proc.stderr)}"
        )
    policy = out_dir / "policy.pt"
    if not policy.is_file():
        raise PeerTrainingError(f"d3rlpy {algo} exited 0 but wrote no {policy}\n{_tail(proc.stderr)}")
    return policy


def _tail(text: str | bytes | None, limit: int = 4000) -> str:
    if text is None:
        return ""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return text if len(text) <= limit else "...\n" + text[-limit:]
