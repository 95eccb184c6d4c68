"""Two small baselines written here: the episode-level direct-method arm chooser and plain BC.

The **direct-method chooser** is the counterfactual bar of issue 33: per arm, a ridge regression
of each logged player's (undiscounted) episode return on the FIRST observation's static features,
fitted on the players that arm served; for a new player it serves, for the whole episode, the arm
with the highest predicted return (acting with that arm's deterministic rule). The simulator's
static features are fixed for a player's whole stay, so the current observation's static part is
the first one's.

**Plain BC**: an MLP actor (tanh output) regressing the logged action on the normalised flat
observation (the TD3+BC loop's state normalisation and network, without the critic).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import torch

from benchmarks.td3bc_plain import mlp


class DirectMethodChooser:
    """Per-arm ridge regression of episode return on the first static features (see module doc)."""

    def __init__(self, train_parquet: str, *, num_arms: int, static_dim: int, ridge: float = 1.0):
        df = pd.read_parquet(train_parquet, columns=["obs", "rewards", "eps_id", "t", "policy_id"])
        ret = df.groupby("eps_id", sort=False)["rewards"].sum()
        first = df.sort_values("t").groupby("eps_id", sort=False).head(1).set_index("eps_id").loc[ret.index]
        x = np.stack(first["obs"].values)[:, -static_dim:].astype(np.float64)
        arm, y = first["policy_id"].to_numpy(), ret.to_numpy(np.float64)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        z = np.c_[np.ones(len(x)), (x - self.mean) / self.std]
        self.num_arms, self.weights, self.episodes = num_arms, [], []
        for k in range(num_arms):
            zk, yk = z[arm == k], y[arm == k]
            reg = ridge * np.eye(z.shape[1])
            reg[0, 0] = 0.0  # the intercept is not shrunk
            self.weights.append(np.linalg.solve(zk.T @ zk + reg, zk.T @ yk) if len(yk) else None)
            self.episodes.append(int(len(yk)))

    def predict(self, static: np.ndarray) -> np.ndarray:
        """Predicted episode return of every arm for these static features ``[F_s]`` → ``[K]``."""
        z = np.r_[1.0, (np.asarray(static, np.float64) - self.mean) / self.std]
        return np.array([-np.inf if w is None else w @ z for w in self.weights])  # unlogged arm: never

    def choose(self, static: np.ndarray) -> int:
        return int(np.argmax(self.predict(static)))


class PlainBC:
    """Behaviour cloning of the flat observation (MSE on tanh outputs), batches from memory."""

    def __init__(self, data: dict[str, torch.Tensor], *, hiddens: list[int], seed: int, batch_size: int = 256,
                 lr: float = 3e-4):
        torch.manual_seed(seed)
        self.gen = torch.Generator().manual_seed(seed)
        self.mean, self.std = data["obs"].mean(0), data["obs"].std(0) + 1e-3
        self.s, self.a = (data["obs"] - self.mean) / self.std, data["actions"]
        self.actor = mlp(self.s.shape[1], hiddens, self.a.shape[1])
        self.opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.batch_size, self.steps = batch_size, 0

    def train(self, steps: int) -> None:
        n = self.s.shape[0]
        for _ in range(steps):
            idx = torch.randint(n, (self.batch_size,), generator=self.gen)
            loss = torch.nn.functional.mse_loss(torch.tanh(self.actor(self.s[idx])), self.a[idx])
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        self.steps += steps

    def policy_fn(self) -> Callable[[Any], np.ndarray]:
        def act(obs: Any) -> np.ndarray:
            with torch.no_grad():
                s = (torch.as_tensor(np.asarray(obs, np.float32))[None] - self.mean) / self.std
                return torch.tanh(self.actor(s))[0].numpy()

        return act
