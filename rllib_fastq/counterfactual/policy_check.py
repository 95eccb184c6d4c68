"""Does one arm choice beat another on the logs themselves? (``arm_choice_check``)

Per-state pessimism (an ensemble lower bound per player, ``arm_choice_pessimism``) cost the most
where deviating mattered most: with 5 % randomised players each arm has a few dozen players off
its own slice, the ensemble disagrees there, and the lower bound sent players back to the wrong
routed arm (docs/algorithm.md §8 (k)). The check asks the question once, for the whole policy:

    Δ_i = DR_i(choice) − G_i,          DR_i = q̂(s_i, c_i) + 1[p_i = c_i] / μ_i · (G_i − q̂(s_i, p_i))

over the logged players ``i`` (arrival state ``s_i``, logged arm ``p_i`` with the router's
probability ``μ_i``, episode return ``G_i``, chosen arm ``c_i``). ``mean Δ`` is the doubly-robust
improvement of the choice over the routing that produced the logs (on-policy for the routing:
its value is the mean logged return). Against another choice ``b`` the comparison is paired,
``Δ_i = DR_i(choice) − DR_i(b)``: it is exactly 0 for every player both choices put on the same
arm, so its variance comes from the players where they differ only. Against the routing the
variance of every player's ``G_i`` and weight enters; with 5 % randomised players and weights up
to ~60 a choice that was better than the routing but worse than the pessimistic one was confirmed
(docs/algorithm.md §8 (k)). ``q̂`` is the arm-value ensemble's out-of-bag prediction:
each member was fitted on a Poisson bootstrap of the players, so the members that drew a player
zero times give an estimate not fitted to that player (cross-fitting for free). With the logged
propensities the estimate stays unbiased if the values are wrong, or if the router saw what the
logs do not (then only the IPW term carries the truth). The learner compares the choice without
per-player pessimism with the pessimistic one; only if the one-sided lower confidence bound of the
improvement is above zero does the module drop the pessimism (``arm_choice_confirmed``).
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np

from rllib_fastq.evaluation.ope import dr_terms


def out_of_bag_values(values: np.ndarray, bootstrap: np.ndarray) -> np.ndarray:
    """``q̂`` [n, K]: per row, the mean over the ensemble members whose bootstrap weight of the
    row's player is 0 (``values`` [n, E, K], ``bootstrap`` [n, E]); the mean of all members for the
    rows every member drew (with 5 members, (1 − e⁻¹)⁵ ≈ 10 % of the players)."""
    values = np.asarray(values, np.float64)
    oob = np.asarray(bootstrap) == 0
    count = oob.sum(1)
    oob_mean = (values * oob[:, :, None]).sum(1) / np.maximum(count, 1)[:, None]
    return np.where(count[:, None] > 0, oob_mean, values.mean(1))


def improvement(q_hat: np.ndarray, arm: np.ndarray, returns: np.ndarray, propensity: np.ndarray,
                choice: np.ndarray, baseline: np.ndarray | None = None, *,
                confidence: float = 0.95) -> dict[str, Any]:
    """The doubly-robust improvement of ``choice`` [n] over ``baseline`` [n] (another choice,
    paired per player) or, with ``baseline=None``, over the logged routing, with its one-sided
    lower confidence bound (normal approximation of the mean of the per-player terms ``Δ_i``):
    ``{"improvement", "lower_bound", "baseline_value", "choice_value", "matched_episodes",
    "players_changed"}``."""
    returns = np.asarray(returns, np.float64)
    choice = np.asarray(choice)
    terms = dr_terms(q_hat, arm, returns, propensity, choice)
    if baseline is None:
        base, changed = returns, choice != np.asarray(arm)
    else:
        base, changed = dr_terms(q_hat, arm, returns, propensity, np.asarray(baseline))["dr"], choice != baseline
    delta = terms["dr"] - base
    stderr = float(delta.std(ddof=1) / np.sqrt(delta.size)) if delta.size > 1 else float("inf")
    z = NormalDist().inv_cdf(confidence)
    return {"improvement": float(delta.mean()), "lower_bound": float(delta.mean() - z * stderr),
            "baseline_value": float(base.mean()), "choice_value": float(terms["dr"].mean()),
            "matched_episodes": int((terms["weights"] > 0).sum()), "players_changed": int(changed.sum())}
