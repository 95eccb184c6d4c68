"""Soft actor-critic in plain PyTorch: the behaviour-policy trainer behind ``fastq data mujoco``.

Small on purpose (one CPU thread, no Ray): twin critics are one batched ensemble so an update is
a handful of ``baddbmm`` calls, which matters at ~60 updates/s per core. The replay buffer saves
itself as append-only segments (one ``.npz`` per checkpoint interval) so committed checkpoints
grow git history by the new data only, never by a rewritten multi-megabyte file.

Why this module is long: the networks, the learner, the segmented replay buffer and the
resumable training loop together are one checkpoint format; apart, a resume would depend on
several files agreeing.
"""

from __future__ import annotations

import dataclasses
import glob
import math
import os
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from rllib_fastq.evaluation.episodes import run_episodes
from rllib_fastq.evaluation.scores import normalized_score

LOG_STD_MIN, LOG_STD_MAX = -5.0, 2.0


@dataclasses.dataclass
class SACConfig:
    """Hyper-parameters (Haarnoja et al. 2018 defaults, as used to make D4RL's policies)."""

    hidden: int = 256
    batch_size: int = 256
    lr: float = 3e-4
    gamma: float = 0.99
    tau: float = 0.005
    start_steps: int = 5000
    init_alpha: float = 1.0


class Actor(nn.Module):
    """Tanh-squashed diagonal Gaussian policy; actions in [-1, 1]^d_a."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.obs_dim, self.act_dim, self.hidden = obs_dim, act_dim, hidden
        self.net = nn.Sequential(
            nn.Linear(obs_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 2 * act_dim),
        )

    def forward(self, obs: torch.Tensor, deterministic: bool = False,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Sampled (or mean) action and its log-probability under the squashed Gaussian."""
        mu, log_std = self.net(obs).chunk(2, dim=-1)
        log_std = log_std.clamp(LOG_STD_MIN, LOG_STD_MAX)
        if deterministic:
            u = mu
        else:
            eps = torch.randn(mu.shape, generator=generator, dtype=mu.dtype)
            u = mu + log_std.exp() * eps
        # Gaussian log-density minus the tanh Jacobian, in its overflow-free softplus form.
        logp = (-0.5 * ((u - mu) / log_std.exp()) ** 2 - log_std - 0.5 * math.log(2 * math.pi)).sum(-1)
        logp = logp - (2 * (math.log(2) - u - F.softplus(-2 * u))).sum(-1)
        return torch.tanh(u), logp

    @torch.no_grad()
    def act(self, obs: np.ndarray, deterministic: bool = False,
            generator: torch.Generator | None = None) -> np.ndarray:
        """Action(s) for numpy observation(s), as float32 numpy."""
        x = torch.as_tensor(np.asarray(obs, dtype=np.float32))
        a, _ = self(x, deterministic=deterministic, generator=generator)
        return a.numpy()

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to rebuild this actor (see :func:`load_actor`)."""
        return {"obs_dim": self.obs_dim, "act_dim": self.act_dim, "hidden": self.hidden,
                "state_dict": {k: v.detach().clone() for k, v in self.state_dict().items()}}


def load_actor(snap: dict[str, Any] | str | os.PathLike) -> Actor:
    """Rebuild an :class:`Actor` from :meth:`Actor.snapshot` output or a file holding it."""
    if not isinstance(snap, dict):
        snap = torch.load(snap, map_location="cpu", weights_only=False)
    actor = Actor(snap["obs_dim"], snap["act_dim"], snap["hidden"])
    actor.load_state_dict(snap["state_dict"])
    return actor.eval()


class EnsembleLinear(nn.Module):
    """``n`` independent linear layers applied to ``[n, B, in]`` in one batched matmul."""

    def __init__(self, n: int, d_in: int, d_out: int) -> None:
        super().__init__()
        bound = 1.0 / math.sqrt(d_in)  # nn.Linear's default init, per member
        self.weight = nn.Parameter(torch.empty(n, d_in, d_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, 1, d_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class TwinCritic(nn.Module):
    """Two Q-networks evaluated together; returns ``[2, B]``."""

    def __init__(self, obs_dim: int, act_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.l1 = EnsembleLinear(2, obs_dim + act_dim, hidden)
        self.l2 = EnsembleLinear(2, hidden, hidden)
        self.l3 = EnsembleLinear(2, hidden, 1)

    def forward(self, obs: torch.Tensor, act: torch.Tensor) -> torch.Tensor:
        x = torch.cat([obs, act], dim=-1).unsqueeze(0).expand(2, -1, -1)
        return self.l3(F.relu(self.l2(F.relu(self.l1(x))))).squeeze(-1)


class SAC:
    """The learner: actor, twin critics with Polyak targets, learned temperature."""

    def __init__(self, obs_dim: int, act_dim: int, cfg: SACConfig | None = None, seed: int = 0) -> None:
        self.cfg = cfg or SACConfig()
        torch.manual_seed(seed)
        self.generator = torch.Generator().manual_seed(seed)
        h = self.cfg.hidden
        self.actor = Actor(obs_dim, act_dim, h)
        self.critic = TwinCritic(obs_dim, act_dim, h)
        self.target = TwinCritic(obs_dim, act_dim, h)
        self.target.load_state_dict(self.critic.state_dict())
        self.target.requires_grad_(False)
        self.log_alpha = torch.tensor(math.log(self.cfg.init_alpha), requires_grad=True)
        self.target_entropy = -float(act_dim)
        lr = self.cfg.lr
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=lr)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=lr)
        self.alpha_opt = torch.optim.Adam([self.log_alpha], lr=lr)
        self.updates = 0

    def update(self, batch: dict[str, torch.Tensor]) -> dict[str, float]:
        """One gradient step on critics, actor and temperature from a replay batch."""
        obs, act, rew = batch["obs"], batch["actions"], batch["rewards"]
        new_obs, term = batch["new_obs"], batch["terminateds"]
        alpha = self.log_alpha.exp().detach()
        with torch.no_grad():
            a2, logp2 = self.actor(new_obs, generator=self.generator)
            q_next = self.target(new_obs, a2).min(0).values - alpha * logp2
            # Only a true termination stops bootstrapping; a time-limit cut does not.
            y = rew + self.cfg.gamma * (1.0 - term) * q_next
        q = self.critic(obs, act)
        critic_loss = ((q - y.unsqueeze(0)) ** 2).mean(1).sum()
        self.critic_opt.zero_grad(set_to_none=True)
        critic_loss.backward()
        self.critic_opt.step()

        self.critic.requires_grad_(False)
        a, logp = self.actor(obs, generator=self.generator)
        actor_loss = (alpha * logp - self.critic(obs, a).min(0).values).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        actor_loss.backward()
        self.actor_opt.step()
        self.critic.requires_grad_(True)

        alpha_loss = -(self.log_alpha * (logp.detach() + self.target_entropy)).mean()
        self.alpha_opt.zero_grad(set_to_none=True)
        alpha_loss.backward()
        self.alpha_opt.step()

        with torch.no_grad():
            torch._foreach_lerp_(list(self.target.parameters()), list(self.critic.parameters()),
                                 self.cfg.tau)
        self.updates += 1
        return {"critic_loss": critic_loss.item(), "actor_loss": actor_loss.item(),
                "alpha": alpha.item()}

    def state_dict(self) -> dict[str, Any]:
        """Full learner state, optimisers and RNG included, for exact-as-possible resumption."""
        return {
            "cfg": dataclasses.asdict(self.cfg),
            "actor": self.actor.state_dict(), "critic": self.critic.state_dict(),
            "target": self.target.state_dict(), "log_alpha": self.log_alpha.detach().clone(),
            "actor_opt": self.actor_opt.state_dict(), "critic_opt": self.critic_opt.state_dict(),
            "alpha_opt": self.alpha_opt.state_dict(), "updates": self.updates,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, d: dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (networks must have the same shapes)."""
        self.actor.load_state_dict(d["actor"])
        self.critic.load_state_dict(d["critic"])
        self.target.load_state_dict(d["target"])
        with torch.no_grad():
            self.log_alpha.copy_(d["log_alpha"])
        self.actor_opt.load_state_dict(d["actor_opt"])
        self.critic_opt.load_state_dict(d["critic_opt"])
        self.alpha_opt.load_state_dict(d["alpha_opt"])
        self.updates = int(d["updates"])
        self.generator.set_state(d["generator"])
        torch.set_rng_state(d["torch_rng"])


class ReplayBuffer:
    """Fixed-capacity transition store (capacity = the step budget, so nothing is overwritten)."""

    def __init__(self, capacity: int, obs_dim: int, act_dim: int) -> None:
        self.capacity, self.size = capacity, 0
        self.obs = np.zeros((capacity, obs_dim), np.float32)
        self.new_obs = np.zeros((capacity, obs_dim), np.float32)
        self.actions = np.zeros((capacity, act_dim), np.float32)
        self.rewards = np.zeros(capacity, np.float32)
        self.terminateds = np.zeros(capacity, bool)
        self.truncateds = np.zeros(capacity, bool)

    def add(self, obs: np.ndarray, action: np.ndarray, reward: float, new_obs: np.ndarray,
            terminated: bool, truncated: bool) -> None:
        """Append one transition; raises once the budget-sized buffer is full."""
        if self.size >= self.capacity:
            raise ValueError(f"replay buffer: full at {self.capacity} transitions (the step budget).")
        i = self.size
        self.obs[i], self.actions[i], self.rewards[i] = obs, action, reward
        self.new_obs[i], self.terminateds[i], self.truncateds[i] = new_obs, terminated, truncated
        self.size += 1

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, torch.Tensor]:
        """A uniform batch of ``n`` transitions as float32 tensors."""
        idx = rng.integers(0, self.size, n)
        return {
            "obs": torch.from_numpy(self.obs[idx]), "actions": torch.from_numpy(self.actions[idx]),
            "rewards": torch.from_numpy(self.rewards[idx]),
            "new_obs": torch.from_numpy(self.new_obs[idx]),
            "terminateds": torch.from_numpy(self.terminateds[idx].astype(np.float32)),
        }

    def save_segment(self, directory: str, start: int, end: int) -> str:
        """Write rows ``[start, end)`` to ``directory/seg_<start>_<end>.npz`` (atomically).

        Observations and actions are float16 and ``new_obs`` is kept only where it is not the next
        row's ``obs`` (episode ends, segment end): a quarter of the float32 size.
        """
        os.makedirs(directory, exist_ok=True)
        ends = np.flatnonzero(self.terminateds[start:end] | self.truncateds[start:end])
        if end - start and (not ends.size or ends[-1] != end - start - 1):
            ends = np.append(ends, end - start - 1)
        path = os.path.join(directory, f"seg_{start:09d}_{end:09d}.npz")
        tmp = path + ".tmp.npz"
        np.savez_compressed(
            tmp, obs=self.obs[start:end].astype(np.float16),
            actions=self.actions[start:end].astype(np.float16), rewards=self.rewards[start:end],
            terminateds=self.terminateds[start:end], truncateds=self.truncateds[start:end],
            end_idx=ends, end_new_obs=self.new_obs[start:end][ends].astype(np.float16),
        )
        os.replace(tmp, path)
        return path

    def load_segments(self, directory: str, upto: int) -> None:
        """Refill rows ``[0, upto)`` from saved segments; later (orphan) segments are ignored."""
        self.size = 0
        for path in sorted(glob.glob(os.path.join(directory, "seg_*_*.npz"))):
            start, end = (int(x) for x in os.path.basename(path)[4:-4].split("_"))
            if end > upto:
                continue
            if start != self.size:
                raise ValueError(f"{path}: replay segment starts at {start}, expected {self.size}.")
            with np.load(path) as z:
                obs = z["obs"].astype(np.float32)
                new_obs = np.concatenate([obs[1:], obs[-1:]])
                new_obs[z["end_idx"]] = z["end_new_obs"].astype(np.float32)
                sl = slice(start, end)
                self.obs[sl], self.new_obs[sl] = obs, new_obs
                self.actions[sl] = z["actions"].astype(np.float32)
                self.rewards[sl] = z["rewards"]
                self.terminateds[sl], self.truncateds[sl] = z["terminateds"], z["truncateds"]
            self.size = end
        if self.size != upto:
            raise ValueError(f"{directory}: replay segments cover {self.size} steps, the checkpoint "
                             f"says {upto}; a segment file is missing.")


def env_seed(seed: int, episode: int) -> int:
    # Every episode is reset with its own seed, so a resumed run meets the same start states.
    return (seed * 1_000_003 + episode) % (2**31)


def atomic_torch_save(obj: Any, path: str) -> None:
    """``torch.save`` to a temporary file, then rename: a crash never costs the old checkpoint."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_state(ckpt: str) -> dict[str, Any] | None:
    """The training state saved in directory ``ckpt`` (None if training never checkpointed)."""
    path = os.path.join(ckpt, "state.pt")
    return torch.load(path, map_location="cpu", weights_only=False) if os.path.exists(path) else None


def evaluate(actor: Any, env_id: str, episodes: int, seed: int) -> tuple[float, float]:
    """Mean and std of the deterministic (mean-action) policy's return over ``episodes``."""
    import gymnasium as gym

    env = gym.make(env_id)
    try:
        eps = run_episodes(lambda obs: actor.act(obs, deterministic=True), env,
                           (env_seed(seed + 7919, ep) for ep in range(episodes)))
    finally:
        env.close()
    return float(np.mean(eps.returns)), float(np.std(eps.returns))


def train(env_id: str, ckpt: str, steps: int, *, seed: int = 0, checkpoint_every: int = 10_000,
          eval_episodes: int = 5, sac_config: Any = None, log: Any = print,
          medium_return: float = math.inf,
          after_checkpoint: Callable[[str, dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Train (or resume training) SAC on ``env_id`` until ``steps`` env steps; return the state.

    Checkpoints fall on episode ends, so a resumed run starts a fresh episode exactly as the
    uninterrupted run would have (up to the float16 rounding of the saved replay data).

    The dataset's rules come from the caller, so the trainer knows nothing of D4RL's: the first
    checkpoint whose evaluation return reaches ``medium_return`` is recorded as
    ``state["medium_step"]``, and ``after_checkpoint(ckpt, state)`` runs after each checkpoint
    is saved (e.g. to delete actor snapshots no dataset can use).
    """
    import gymnasium as gym

    state = load_state(ckpt)
    env = gym.make(env_id)
    obs_dim, act_dim = env.observation_space.shape[0], env.action_space.shape[0]
    low, high = env.action_space.low, env.action_space.high
    if state is None:
        cfg = sac_config or SACConfig()
        state = {"env_id": env_id, "seed": seed, "step": 0, "episode": 0, "evals": [],
                 "medium_step": None, "sac_config": vars(cfg), "np_rng": None, "sac": None}
    else:
        cfg = SACConfig(**state["sac_config"])  # the run's own settings win over the CLI's
        seed = state["seed"]
        log(f"[{env_id}] resuming from step {state['step']} ({ckpt})")
    if state["step"] >= steps:
        log(f"[{env_id}] already trained for {state['step']} >= {steps} steps")
        if state.get("budget", 0) > state["step"]:  # a lowered budget: record where it really ended
            state["budget"] = state["step"]
            atomic_torch_save(state, os.path.join(ckpt, "state.pt"))
        return state
    state["budget"] = steps
    agent = SAC(obs_dim, act_dim, cfg, seed=seed)
    rng = np.random.default_rng(seed)
    # The last episode may run past the budget by up to one episode length.
    buf = ReplayBuffer(steps + (env.spec.max_episode_steps or 1000), obs_dim, act_dim)
    if state["sac"] is not None:
        agent.load_state_dict(state["sac"])
        rng.bit_generator.state = state["np_rng"]
        # A run killed between writing a segment and state.pt leaves an orphan segment that
        # would collide with the one this run writes for the same steps.
        for path in glob.glob(os.path.join(ckpt, "replay", "seg_*_*.npz")):
            if int(os.path.basename(path)[4:13]) >= state["step"]:
                os.remove(path)
        buf.load_segments(os.path.join(ckpt, "replay"), state["step"])
    step, episode, last_ckpt = state["step"], state["episode"], state["step"]
    t0, u0 = time.time(), agent.updates
    obs, _ = env.reset(seed=env_seed(seed, episode))
    while True:
        if step < cfg.start_steps:
            a = rng.uniform(-1.0, 1.0, act_dim).astype(np.float32)
        else:
            a = agent.actor.act(obs, generator=agent.generator)
        new_obs, r, term, trunc, _ = env.step(low + (a + 1.0) * 0.5 * (high - low))
        buf.add(obs, a, r, new_obs, term, trunc)
        step += 1
        obs = new_obs
        if step >= cfg.start_steps and buf.size >= cfg.batch_size:
            agent.update(buf.sample(rng, cfg.batch_size))
        if not (term or trunc):
            continue
        episode += 1
        obs, _ = env.reset(seed=env_seed(seed, episode))
        if step - last_ckpt < checkpoint_every and step < steps:
            continue
        ret, std = evaluate(agent.actor, env_id, eval_episodes, seed)
        snap_path = os.path.join(ckpt, "actors", f"step_{step:09d}.pt")
        atomic_torch_save({**agent.actor.snapshot(), "step": step, "eval_return": ret}, snap_path)
        buf.save_segment(os.path.join(ckpt, "replay"), last_ckpt, step)
        state["evals"].append({"step": step, "return": ret, "std": std,
                               "normalized": normalized_score(env_id, ret),
                               "snapshot": os.path.basename(snap_path)})
        if state["medium_step"] is None and ret >= medium_return:
            state["medium_step"] = step
        state.update(step=step, episode=episode, sac=agent.state_dict(), np_rng=rng.bit_generator.state)
        atomic_torch_save(state, os.path.join(ckpt, "state.pt"))
        if after_checkpoint is not None:
            after_checkpoint(ckpt, state)
        ups = (agent.updates - u0) / max(time.time() - t0, 1e-9)
        log(f"[{env_id}] step {step} episode {episode} eval {ret:.1f} ± {std:.1f} "
            f"(normalised {normalized_score(env_id, ret):.1f}) {ups:.1f} updates/s "
            f"medium_step={state['medium_step']}")
        last_ckpt = step
        if step >= steps:
            break
    env.close()
    return state
