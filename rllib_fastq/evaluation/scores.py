"""D4RL-style normalised scores: 0 = a uniformly random policy, 100 = D4RL's expert (SAC) policy.

References are D4RL's (Fu et al. 2020, ``d4rl/infos.py``), measured on the ``-v2`` MuJoCo tasks;
our ``-v5`` environments have the same reward functions, so the numbers are comparable up to the
small simulator differences recorded beside them in each dataset card (our own random returns).
"""

from __future__ import annotations

#: ``task -> (random return, expert return)``, keyed by the lower-case task name.
D4RL_REF_SCORES: dict[str, tuple[float, float]] = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
}


def task_key(env_id: str) -> str:
    """``"Hopper-v5"``, ``"hopper"``, ``"hopper-medium-v2"`` → ``"hopper"``; unknown → ValueError."""
    key = env_id.strip().lower().split("-")[0]
    if key not in D4RL_REF_SCORES:
        raise ValueError(
            f"normalized_score: no D4RL reference scores for env {env_id!r}; "
            f"known: {sorted(D4RL_REF_SCORES)} (e.g. 'Hopper-v5' or 'hopper')."
        )
    return key


def reference_returns(env_id: str) -> tuple[float, float]:
    """D4RL's ``(random, expert)`` returns for ``env_id``."""
    return D4RL_REF_SCORES[task_key(env_id)]


def normalized_score(env_id: str, episode_return: float) -> float:
    """``100 * (R - R_random) / (R_expert - R_random)`` with D4RL's references."""
    lo, hi = reference_returns(env_id)
    return 100.0 * (float(episode_return) - lo) / (hi - lo)
