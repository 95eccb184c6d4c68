"""Routing regimes: how an experiment sends each new player to one of the K logging arms.

A router sees the player's first observation and draws the arm the player stays on for the
whole episode. Every regime mixes a deterministic *preferred* arm with a randomised share
``overlap`` (a uniformly drawn arm), so every arm has positive probability everywhere and the
router's propensity of the logged arm is known exactly; the data generator logs it in the
``policy_propensity`` column.

Regimes (``ROUTINGS``), on the simulator's arms (retention, competitive, monetization, ...):

- ``aligned``: the arm that suits the observed segment (casual → retention, competitive →
  competitive, spender → monetization). Imitation of the routing is already near the
  per-segment oracle here.
- ``misaligned``: each observed segment preferred onto an arm that is wrong for it
  (casual → competitive, competitive → monetization, spender → retention).
- ``feature-rule``: a business rule on features other than the segment: players from a paid
  acquisition channel → monetization, short-tenure players → retention, the rest →
  competitive. Partly right, as real experiment paths are.
- ``uniform``: a plain A/B test, every arm equally likely (overlap 1).
- ``low-overlap``: ``misaligned`` with only 5 % randomised players.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from rllib_fastq.envs.arms import arm_actions
from rllib_fastq.envs.player_platform import STATIC_FEATURES, TEMPORAL_FEATURES, as_dict_obs

_SEG = slice(0, 3)
_TENURE = STATIC_FEATURES.index("tenure")
_PAID = STATIC_FEATURES.index("paid_channel")
_ACTIVE = TEMPORAL_FEATURES.index("active")

#: Preferred arm per observed segment (casual, competitive, spender) for the segment routers.
SEGMENT_PREFERENCES = {"aligned": (0, 1, 2), "misaligned": (1, 2, 0)}
#: Regime name → (rule, default overlap).
_REGIMES: dict[str, tuple[str, float]] = {
    "aligned": ("aligned", 0.2),
    "misaligned": ("misaligned", 0.2),
    "feature-rule": ("feature-rule", 0.2),
    "uniform": ("aligned", 1.0),
    "low-overlap": ("misaligned", 0.05),
}
ROUTINGS = tuple(_REGIMES)


def _preferred_arm(rule: str, static: np.ndarray) -> int:
    if rule in SEGMENT_PREFERENCES:
        return SEGMENT_PREFERENCES[rule][int(np.argmax(static[_SEG]))]
    # feature-rule: acquisition channel first, then tenure.
    if static[_PAID] > 0.5:
        return 2
    return 0 if static[_TENURE] < 0.4 else 1


@dataclasses.dataclass(frozen=True)
class Router:
    """A routing regime on ``num_arms`` arms; ``overlap`` is the randomised share."""

    name: str = "aligned"
    num_arms: int = 3
    overlap: float | None = None

    def __post_init__(self) -> None:
        if self.name not in _REGIMES:
            raise ValueError(f"routing: expected one of {ROUTINGS}, got {self.name!r}.")
        if self.overlap is not None and not 0.0 <= self.overlap <= 1.0:
            raise ValueError(f"overlap: expected a share in [0, 1], got {self.overlap}.")
        if not 1 <= self.num_arms <= 4:
            raise ValueError(f"num_arms: expected 1..4 rule-based arms, got {self.num_arms}.")

    @classmethod
    def from_card(cls, card: dict[str, Any], num_arms: int) -> Router:
        """The router a dataset card's ``routing`` entry (``{"name", "overlap"}``) describes."""
        return cls(card["routing"]["name"], num_arms=num_arms, overlap=card["routing"]["overlap"])

    @property
    def share_randomised(self) -> float:
        """The randomised share in force (the regime's default unless ``overlap`` is given)."""
        return _REGIMES[self.name][1] if self.overlap is None else float(self.overlap)

    def probabilities(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The router's probability of each arm for this player, float64 ``[K]``."""
        k, share = self.num_arms, self.share_randomised
        probs = np.full(k, share / k)
        probs[_preferred_arm(_REGIMES[self.name][0], np.asarray(obs["static"])) % k] += 1.0 - share
        return probs

    def __call__(self, obs: dict[str, np.ndarray], rng: np.random.Generator) -> tuple[int, float]:
        """Draw the arm for this player: ``(arm, propensity of that arm)``.

        The draws are those of the original router (a uniform for "randomised?", then a uniform
        arm), so ``aligned`` regenerates the shipped data exactly.
        """
        probs = self.probabilities(obs)
        if rng.random() < self.share_randomised:
            arm = int(rng.integers(self.num_arms))
        else:
            arm = _preferred_arm(_REGIMES[self.name][0], np.asarray(obs["static"])) % self.num_arms
        return arm, float(probs[arm])


class RoutingPolicy:
    """The logged routing as a ``policy_fn(obs) -> action`` for online evaluation.

    At each player's first step (no real step in the history yet) it draws the player's arm
    with the router, then acts with that arm's rule for the whole episode, as the experiment did
    (without the logging noise, like :class:`~rllib_fastq.envs.arms.ArmPolicy`).
    """

    def __init__(self, router: Router, layout: Any, seed: int = 0):
        self.router, self.layout = router, layout
        self.rng = np.random.default_rng([seed, 17])
        self.arm = 0

    def __call__(self, obs: Any) -> np.ndarray:
        d = as_dict_obs(obs, self.layout)
        if not np.any(d["temporal"][:, _ACTIVE] > 0):
            self.arm, _ = self.router(d, self.rng)
        return arm_actions(d, num_arms=self.router.num_arms)[self.arm]
