"""Baselines for the player-platform quality benchmark: TD3+BC on the flat observation and
RLlib's own offline algorithms (CQL, IQL, BC, MARWIL), each as a ``policy_fn(obs) -> action``.

All of them read the same 31k logged transitions as FAST-Q: the flattened 277-d observation
(``concat(temporal.ravel(), static)``) and the scalar reward ``0.25 · [1, 1, -1, 1] · components``
stored in the ``rewards`` column.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pandas as pd
import torch

from benchmarks.td3bc_plain import TD3BC

OBS_DIM, ACT_DIM = 277, 3
RLLIB_ALGOS = ("BC", "MARWIL", "IQL", "CQL")  # cheapest first


def load_flat(path: str) -> dict[str, torch.Tensor]:
    """The parquet file as float tensors (obs, actions, rewards, new_obs, terminateds, policy_id)."""
    df = pd.read_parquet(path)
    out = {k: torch.as_tensor(np.stack(df[k].values).astype(np.float32)) for k in ("obs", "new_obs", "actions")}
    out["rewards"] = torch.as_tensor(df["rewards"].values.astype(np.float32))
    out["terminateds"] = torch.as_tensor(df["terminateds"].values.astype(np.float32))
    out["policy_id"] = torch.as_tensor(df["policy_id"].values.astype(np.int64))
    return out


class NormalizedTD3BC:
    """TD3+BC (Fujimoto & Gu 2021) with its state normalisation (dataset mean/std, eps 1e-3)."""

    def __init__(self, data: dict[str, torch.Tensor], *, hiddens: list[int], gamma: float, seed: int,
                 batch_size: int = 256, alpha: float = 2.5):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.mean = data["obs"].mean(0)
        self.std = data["obs"].std(0) + 1e-3
        self.s = self.norm(data["obs"])
        self.s2 = self.norm(data["new_obs"])
        self.a, self.r, self.d = data["actions"], data["rewards"], data["terminateds"]
        self.algo = TD3BC(self.s.shape[1], self.a.shape[1], hiddens, gamma=gamma, alpha=alpha)
        self.batch_size = batch_size
        self.steps = 0

    def norm(self, s: torch.Tensor) -> torch.Tensor:
        return (s - self.mean) / self.std

    def train(self, steps: int) -> None:
        n = self.s.shape[0]
        for _ in range(steps):
            idx = torch.randint(n, (self.batch_size,), generator=self.gen)
            self.algo.train_step(self.s[idx], self.a[idx], self.r[idx], self.s2[idx], self.d[idx])
        self.steps += steps

    def policy_fn(self) -> Callable[[Any], np.ndarray]:
        def act(obs: Any) -> np.ndarray:
            with torch.no_grad():
                s = self.norm(torch.as_tensor(np.asarray(obs, np.float32))[None])
                return self.algo.pi(s)[0].numpy()

        return act

    def q1(self, obs: np.ndarray, actions: np.ndarray) -> np.ndarray:
        """Q1 of raw flat observations [N, 277] and actions [N, 3]."""
        with torch.no_grad():
            s = self.norm(torch.as_tensor(obs, dtype=torch.float32))
            sa = torch.cat([s, torch.as_tensor(actions, dtype=torch.float32)], -1)
            return self.algo.q1(sa).squeeze(-1).numpy()


def rllib_config(name: str, path: str, *, steps_per_iter: int, gamma: float, seed: int,
                 hiddens: list[int], env: str = "rllib_fastq.envs:rllib_fastq/PlayerPlatform-v0",
                 env_config: dict | None = None, obs_dim: int = OBS_DIM, act_dim: int = ACT_DIM) -> Any:
    """An RLlib (new API stack) offline config of ``name`` on flat Box observations (default: the
    player platform's 277-d flat observation; MuJoCo: pass ``env``, ``obs_dim``, ``act_dim``)."""
    from ray.rllib.algorithms.bc import BCConfig
    from ray.rllib.algorithms.cql import CQLConfig
    from ray.rllib.algorithms.iql import IQLConfig
    from ray.rllib.algorithms.marwil import MARWILConfig
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    cls = {"CQL": CQLConfig, "IQL": IQLConfig, "BC": BCConfig, "MARWIL": MARWILConfig}[name]
    obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
    act_space = gym.spaces.Box(-1.0, 1.0, (act_dim,), np.float32)
    # CQL (a SAC subclass) builds a local env runner and needs an env of the data's spaces
    # (player platform: the flat-observation simulator). No remote env runners: evaluation
    # happens outside.
    if env_config is None and env.endswith("PlayerPlatform-v0"):
        env_config = {"flat_obs": True}
    cfg = (cls().environment(env, env_config=env_config or {},
                             observation_space=obs_space, action_space=act_space)
           .env_runners(num_env_runners=0)
           .offline_data(input_=[path], dataset_num_iters_per_learner=steps_per_iter,
                         input_read_method_kwargs={"columns": ["obs", "actions", "rewards", "new_obs",
                                                               "terminateds", "truncateds", "eps_id"]},
                         materialize_mapped_data=True,
                         map_batches_kwargs={"concurrency": 1, "num_cpus": 1})
           .rl_module(model_config=DefaultModelConfig(fcnet_hiddens=hiddens, fcnet_activation="relu"))
           .training(train_batch_size_per_learner=256, gamma=gamma)
           .debugging(seed=seed))
    if name in ("CQL", "IQL"):  # SAC-style learners: one learning rate per part, `lr` must be None
        cfg = cfg.training(lr=None, actor_lr=3e-4, critic_lr=3e-4)
    if name == "CQL":
        # bc_iters=0: the CQL actor loss from the first step, as CORL's CQL does. RLlib 2.60
        # compares bc_iters with a counter its learner resets at every train() call, so at any
        # bc_iters above steps_per_iter (the default is 20,000) the actor is trained by behaviour
        # cloning for the whole run and only the critic is conservative
        # (benchmarks/rllib_cql_counter.py prints the counter).
        cfg = cfg.training(num_steps_sampled_before_learning_starts=0, bc_iters=0)
    if name == "MARWIL":
        cfg = cfg.training(beta=1.0)
    return cfg


def rllib_policy_fn(module: Any, batched: bool = False) -> Callable[[Any], np.ndarray]:
    """Deterministic action of an RLlib RLModule (mode of its action distribution), clipped to
    [-1, 1]: of one flat observation, or of a batch ``[B, obs]`` → ``[B, act]`` with ``batched``."""
    from ray.rllib.core.columns import Columns

    dist_cls = module.get_inference_action_dist_cls()

    def act(obs: Any) -> np.ndarray:
        x = torch.as_tensor(np.asarray(obs, np.float32))
        with torch.no_grad():
            out = module.forward_inference({Columns.OBS: x if batched else x[None]})
            if Columns.ACTIONS in out:
                a = out[Columns.ACTIONS]
            else:
                a = dist_cls.from_logits(out[Columns.ACTION_DIST_INPUTS]).to_deterministic().sample()
        return np.clip(a.numpy() if batched else a[0].numpy(), -1.0, 1.0)

    return act
