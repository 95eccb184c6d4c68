"""Why the CQL baseline sets ``bc_iters=0``: the counter RLlib 2.60's CQL compares with ``bc_iters``.

    python -m benchmarks.rllib_cql_counter [--iters 3] [--steps-per-iter 5]

Builds ``benchmarks.baselines.rllib_config("CQL", ...)`` on Hopper medium with RLlib's default
``bc_iters`` (20,000), runs ``--iters`` ``train()`` calls of ``--steps-per-iter`` gradient steps and
prints, per call, the value of ``(ALL_MODULES, TRAINING_ITERATION)`` that ``CQLTorchLearner`` reads
after each loss computation. It restarts at 1 in every call, so it never reaches ``bc_iters`` and
the actor keeps its behaviour-cloning loss for the whole run.
"""

from __future__ import annotations

import argparse

from benchmarks import baselines  # noqa: E402

DATA = "offline_data/mujoco/Hopper-v5/medium.parquet"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--steps-per-iter", type=int, default=5)
    a = p.parse_args()

    from ray.rllib.algorithms.cql.torch.cql_torch_learner import CQLTorchLearner
    from ray.rllib.utils.metrics import ALL_MODULES
    from ray.tune.result import TRAINING_ITERATION

    from rllib_fastq.local_ray import init_local_ray

    seen: list[int] = []
    loss = CQLTorchLearner.compute_loss_for_module

    def recording_loss(self, **kwargs):  # noqa: ANN001, ANN202 - RLlib's own signature
        out = loss(self, **kwargs)
        seen.append(int(self.metrics.peek((ALL_MODULES, TRAINING_ITERATION), default=0)))
        return out

    CQLTorchLearner.compute_loss_for_module = recording_loss
    init_local_ray(num_cpus=2, log_to_driver=False)
    cfg = baselines.rllib_config("CQL", DATA, steps_per_iter=a.steps_per_iter, gamma=0.99, seed=0,
                                 hiddens=[64, 64], env="Hopper-v5", obs_dim=11, act_dim=3)
    cfg = cfg.training(bc_iters=20_000)  # RLlib's default, which baselines.py overrides
    algo = cfg.build_algo()
    for i in range(a.iters):
        start = len(seen)
        algo.train()
        print(f"train() call {i + 1}: counter after each loss = {seen[start:]} (bc_iters {cfg.bc_iters})")
    algo.stop()


if __name__ == "__main__":
    main()
