"""The action distribution of FAST-Q's inference: deterministic, as TD3's.

RLlib's inference recipe (``module.get_inference_action_dist_cls().from_logits(
out[Columns.ACTION_DIST_INPUTS]).to_deterministic().sample()``) needs ``from_logits`` and
``to_deterministic``; RLlib's own ``TorchDeterministic`` has neither in Ray 2.60.
"""

from __future__ import annotations

from typing import Any

from ray.rllib.core.distribution.torch.torch_distribution import TorchDeterministic


class FastQDeterministic(TorchDeterministic):
    """A point mass at the action: ``action_dist_inputs`` are the actions themselves."""

    @classmethod
    def from_logits(cls, logits: Any, **kwargs: Any) -> FastQDeterministic:
        return cls(loc=logits)

    def to_deterministic(self) -> FastQDeterministic:
        return self
