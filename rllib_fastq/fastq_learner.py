"""Framework-agnostic learner state of FAST-Q: step counters, phase, exploration schedule.

The counters live in the learner state (``get_state``/``set_state``), so a restored checkpoint
continues in the same phase, with the same actor cadence and exploration probability.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.learner.learner import Learner
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
)

ADVERSARY_TARGETS = ("expert_index", "logged_policy")
POLICY_SAMPLING = ("inverse_frequency", "uniform", "prediction_histogram")
EXPERT_LOSSES = ("mse", "l1")

FASTQ_COUNTERS = "fastq_counters"
PHASE = "phase"
GRADIENT_STEPS = "num_gradient_steps"
ACTOR_STEPS = "num_actor_steps"
EXPLORATION_PROB = "exploration_probability"


class FastQLearner(Learner):
    """Counters and schedules shared by every framework's FAST-Q learner.

    One gradient step is one optimizer step on one minibatch. Phase 1 covers the first
    ``pretrain_steps`` of them; in phase 2 the actor (and both targets) update every
    ``policy_freq``-th phase-2 step, counted by this learner, not by RLlib's
    once-per-``update()`` hooks.
    """

    def build(self) -> None:
        super().build()
        self.num_gradient_steps = 0
        self.num_actor_steps = 0
        self.obs_mean: np.ndarray | None = None
        self.obs_std: np.ndarray | None = None
        self.arm_freqs: np.ndarray | None = None
        steps = self.config.pretrain_steps
        #: Phase-1 length in gradient steps ("auto" is resolved from the data in ``setup_data``).
        self.pretrain_steps: int = 0 if steps == "auto" else int(steps)

    # -- schedule ------------------------------------------------------------------------------

    @property
    def phase(self) -> int:
        """1 while pre-training experts and BR, 2 afterwards."""
        return 1 if self.num_gradient_steps < self.pretrain_steps else 2

    @property
    def phase2_step(self) -> int:
        """1-based index of the next phase-2 gradient step (0 in phase 1)."""
        return max(0, self.num_gradient_steps - self.pretrain_steps + 1)

    def is_actor_step(self) -> bool:
        """True when the next phase-2 step also updates the actor and the targets."""
        return self.phase == 2 and self.phase2_step % self.config.policy_freq == 0

    def exploration_probability(self) -> float:
        """ε_t = max_exploration · min(1, t / exploration_ramp_steps), t the phase-2 step."""
        cfg = self.config
        return cfg.max_exploration * min(1.0, self.phase2_step / cfg.exploration_ramp_steps)

    def phase1_arm_probabilities(self, adversary_histogram: np.ndarray | None = None) -> np.ndarray:
        """Probability of drawing each arm in a phase-1 batch (``policy_sampling``).

        "inverse_frequency": every arm equally (rows weighted 1 / frequency of their arm);
        "uniform": arms as frequent as in the data; "prediction_histogram": arms weighted by
        1 / (share of the adversary's predictions that name them), so arms the adversary
        rarely predicts are shown more often.
        """
        freqs = self.arm_freqs
        present = freqs > 0
        mode = self.config.policy_sampling
        if mode == "uniform":
            return freqs
        if mode == "prediction_histogram" and adversary_histogram is not None:
            w = 1.0 / (np.asarray(adversary_histogram, np.float64) + 1e-3)
        else:
            w = np.ones_like(freqs)
        w = np.where(present, w, 0.0)
        return w / w.sum()

    def log_rows_trained(self, rows: int) -> None:
        """RLlib's trained-step counters (what ``Learner.update`` logs on the Ray Data path) for
        ``rows`` in-memory rows: Tune stop criteria and RLlib's progress metrics read them."""
        for key, value in ((NUM_MODULE_STEPS_TRAINED, "sum"), (NUM_MODULE_STEPS_TRAINED_LIFETIME, "lifetime_sum")):
            self.metrics.log_value((DEFAULT_MODULE_ID, key), rows, reduce=value)
            self.metrics.log_value((ALL_MODULES, key), rows, reduce=value)
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED), rows, reduce="sum")
        self.metrics.log_value((ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), rows, reduce="lifetime_sum")

    def count_gradient_step(self, actor_updated: bool) -> None:
        self.num_gradient_steps += 1
        self.num_actor_steps += int(actor_updated)

    # -- data ----------------------------------------------------------------------------------

    def setup_data(self, *, obs_mean: np.ndarray, obs_std: np.ndarray, arm_freqs: np.ndarray,
                   arrays: dict[str, np.ndarray] | None, pretrain_steps: int) -> None:
        """Receive the dataset statistics (and the arrays, for the in-memory path) and the
        phase-1 length resolved for this data."""
        self.obs_mean, self.obs_std, self.arm_freqs = obs_mean, obs_std, np.asarray(arm_freqs)
        self.pretrain_steps = int(pretrain_steps)

    # -- state ---------------------------------------------------------------------------------

    def get_state(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        state = super().get_state(*args, **kwargs)
        state[FASTQ_COUNTERS] = {GRADIENT_STEPS: self.num_gradient_steps, ACTOR_STEPS: self.num_actor_steps}
        return state

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        counters = state.get(FASTQ_COUNTERS)
        if counters is not None:
            self.num_gradient_steps = int(counters[GRADIENT_STEPS])
            self.num_actor_steps = int(counters[ACTOR_STEPS])
