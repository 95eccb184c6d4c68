"""Dataset factories: one module per dataset family (``fastq data <name>``).

- :mod:`rllib_fastq.datasets.player_platform`: logged multi-arm data from the player platform.
"""
