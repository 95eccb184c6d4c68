"""d3rlpy peers (BC, TD3+BC, IQL, CQL, AWAC) trained in their own venv; see README.md here."""

from benchmarks.peers.policy import PeerTrainingError, load_peer_policy, peers_python, train_peer

__all__ = ["PeerTrainingError", "load_peer_policy", "peers_python", "train_peer"]
