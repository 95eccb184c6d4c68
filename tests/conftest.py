"""Shared fixtures: one loopback Ray session for the whole test run."""

from __future__ import annotations

import os

import pytest

# Two cores: keep torch from oversubscribing them beside Ray's workers.
os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="session")
def ray_session():
    """A local Ray session on 127.0.0.1, started once per test run (start-up costs seconds)."""
    import ray

    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    yield ray
    # Ray Data's dataset iterators (the streaming path, offline evaluation) report to Ray Data's
    # stats actor when they are closed. Left to the interpreter's exit they close after
    # `ray.shutdown()` and print a traceback ("Ray is not initialized") after pytest's summary:
    # collect them while Ray is still up.
    import gc

    gc.collect()
    ray.shutdown()
