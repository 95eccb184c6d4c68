"""A plain PyTorch TD3+BC loop (CORL style): the speed baseline for FAST-Q inside RLlib.

Same sizes as FAST-Q's phase 2 (actor and twin critic MLPs, batch, policy_freq, Polyak τ),
sampling batches from tensors in memory, one optimizer step per gradient step.
"""

from __future__ import annotations

import copy
import time

import torch
from torch import nn
from torch.nn import functional as F


def mlp(inp: int, hiddens: list[int], out: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for h in hiddens:
        layers += [nn.Linear(inp, h), nn.ReLU()]
        inp = h
    return nn.Sequential(*layers, nn.Linear(inp, out))


class TD3BC:
    def __init__(self, state_dim: int, action_dim: int, hiddens: list[int], *, alpha: float = 2.5,
                 gamma: float = 0.99, tau: float = 0.005, policy_noise: float = 0.2, noise_clip: float = 0.5,
                 policy_freq: int = 2, lr: float = 3e-4, fused_adam: bool = False):
        self.actor = mlp(state_dim, hiddens, action_dim)
        self.q1 = mlp(state_dim + action_dim, hiddens, 1)
        self.q2 = mlp(state_dim + action_dim, hiddens, 1)
        self.actor_t, self.q1_t, self.q2_t = (copy.deepcopy(m) for m in (self.actor, self.q1, self.q2))
        # CORL uses torch's default (single-tensor) Adam; `fused_adam` is FAST-Q's optimizer.
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr, fused=fused_adam or None)
        self.critic_opt = torch.optim.Adam([*self.q1.parameters(), *self.q2.parameters()], lr=lr,
                                           fused=fused_adam or None)
        self.alpha, self.gamma, self.tau = alpha, gamma, tau
        self.policy_noise, self.noise_clip, self.policy_freq = policy_noise, noise_clip, policy_freq
        self.it = 0

    def pi(self, s: torch.Tensor, target: bool = False) -> torch.Tensor:
        return torch.tanh((self.actor_t if target else self.actor)(s))

    def train_step(self, s, a, r, s2, done) -> None:
        self.it += 1
        with torch.no_grad():
            noise = (torch.randn_like(a) * self.policy_noise).clamp(-self.noise_clip, self.noise_clip)
            a2 = (self.pi(s2, target=True) + noise).clamp(-1, 1)
            sa2 = torch.cat([s2, a2], -1)
            y = r + self.gamma * (1 - done) * torch.min(self.q1_t(sa2), self.q2_t(sa2)).squeeze(-1)
        sa = torch.cat([s, a], -1)
        critic_loss = F.mse_loss(self.q1(sa).squeeze(-1), y) + F.mse_loss(self.q2(sa).squeeze(-1), y)
        self.critic_opt.zero_grad()
        critic_loss.backward()
        self.critic_opt.step()
        if self.it % self.policy_freq == 0:
            pi = self.pi(s)
            q = self.q1(torch.cat([s, pi], -1))
            lam = self.alpha / q.abs().mean().detach()
            actor_loss = -lam * q.mean() + F.mse_loss(pi, a)
            self.actor_opt.zero_grad()
            actor_loss.backward()
            self.actor_opt.step()
            with torch.no_grad():
                for net, tgt in ((self.actor, self.actor_t), (self.q1, self.q1_t), (self.q2, self.q2_t)):
                    for p, pt in zip(net.parameters(), tgt.parameters()):
                        pt.mul_(1 - self.tau).add_(self.tau * p)


def updates_per_second(data: dict[str, torch.Tensor], hiddens: list[int], batch_size: int, steps: int,
                       warmup: int = 20, fused_adam: bool = False) -> float:
    """Gradient steps per second of the plain loop on ``data`` (obs, actions, rewards, new_obs, terminateds)."""
    s, a = data["obs"], data["actions"]
    algo = TD3BC(s.shape[1], a.shape[1], hiddens, fused_adam=fused_adam)
    n = s.shape[0]

    def step() -> None:
        idx = torch.randint(n, (batch_size,))
        algo.train_step(s[idx], a[idx], data["rewards"][idx], data["new_obs"][idx], data["terminateds"][idx])

    for _ in range(warmup):
        step()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    return steps / (time.perf_counter() - t)
