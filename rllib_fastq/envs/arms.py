"""Logging arms (rule-based experiment policies) and reference policies (routers: ``routing.py``).

Each arm is a deterministic function of the observation, good for one kind of player and poor
elsewhere; the logged action adds Gaussian noise (``logging_noise``) so the data covers a
neighbourhood of each arm's rule. Because the arms are rules, every arm can be asked what it
would do for any player: that is the ``expert_actions`` column (docs/algorithm.md §2).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_fastq.envs.player_platform import STATIC_FEATURES, TEMPORAL_FEATURES

#: Arm names, by arm index.
ARM_NAMES = ("retention", "competitive", "monetization", "balanced")

_SKILL = STATIC_FEATURES.index("skill_estimate")
_SEG = slice(0, 3)
_ENG = TEMPORAL_FEATURES.index("engagement")
_ACTIVE = TEMPORAL_FEATURES.index("active")


def _recent_engagement(temporal: np.ndarray, n: int = 3) -> float:
    """Mean engagement over the last ``n`` real steps (NaN before the first step)."""
    # Plain Python over a few rows: numpy's per-call overhead dominates at this size.
    vals = [float(row[_ENG]) for row in temporal[-n:] if row[_ACTIVE] > 0]
    return sum(vals) / len(vals) if vals else float("nan")


def arm_actions(obs: dict[str, np.ndarray], num_arms: int = 3) -> np.ndarray:
    """What each of the first ``num_arms`` arms does for this player: float32 ``[K, 3]``.

    Actions are (generosity, difficulty tilt, recommendation intensity) in ``[-1, 1]``.
    """
    static, temporal = obs["static"], obs["temporal"]
    skill = float(static[_SKILL])
    eng = _recent_engagement(temporal)
    low = 0.0 if np.isnan(eng) else float(eng < 0.3)  # the player seems to be drifting away
    out = np.empty((4, 3), np.float32)
    # retention: bonuses and easy games, little pushed content; more generous when engagement drops.
    out[0] = (0.6 + 0.3 * low, -0.4, -0.5)
    # competitive: no bonuses, matchmaking tilted up to the estimated skill, neutral content.
    out[1] = (-0.6, min(max(0.3 + 0.6 * skill, -1.0), 1.0), 0.0)
    # monetization: no free currency, neutral difficulty, heavy store recommendations.
    out[2] = (-0.9, 0.0, 0.8 - 0.3 * low)
    # balanced: the middle of the road.
    out[3] = (0.0, min(max(0.3 * skill, -1.0), 1.0), 0.2)
    return out[:num_arms]  # every entry above is already in [-1, 1]


class ArmPolicy:
    """Arm ``k`` as a ``policy_fn(obs) -> action`` (deterministic, for evaluation)."""

    def __init__(self, k: int, layout: Any = None):
        self.k, self.layout = k, layout

    def __call__(self, obs: Any) -> np.ndarray:
        from rllib_fastq.envs.player_platform import as_dict_obs

        return arm_actions(as_dict_obs(obs, self.layout), num_arms=self.k + 1)[self.k]


class WithLoggingNoise:
    """``policy`` as the logs carry it: its action plus the generator's ``N(0, noise²)`` logging
    noise, clipped to the bounds. Off-policy estimates from the logs value this (the arms as they
    were run), not the noise-free rule that the online evaluation serves."""

    def __init__(self, policy: Any, noise: float, seed: int = 0):
        if noise < 0:
            raise ValueError(f"noise: expected a standard deviation >= 0, got {noise}.")
        self.policy, self.noise = policy, float(noise)
        self.rng = np.random.default_rng([seed, 23])

    def __call__(self, obs: Any) -> np.ndarray:
        action = np.asarray(self.policy(obs), np.float32)
        return np.clip(action + self.noise * self.rng.standard_normal(action.shape), -1.0, 1.0).astype(np.float32)


class SegmentOraclePolicy:
    """Per-segment oracle: the arm that is best for the player's observed segment."""

    def __init__(self, best_arm_per_segment: tuple[int, int, int], layout: Any = None):
        self.best, self.layout = tuple(best_arm_per_segment), layout

    def __call__(self, obs: Any) -> np.ndarray:
        from rllib_fastq.envs.player_platform import as_dict_obs

        d = as_dict_obs(obs, self.layout)
        k = self.best[int(np.argmax(d["static"][_SEG]))]
        return arm_actions(d, num_arms=4)[k]


def per_player_policy(obs: Any, layout: Any = None) -> np.ndarray:
    """A hand-written per-player policy from the observation only (no latent traits).

    Difficulty follows the skill estimate; generosity and recommendations follow the observed
    segment. It is what a learner could reach from the logged data, not an upper bound.
    """
    from rllib_fastq.envs.player_platform import as_dict_obs

    d = as_dict_obs(obs, layout)
    static = d["static"]
    seg = int(np.argmax(static[_SEG]))
    skill = float(static[_SKILL])
    gen = (0.8, -1.0, -1.0)[seg]
    rec = (-0.8, 0.0, 0.8)[seg]
    return np.clip(np.array([gen, skill, rec], np.float32), -1.0, 1.0)
