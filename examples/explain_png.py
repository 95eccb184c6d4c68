"""Why does FAST-Q recommend this arm? A PNG of the per-component values of the arm it chooses and
of the arm the logs' router would most likely have used, for one logged player (issue 36).

    python examples/explain_png.py CHECKPOINT [--data offline_data/player_platform/heldout.parquet]
        [--row 0] [--png explanation.png]

The same as ``fastq explain CHECKPOINT --obs '[...]' --png explanation.png``.
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

from rllib_fastq.checkpoints import load_module  # noqa: E402
from rllib_fastq.data.io import read_transitions  # noqa: E402
from rllib_fastq.evaluation.explain_plot import write_explanation_png  # noqa: E402
from rllib_fastq.spec import PLAYER_PLATFORM_DIR  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("checkpoint")
    p.add_argument("--data", default=str(PLAYER_PLATFORM_DIR / "heldout.parquet"))
    p.add_argument("--row", type=int, default=0, help="which logged row's observation to explain")
    p.add_argument("--png", default="explanation.png")
    args = p.parse_args()
    module = load_module(args.checkpoint)
    tr = read_transitions(args.data)
    ex = write_explanation_png(module, tr.obs[args.row], args.png,
                               arm_names=tr.meta.extra.get("arm_names"))
    for key in ("chosen", "routed"):
        print(f"{key} arm {ex[key]['arm']}: Q {ex[key]['q']:.3f}, components {ex[key]['components']}")
    print(f"wrote {ex['png']}")


if __name__ == "__main__":
    main()
