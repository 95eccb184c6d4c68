"""Checkpoint layout, in one place: where the RLModule lies inside what RLlib writes, loading it,
and the run record ``fastq train`` (or ``fastq tune``) leaves beside a checkpoint.

Used by ``fastq evaluate`` (:mod:`rllib_fastq.workflow`) and ``fastq serve`` (:mod:`rllib_fastq.serve`).
"""

from __future__ import annotations

import json
import os
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


def load_module(checkpoint: str) -> Any:
    """The trained RLModule of a checkpoint (no Ray, no data needed), in eval mode."""
    from ray.rllib.core.rl_module.rl_module import RLModule

    module = RLModule.from_checkpoint(resolve_module_checkpoint(checkpoint))
    module.eval()
    return module


def run_info(checkpoint: str) -> dict[str, Any]:
    """The ``fastq_run.json`` of a ``fastq train`` checkpoint or the spec of a Tune experiment."""
    p = Path(checkpoint).resolve()
    for d in (p, p.parent, p.parent.parent):
        for name in (RUN_FILE, SPEC_FILE):
            if (d / name).is_file():
                info = json.loads((d / name).read_text())
                return info if "spec" in info else {"spec": info}
    return {}
