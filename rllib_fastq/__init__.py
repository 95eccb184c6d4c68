"""rllib-fastq: the FAST-Q offline RL algorithm as a Ray RLlib plugin.

``import rllib_fastq`` registers the algorithm with Tune as ``"FASTQ"`` and the player-platform
simulator as ``"rllib_fastq/PlayerPlatform-v0"`` (with gymnasium, and with Tune's registry so
that RLlib's env runners in other processes find it).
"""

from ray.tune.registry import register_env, register_trainable

from rllib_fastq.envs import ENV_ID, PlayerPlatformEnv
from rllib_fastq.fastq import FastQ, FastQConfig

register_trainable("FASTQ", FastQ)
register_env(ENV_ID, lambda env_config: PlayerPlatformEnv(dict(env_config)))

__all__ = ["FastQ", "FastQConfig"]
__version__ = "0.1.0"
