"""Which arm a player should be on: pessimistic, with a fallback to the routed arm.

    lower_k = mean_e V_{e,k}(s) − β · std_e V_{e,k}(s)                 (ensemble lower bound)
    base    = argmax_k ρ_k(s)                                           (the router's likeliest arm)
    k*      = argmax_{k : ρ_k(s) ≥ ρ_min} lower_k
    serve k* if lower_{k*} > mean_base(s), else base                    (SPIBB-style fallback)

``ρ(s)`` is the learnt routing model (the probability that the logs' router sends this player to
each arm). With β > 0, deviating from the routing needs an arm whose *pessimistic* value beats the
routed arm's *expected* value; where the ensemble disagrees the routed arm is served. The default
β is 1, and the learner's paired check (``policy_check``) drops it to 0 where the logs show that
the best supported arm by its mean value chooses better: a fixed β did not carry across arm counts
and overlaps (docs/algorithm.md §8 (m), (n)).
"""

from __future__ import annotations

import torch

#: How the "best" arm is chosen: "safe" (above), "greedy" (argmax of the mean arm value),
#: "critic" (the reference: argmax_k Q1(b_k(s), π(b_k(s)))).
ARM_CHOICES = ("safe", "greedy", "critic")
#: When the "best" arm is chosen (FastQConfig.arm_choice_at): on the player's arrival observation,
#: so a player stays on one arm ("arrival"), or afresh at every step ("every_step", the reference).
#: Why: FastQTorchRLModule.best_arms.
ARM_CHOICE_TIMES = ("arrival", "every_step")
#: The action served for the chosen arm (FastQConfig.serve_action); "auto" resolves per K.
SERVE_ACTIONS = ("auto", "actor", "expert", "supported")


def resolve_serve_action(serve_action: str, num_policies: int) -> str:
    """ "auto": the chosen arm's cloned action ("expert") with several arms; the TD3+BC actor
    ("actor") with one behaviour policy, where there is no arm to choose and the actor is the
    improvement over it (it beat TD3+BC on 8 of 12 D4RL-style files, BENCHMARKS.md)."""
    if serve_action != "auto":
        return serve_action
    return "actor" if num_policies == 1 else "expert"


def safe_arm_choice(values: torch.Tensor, propensity: torch.Tensor, *, pessimism: float,
                    min_propensity: float = 0.0) -> torch.Tensor:
    """The arm to serve per row, ``[B]`` (long).

    ``values`` [B, E, K]: every ensemble member's value of every arm; ``propensity`` [B, K]:
    the routing model's probabilities.
    """
    mean = values.mean(1)
    std = values.std(1, unbiased=False) if values.shape[1] > 1 else torch.zeros_like(mean)
    lower = mean - pessimism * std
    base = propensity.argmax(-1)
    supported = propensity >= min_propensity
    supported[torch.arange(base.shape[0], device=base.device), base] = True
    best = lower.masked_fill(~supported, float("-inf")).argmax(-1)
    rows = torch.arange(best.shape[0], device=best.device)
    return torch.where(lower[rows, best] > mean[rows, base], best, base)
