"""rllib-fastq: the FAST-Q offline RL algorithm as a Ray RLlib plugin."""
