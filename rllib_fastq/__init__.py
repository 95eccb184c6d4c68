"""rllib-fastq: the FAST-Q offline RL algorithm as a Ray RLlib plugin.

``import rllib_fastq`` registers the algorithm with Tune as ``"FASTQ"`` and the player-platform
simulator with gymnasium as ``"rllib_fastq/PlayerPlatform-v0"``.
"""

from ray.tune.registry import register_trainable

from rllib_fastq.fastq import FastQ, FastQConfig

register_trainable("FASTQ", FastQ)

try:  # the simulator registers itself on import
    import rllib_fastq.envs  # noqa: F401
except ImportError:  # pragma: no cover - only while the envs package is being written
    pass

__all__ = ["FastQ", "FastQConfig"]
__version__ = "0.1.0"
