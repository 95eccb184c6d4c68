"""Minari → FAST-Q: build a small local Minari dataset (offline, in a temp MINARI_DATASETS_PATH)
from two behaviour policies on Pendulum-v1, convert it to parquet, train FAST-Q, evaluate online.

    python examples/minari_to_fastq.py [--smoke]

With your own Minari dataset: ``minari_to_parquet("<dataset id>", "data.parquet")`` and train on it.
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("MINARI_DATASETS_PATH", tempfile.mkdtemp(prefix="minari_"))  # before importing minari

import gymnasium as gym  # noqa: E402
import minari  # noqa: E402
import numpy as np  # noqa: E402
import ray  # noqa: E402
from _tiny import parse_args, tiny_config  # noqa: E402
from minari.data_collector import EpisodeBuffer  # noqa: E402

from rllib_fastq.data.convert import minari_to_parquet  # noqa: E402
from rllib_fastq.evaluation.rollout import evaluate_module  # noqa: E402
from rllib_fastq.local_ray import init_local_ray  # noqa: E402

args = parse_args(__doc__)
episodes, iterations, steps = (6, 3, 20) if args.smoke else (60, 20, 250)


def behaviour(arm: int, obs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Arm 0: a noisy swing-up heuristic (good); arm 1: uniform random (poor)."""
    cos, sin, thdot = obs
    if arm == 0:
        u = -(10.0 * np.arctan2(sin, cos) + 2.0 * thdot) if cos > 0.85 else 2.0 * np.sign(thdot + 1e-6)
        return np.clip([u + rng.normal(0, 0.3)], -2, 2).astype(np.float32)
    return rng.uniform(-2, 2, 1).astype(np.float32)


env, rng, buffers = gym.make("Pendulum-v1"), np.random.default_rng(0), []
for ep in range(episodes):
    arm = ep % 2
    obs, _ = env.reset(seed=ep)
    o, a, r, term, trunc = [obs], [], [], [], []
    done = False
    while not done:
        act = behaviour(arm, obs, rng)
        obs, rew, te, tr, _ = env.step(act)
        o.append(obs), a.append(act), r.append(float(rew)), term.append(te), trunc.append(tr)
        done = te or tr
    # FAST-Q's arm label rides in the per-step infos (n + 1 entries, like the observations).
    buffers.append(EpisodeBuffer(id=ep, observations=np.array(o, np.float32), actions=np.array(a), rewards=r,
                                 terminations=term, truncations=trunc,
                                 infos={"policy_id": np.full((len(o), 1), arm, np.int64)}))
dataset = minari.create_dataset_from_buffers("pendulum/two-arms-v0", buffers, env="Pendulum-v1",
                                             algorithm_name="swing-up + random", data_format="arrow")
print(f"Minari dataset {dataset.spec.dataset_id}: {dataset.total_episodes} episodes, "
      f"{dataset.total_steps} steps in {os.environ['MINARI_DATASETS_PATH']}")

path = minari_to_parquet("pendulum/two-arms-v0", os.path.join(tempfile.mkdtemp(), "pendulum.parquet"))
print(f"converted to {path}")

init_local_ray(num_cpus=2, log_to_driver=False)  # Ray on 127.0.0.1 only
algo = tiny_config(path, num_policies=2, steps=steps).build_algo()
for _ in range(iterations):
    r = algo.train()["learners"]["default_policy"]
print(f"trained {iterations} iterations ({int(r['num_gradient_steps'])} gradient steps)")
res = evaluate_module(algo.get_module(), "Pendulum-v1", num_episodes=3 if args.smoke else 10)
algo.stop()
logged = {arm: np.mean([sum(b.rewards) for b in buffers[arm::2]]) for arm in (0, 1)}
print(f"FAST-Q on Pendulum-v1: mean return {res['mean_return']:.1f}; logged arms: "
      f"swing-up {logged[0]:.1f}, random {logged[1]:.1f}")
ray.shutdown()
