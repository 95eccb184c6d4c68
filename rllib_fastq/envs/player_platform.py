"""The player-platform simulator: players with latent traits, memory and churn (docs/algorithm.md §1).

One episode is one player's life on the platform for up to ``horizon`` steps. The agent (or
a logging arm) picks a continuous action each step: offer generosity, difficulty/matchmaking
tilt and recommendation intensity, all in ``[-1, 1]``. The player answers with four reward
components (:data:`REWARD_COMPONENT_NAMES`); the scalar reward is ``weights · components``.

What makes the problem worth solving: the best action depends on latent traits that the
observation only hints at (segment, tenure, channel, noisy skill and spend estimates, the
recent history), so each rule-based arm in :mod:`rllib_fastq.envs.arms` is good for its own
kind of player and poor elsewhere.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import gymnasium as gym
import numpy as np

from rllib_fastq.data import schema

#: Reward components, in the order of ``info["reward_components"]`` and the dataset column.
REWARD_COMPONENT_NAMES = ("revenue", "engagement", "cost", "dwell")
#: Default scalarisation (docs/algorithm.md §4): cost counts against the reward.
DEFAULT_REWARD_WEIGHTS = (0.25, 0.25, -0.25, 0.25)
#: Per-step features in the ``temporal`` window (oldest row first, newest last).
TEMPORAL_FEATURES = (
    "revenue", "engagement", "cost", "dwell",          # previous reward components
    "prev_generosity", "prev_difficulty", "prev_recommendation",  # previous action
    "activity_signal",                                  # noisy view of the platform-wide shock
    "active",                                           # 1 for real steps, 0 for padding
)
#: Static features (drawn at reset, constant over the episode).
STATIC_FEATURES = (
    "seg_casual", "seg_competitive", "seg_spender",     # observed segment (noisy label)
    "tenure", "paid_channel", "skill_estimate", "spend_hint",
)
SEGMENT_NAMES = ("casual", "competitive", "spender")

# Latent trait means per true segment: intent, skill, spend, bonus sensitivity, churn risk.
# Casual players like generosity and easy games and tire of pushed content; competitive
# players want hard matches and ignore bonuses; spenders respond to recommendations, and
# generosity only cannibalises what they would have bought.
_TRAIT_MEANS = np.array([
    [0.45, -0.5, 0.10, 0.85, 0.70],
    [0.80, 0.70, 0.20, 0.15, 0.30],
    [0.65, 0.00, 0.85, 0.15, 0.40],
])
_TRAIT_STD = np.array([0.12, 0.25, 0.08, 0.08, 0.10])


@dataclasses.dataclass(frozen=True)
class PlayerPlatformConfig:
    """Parameters of the simulator (all have defaults; the env also takes them as a dict).

    Attributes:
        horizon: steps before truncation.
        window: T, the number of past steps in the ``temporal`` observation.
        num_arms: K logging arms (1..4) used by the data generator's router.
        reward_weights: scalarisation of :data:`REWARD_COMPONENT_NAMES`.
        flat_obs: observe ``concat(temporal.ravel(), static)`` (a Box) instead of the Dict.
        segment_probs: population shares of casual / competitive / spender players.
        segment_label_noise: probability that the observed segment label is a random one.
        skill_noise, spend_noise: std of the noisy static estimates of skill and spend.
        shock_prob: per-step probability that a platform-wide shock starts.
        shock_scale: std of a shock's shift of engagement.
        shock_decay: per-step persistence of a shock (it fades geometrically).
        churn_scale: multiplies the per-step churn hazard.
        reward_noise: std of per-step engagement noise.
        logging_noise: std of the Gaussian noise the logging arms add to their actions.
    """

    horizon: int = 50
    window: int = 30
    num_arms: int = 3
    reward_weights: tuple[float, ...] = DEFAULT_REWARD_WEIGHTS
    flat_obs: bool = False
    segment_probs: tuple[float, float, float] = (0.4, 0.3, 0.3)
    segment_label_noise: float = 0.15
    skill_noise: float = 0.25
    spend_noise: float = 0.15
    shock_prob: float = 0.05
    shock_scale: float = 0.25
    shock_decay: float = 0.85
    churn_scale: float = 1.0
    reward_noise: float = 0.05
    logging_noise: float = 0.15

    def __post_init__(self) -> None:
        if self.horizon < 1 or self.window < 1:
            raise ValueError(f"horizon and window must be >= 1, got {self.horizon}, {self.window}.")
        if not 1 <= self.num_arms <= 4:
            raise ValueError(f"num_arms: expected 1..4 rule-based arms, got {self.num_arms}.")
        if len(self.reward_weights) != len(REWARD_COMPONENT_NAMES):
            raise ValueError(f"reward_weights: expected {len(REWARD_COMPONENT_NAMES)} weights "
                             f"{REWARD_COMPONENT_NAMES}, got {len(self.reward_weights)}.")
        if len(self.segment_probs) != 3 or abs(sum(self.segment_probs) - 1.0) > 1e-6:
            raise ValueError(f"segment_probs: expected 3 shares summing to 1, got {self.segment_probs}.")

    @classmethod
    def from_any(cls, cfg: PlayerPlatformConfig | Mapping[str, Any] | None = None,
                 **kwargs: Any) -> PlayerPlatformConfig:
        """A config from a config, a dict (RLlib's ``env_config``) and/or keyword overrides."""
        if isinstance(cfg, PlayerPlatformConfig):
            base = dataclasses.asdict(cfg)
        else:
            base = dict(cfg or {})
        base.update(kwargs)
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(base) - known)
        if unknown:
            raise ValueError(f"PlayerPlatformConfig: unknown parameter(s) {unknown}; known: {sorted(known)}.")
        for key in ("reward_weights", "segment_probs"):
            if key in base:
                base[key] = tuple(float(x) for x in base[key])
        return cls(**base)

    @property
    def obs_layout(self) -> schema.ObsLayout:
        """Layout of the stored (flattened) observation."""
        return schema.ObsLayout(static=len(STATIC_FEATURES), temporal=(self.window, len(TEMPORAL_FEATURES)))


class PlayerPlatformEnv(gym.Env):
    """One player per episode; see the module docstring and :class:`PlayerPlatformConfig`.

    ``info`` carries ``reward_components`` (float32 [4]) every step, and at reset the player's
    ``segment`` (true, latent) and ``observed_segment``.
    """

    metadata = {"render_modes": []}

    def __init__(self, config: PlayerPlatformConfig | Mapping[str, Any] | None = None, **kwargs: Any):
        # RLlib passes an EnvContext (a dict subclass with extra attributes): keep the items only.
        if config is not None and not isinstance(config, PlayerPlatformConfig):
            config = {k: v for k, v in dict(config).items()}
        self.config = PlayerPlatformConfig.from_any(config, **kwargs)
        c = self.config
        self._F, self._Fs = len(TEMPORAL_FEATURES), len(STATIC_FEATURES)
        self._weights = np.asarray(c.reward_weights, dtype=np.float64)
        temporal = gym.spaces.Box(-np.inf, np.inf, (c.window, self._F), np.float32)
        static = gym.spaces.Box(-np.inf, np.inf, (self._Fs,), np.float32)
        if c.flat_obs:
            self.observation_space = gym.spaces.Box(-np.inf, np.inf, (c.obs_layout.flat_dim,), np.float32)
        else:
            self.observation_space = gym.spaces.Dict({"temporal": temporal, "static": static})
        self.action_space = gym.spaces.Box(-1.0, 1.0, (3,), np.float32)
        self._hist = np.zeros((c.window, self._F), np.float32)
        self._static = np.zeros(self._Fs, np.float32)

    # -- players ---------------------------------------------------------------------------
    def _draw_player(self) -> None:
        c, rng = self.config, self.np_random
        seg = int(rng.choice(3, p=c.segment_probs))
        traits = _TRAIT_MEANS[seg] + _TRAIT_STD * rng.standard_normal(5)
        self._intent = float(np.clip(traits[0], 0.05, 1.0))
        self._skill = float(np.clip(traits[1], -1.0, 1.0))
        self._spend = float(np.clip(traits[2], 0.0, 1.0))
        self._bonus = float(np.clip(traits[3], 0.0, 1.0))
        self._churn = float(np.clip(traits[4], 0.0, 1.0))
        obs_seg = int(rng.integers(3)) if rng.random() < c.segment_label_noise else seg
        self.segment, self.observed_segment = seg, obs_seg
        st = np.zeros(self._Fs, np.float32)
        st[obs_seg] = 1.0
        st[3] = np.clip(1.0 - self._churn + 0.2 * rng.standard_normal(), 0.0, 1.0)  # tenure
        st[4] = float(rng.random() < 0.2 + 0.6 * self._spend)                        # paid channel
        st[5] = self._skill + c.skill_noise * rng.standard_normal()
        st[6] = self._spend + c.spend_noise * rng.standard_normal()
        self._static = st

    def _obs(self) -> Any:
        d = {"temporal": self._hist.copy(), "static": self._static.copy()}
        return schema.ObsLayout.flatten(d) if self.config.flat_obs else d

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self._draw_player()
        self._fatigue, self._satisfaction, self._balance = 0.0, 0.5, 0.0
        self._shock = 0.0
        self._t = 0
        self._hist[:] = 0.0
        info = {"segment": self.segment, "observed_segment": self.observed_segment}
        return self._obs(), info

    # -- dynamics --------------------------------------------------------------------------
    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        c, rng = self.config, self.np_random
        a = np.clip(np.asarray(action, dtype=np.float64).reshape(3), -1.0, 1.0)
        gen, diff, rec = (a[0] + 1.0) / 2.0, a[1], (a[2] + 1.0) / 2.0
        # Platform-wide volatility: a shock starts now and then and fades geometrically.
        self._shock *= c.shock_decay
        if rng.random() < c.shock_prob:
            self._shock += c.shock_scale * rng.standard_normal()
        match = math.exp(-((diff - self._skill) ** 2) / 0.3)  # matchmaking fit to the player's skill
        eng = (self._intent * (0.4 + 0.6 * match) * (1.0 - 0.5 * self._fatigue)
               * (1.0 + 0.8 * self._bonus * gen) * (1.0 + 0.4 * rec * self._intent)
               + self._shock + c.reward_noise * rng.standard_normal())
        eng = max(eng, 0.0)
        # In-game balance cannibalises purchases: generosity today costs revenue tomorrow.
        revenue = 1.5 * self._spend * eng * (0.3 + 0.7 * rec) / (1.0 + self._balance)
        cost = 0.5 * gen + 0.1 * rec
        dwell = eng * (0.5 + 0.5 * match) * (0.8 + 0.4 * rec * self._intent)
        comps = np.array([revenue, eng, cost, dwell])
        reward = float(self._weights @ comps)

        push = rec * (1.3 - self._intent) + 0.3 * (1.0 - match)
        self._fatigue = 0.85 * self._fatigue + 0.15 * min(max(push, 0.0), 1.0)
        sat = 0.85 * self._satisfaction + 0.15 * (0.7 * match + 0.8 * self._bonus * gen
                                                  - 0.5 * self._fatigue + 0.2)
        self._satisfaction = min(max(float(sat), 0.0), 1.0)
        self._balance = 0.8 * self._balance + 0.5 * gen
        hazard = c.churn_scale * (0.12 * self._churn * (1.0 - self._satisfaction) + 0.04 * self._fatigue ** 2)
        terminated = bool(rng.random() < hazard)
        self._t += 1
        truncated = (not terminated) and self._t >= c.horizon

        row = np.array([revenue, eng, cost, dwell, a[0], a[1], a[2],
                        self._shock + 0.1 * rng.standard_normal(), 1.0], np.float32)
        self._hist[:-1] = self._hist[1:]  # shift the window: newest step last
        self._hist[-1] = row
        info = {"reward_components": comps.astype(np.float32)}
        return self._obs(), reward, terminated, truncated, info


def unflatten_obs(flat: np.ndarray, layout: schema.ObsLayout) -> dict[str, np.ndarray]:
    """:meth:`rllib_fastq.data.schema.ObsLayout.unflatten` (a name the simulator's policies use)."""
    return layout.unflatten(flat)


def as_dict_obs(obs: Any, layout: schema.ObsLayout) -> dict[str, np.ndarray]:
    """:meth:`rllib_fastq.data.schema.ObsLayout.as_dict` (a name the simulator's policies use)."""
    return layout.as_dict(obs)
