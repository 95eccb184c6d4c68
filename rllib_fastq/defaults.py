"""The one home of the defaults that shape FAST-Q's networks and its inference.

``FastQConfig`` takes its fields' defaults from here (documented on each attribute there), and the
RLModule falls back to them for keys its ``model_config`` lacks (a module built from its own spec).
"""

from __future__ import annotations

from typing import Any

MODEL_DEFAULTS: dict[str, Any] = {
    "num_policies": 1,
    "trunk_hiddens": [],
    "lstm_hidden": 64,
    "static_hidden": 32,
    "lstm_dropout": 0.0,
    "expert_hiddens": [256, 128],
    "br_dim": None,  # None: resolved from the observation space
    "adversary_hiddens": [512, 256],
    "actor_hiddens": [256, 256],
    "critic_hiddens": [256, 256],
    "grl_lambda": 0.0,  # reference 0.1 (FastQConfig.reference()); why 0: docs/algorithm.md §8
    "default_policy": "best",
    "bc_through_balancer": None,
    "arm_choice": "safe",
    "arm_value_hiddens": [128, 128],
    "arm_value_ensemble": 5,
    "arm_value_decomposition": False,
    "critic_decomposition": "bellman",  # reference "softmax" (FastQConfig.critic_decomposition)
    "arm_choice_pessimism": 1.0,  # until the logs confirm β = 0 (arm_choice_check; docs §8 (n))
    "arm_choice_min_propensity": 0.002,
    "arm_choice_at": "arrival",
    "serve_action": "auto",  # "expert" with several arms, "actor" with one
}
#: Derived by FastQConfig from the reward settings (not fields of their own).
DERIVED_MODEL_DEFAULTS: dict[str, Any] = {"num_decomposed": 0, "decomposed_names": [],
                                          # every reward component's weight and name ([] = none)
                                          "reward_weights": [], "component_names": [],
                                          # indices of the decomposed components (None: the first
                                          # num_decomposed, for configs from before the key)
                                          "decomposed_indices": None}
