"""Counterfactual arm values and the arm choice built on them (docs/algorithm.md §8).

FAST-Q's reference picks the arm by ``argmax_k Q1(b_k(s), π(b_k(s)))``: a critic trained only on
the logging arm's representation, asked about representations it never saw. It ranked arms at
chance. Here each arm ``k`` has its own value ``V_k(s)``, "the return of a player who follows arm
k from state s", regressed on the Monte-Carlo returns of arm k's own logged players, by an
ensemble on a shared input (an MLP's, or per-arm ridge regressions', whichever the logs' own
importance-weighted validation prefers: ``ridge_values``); the arm choice takes the best arm among
those the logged router gives this player some probability, optionally pessimistic over the
ensemble with a fallback to the arm the router would most likely have picked (``arm_choice``).
"""

from rllib_fastq.counterfactual.arm_choice import (
    ARM_CHOICE_TIMES,
    ARM_CHOICES,
    SERVE_ACTIONS,
    resolve_serve_action,
    safe_arm_choice,
)
from rllib_fastq.counterfactual.returns import bootstrap_weights, episode_starts, returns_to_go

__all__ = ["ARM_CHOICES", "ARM_CHOICE_TIMES", "SERVE_ACTIONS", "bootstrap_weights", "episode_starts",
           "resolve_serve_action", "returns_to_go", "safe_arm_choice"]
