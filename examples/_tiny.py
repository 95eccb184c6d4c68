"""Shared by the examples: the --smoke switch and a tiny FAST-Q config for quick runs."""

from __future__ import annotations

import argparse
import os

from rllib_fastq import FastQConfig

#: Network sizes that train in seconds (smoke runs and the small examples).
TINY = dict(expert_hiddens=[32, 16], br_dim=16, adversary_hiddens=[32], actor_hiddens=[32, 32],
            critic_hiddens=[32, 32], lstm_hidden=16, static_hidden=8, lstm_dropout=0.0)


def parse_args(doc: str, **extra: dict) -> argparse.Namespace:
    """``--smoke`` (or ``FASTQ_SMOKE=1``) plus the example's own options."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", default=os.environ.get("FASTQ_SMOKE") == "1",
                        help="finish in under a minute (tiny sizes)")
    for flag, kwargs in extra.items():
        parser.add_argument(flag, **kwargs)
    return parser.parse_args()


def tiny_config(data: str, *, num_policies: int, steps: int, **training) -> FastQConfig:
    """FAST-Q on ``data`` with :data:`TINY` networks; phase 1 lasts two iterations of ``steps``."""
    return (FastQConfig()
            .offline_data(input_=[data], dataset_num_iters_per_learner=steps)
            .training(num_policies=num_policies, pretrain_steps=2 * steps, exploration_ramp_steps=4 * steps,
                      **{**TINY, **training})
            .learners(num_learners=0))
