"""Dataset factories: one module per dataset family (``fastq data <name>``).

- :mod:`rllib_fastq.datasets.player_platform`: logged multi-arm data from the player platform.
- :mod:`rllib_fastq.datasets.mujoco`: D4RL-style MuJoCo datasets, from behaviour policies trained
  by :mod:`rllib_fastq.datasets.sac` (which is told the dataset's rules, not importing them).
- :mod:`rllib_fastq.datasets.cards`: the dataset card (versions, checksums, card.json + README.md).
"""
