"""Checkpoint layout, in one place: where the RLModule lies inside what RLlib writes, loading it,
and the run record ``fastq train`` (or ``fastq tune``) leaves beside a checkpoint.

Used by ``fastq train`` (:mod:`rllib_fastq.train`), ``fastq evaluate``
(:mod:`rllib_fastq.evaluation.online`) and ``fastq serve`` (:mod:`rllib_fastq.serve`).

Writing is atomic: a checkpoint is written to a sibling temporary directory, its run record
(``fastq_run.json``) last, and renamed into place; the old one is removed only after that. A
``kill -9`` at any moment leaves ``out`` holding the old or the new checkpoint, or (killed between
the two renames) both beside it, which :func:`recover` puts back on the next ``fastq train``.
"""

from __future__ import annotations

import glob
import json
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

RUN_FILE = "fastq_run.json"  # written beside a checkpoint: the spec and results behind it
SPEC_FILE = "fastq_spec.json"  # written into a Tune experiment directory (for --resume)

#: Where an RLModule checkpoint lies inside the checkpoints RLlib writes, tried in order.
MODULE_SUBDIRS = (
    os.path.join("learner_group", "learner", "rl_module", "default_policy"),  # Algorithm
    os.path.join("learner", "rl_module", "default_policy"),  # LearnerGroup
    os.path.join("rl_module", "default_policy"),  # Learner
    "default_policy",  # MultiRLModule
    "",  # the RLModule itself
)


def resolve_module_checkpoint(checkpoint: str) -> str:
    """The RLModule checkpoint dir inside an Algorithm (or Learner, MultiRLModule) checkpoint,
    or ``checkpoint`` itself when it is one. Raises FileNotFoundError naming what was tried."""
    root = os.path.abspath(os.path.expanduser(checkpoint))
    if not os.path.isdir(root):
        raise FileNotFoundError(f"checkpoint: no such directory: {checkpoint}")
    for sub in MODULE_SUBDIRS:
        path = os.path.join(root, sub) if sub else root
        if os.path.isfile(os.path.join(path, "module_state.pkl")) and \
                os.path.isfile(os.path.join(path, "class_and_ctor_args.pkl")):
            return path
    raise FileNotFoundError(
        f"checkpoint: {checkpoint} is neither an Algorithm checkpoint (with "
        f"{MODULE_SUBDIRS[0]}/) nor an RLModule checkpoint (module_state.pkl)."
    )


def _corrupt(path: str, e: BaseException) -> ValueError:
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return ValueError(f"{path}: torn or corrupt checkpoint file ({type(e).__name__}: {first}); retrain "
                      "(`fastq train --resume` continues from the last complete checkpoint) or use another "
                      "checkpoint")


def check_module_files(module_dir: str) -> None:
    """Unpickle the RLModule checkpoint's files; a torn or corrupt one is a ValueError naming it."""
    for name in ("class_and_ctor_args.pkl", "module_state.pkl"):
        path = os.path.join(module_dir, name)
        try:
            with open(path, "rb") as f:
                pickle.load(f)
        except Exception as e:  # noqa: BLE001 -- any unpickling failure means the file is unusable
            raise _corrupt(path, e) from None


def load_module(checkpoint: str) -> Any:
    """The trained RLModule of a checkpoint (no Ray, no data needed), in eval mode. A torn or
    corrupt file is a one-line ValueError naming it."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    path = resolve_module_checkpoint(checkpoint)  # absolute: RLlib reads it as a URI
    try:
        module = RLModule.from_checkpoint(path)
    except Exception as e:  # noqa: BLE001
        check_module_files(path)  # names the torn file when there is one
        raise _corrupt(path, e) from None
    module.eval()
    return module


def read_run_file(path: str | os.PathLike) -> dict[str, Any]:
    """A ``fastq_run.json`` / ``fastq_spec.json``; a corrupt one is a ValueError naming it."""
    try:
        info = json.loads(Path(path).read_text())
        if not isinstance(info, dict):
            raise ValueError(f"expected a JSON object, got {type(info).__name__}")
    except (ValueError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: corrupt run record ({str(e).splitlines()[0]}); restore it or retrain "
                         "into a new --out") from None
    return info


def run_info(checkpoint: str) -> dict[str, Any]:
    """The ``fastq_run.json`` of a ``fastq train`` checkpoint or the spec of a Tune experiment."""
    p = Path(checkpoint).resolve()
    for d in (p, p.parent, p.parent.parent):
        for name in (RUN_FILE, SPEC_FILE):
            if (d / name).is_file():
                info = read_run_file(d / name)
                return info if "spec" in info else {"spec": info}
    return {}


# -- writing ------------------------------------------------------------------------------------

def json_default(v: Any) -> Any:
    try:
        return float(v)
    except (TypeError, ValueError):
        return repr(v)  # callables in a spec's config


def write_json_durably(path: str, obj: Any) -> None:
    """JSON to ``path`` via a temporary file, fsync'ed, then renamed over it."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1, default=json_default)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def check_writable(out: str) -> None:
    """Fail now (one line) unless a checkpoint can be written to ``out``: its parent is (or can be
    made) a directory we can create entries in -- probed, since root ignores permission bits but not
    an immutable directory."""
    parent = os.path.dirname(os.path.abspath(out))
    try:
        os.makedirs(parent, exist_ok=True)
        probe = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.probe-", dir=parent)
        os.rmdir(probe)
    except OSError as e:
        raise ValueError(f"--out {out}: cannot write there ({e.strerror or type(e).__name__}: "
                         f"{e.filename or parent}); choose another --out") from None
    if os.path.exists(out) and not os.path.isdir(out):
        return  # a file: replaced (with --overwrite) by a directory
    if os.path.isdir(out) and not os.access(out, os.W_OK):
        raise ValueError(f"--out {out}: the directory is not writable; choose another --out")


def _siblings(out: str) -> list[str]:
    parent, name = os.path.split(os.path.abspath(out))
    return sorted(glob.glob(os.path.join(parent, f".{glob.escape(name)}.tmp-*"))
                  + glob.glob(os.path.join(parent, f".{glob.escape(name)}.old-*")))


def complete_run(path: str) -> dict[str, Any] | None:
    """The run record of a complete checkpoint directory written by :func:`save_atomic`, else None."""
    try:
        info = json.loads(Path(path, RUN_FILE).read_text())
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) and "progress" in info else None


def recover(out: str) -> None:
    """Finish what a killed :func:`save_atomic` left: when ``out`` is missing, the newest complete
    sibling (``.NAME.tmp-*`` or ``.NAME.old-*``) becomes ``out``; leftover siblings are removed."""
    out = os.path.abspath(out)
    if not os.path.lexists(out):
        # (iterations done, the new one of a swap before the old one, path)
        done = [(info["progress"].get("iterations_done", 0), ".tmp-" in os.path.basename(p), p)
                for p in _siblings(out) if (info := complete_run(p))]
        if done:
            os.rename(max(done)[2], out)
    for p in _siblings(out):
        shutil.rmtree(p, ignore_errors=True) if os.path.isdir(p) else os.remove(p)


def save_atomic(out: str, write: Callable[[str], None]) -> None:
    """``write(tmp)`` into a sibling temporary directory (it must write ``RUN_FILE`` last), then
    rename it to ``out``; the old ``out`` is moved aside first and removed only afterwards."""
    out = os.path.abspath(out)
    parent, name = os.path.split(out)
    tmp = os.path.join(parent, f".{name}.tmp-{os.getpid()}")
    if os.path.lexists(tmp):
        shutil.rmtree(tmp)
    write(tmp)
    if complete_run(tmp) is None:
        raise RuntimeError(f"save_atomic: {tmp} has no complete {RUN_FILE}")
    old = None
    if os.path.lexists(out):
        old = os.path.join(parent, f".{name}.old-{os.getpid()}")
        os.rename(out, old)
    os.rename(tmp, out)
    if old is not None:
        shutil.rmtree(old) if os.path.isdir(old) else os.remove(old)
