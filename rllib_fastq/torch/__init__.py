"""Torch implementations: FastQTorchRLModule and FastQTorchLearner."""
