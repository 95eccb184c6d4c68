"""Simulators: the multi-policy player platform and its logging arms.

Importing this package registers ``rllib_fastq/PlayerPlatform-v0`` with gymnasium. In a fresh
process that has not imported it (e.g. a Ray worker), ``gym.make`` can import it on the way:
``gym.make("rllib_fastq.envs:rllib_fastq/PlayerPlatform-v0", **env_config)``.
"""

from __future__ import annotations

import gymnasium as gym

from rllib_fastq.envs.arms import (
    ARM_NAMES,
    ArmPolicy,
    SegmentOraclePolicy,
    arm_actions,
    per_player_policy,
)
from rllib_fastq.envs.evaluate import evaluate_policy
from rllib_fastq.envs.player_platform import (
    REWARD_COMPONENT_NAMES,
    STATIC_FEATURES,
    TEMPORAL_FEATURES,
    PlayerPlatformConfig,
    PlayerPlatformEnv,
    as_dict_obs,
    unflatten_obs,
)
from rllib_fastq.envs.routing import ROUTINGS, Router, RoutingPolicy

ENV_ID = "rllib_fastq/PlayerPlatform-v0"

# Importing twice (or reloading) must not warn or fail: register only once.
if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point="rllib_fastq.envs.player_platform:PlayerPlatformEnv")

__all__ = [
    "ARM_NAMES", "ENV_ID", "REWARD_COMPONENT_NAMES", "ROUTINGS", "STATIC_FEATURES", "TEMPORAL_FEATURES",
    "Router", "RoutingPolicy",
    "ArmPolicy", "PlayerPlatformConfig", "PlayerPlatformEnv", "SegmentOraclePolicy", "arm_actions",
    "as_dict_obs", "evaluate_policy", "per_player_policy", "unflatten_obs",
]
