"""In-memory transitions: the columnar arrays every reader produces and every writer takes."""

from __future__ import annotations

import dataclasses

import numpy as np

from rllib_fastq.data import schema


@dataclasses.dataclass
class Transitions:
    """A dataset as numpy arrays, one row per transition (shapes as in docs/algorithm.md §2).

    ``expert_actions`` is ``[N, K, d_a]`` and ``expert_actions_mask`` ``[N, K]`` when present.
    """

    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    new_obs: np.ndarray
    terminateds: np.ndarray
    truncateds: np.ndarray
    eps_id: np.ndarray
    t: np.ndarray
    policy_id: np.ndarray
    reward_components: np.ndarray | None = None
    expert_actions: np.ndarray | None = None
    expert_actions_mask: np.ndarray | None = None
    policy_propensity: np.ndarray | None = None
    meta: schema.DatasetMeta = dataclasses.field(default_factory=schema.DatasetMeta)
    source: str = "<memory>"

    def __len__(self) -> int:
        return int(self.obs.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The present columns by their schema names."""
        out = {}
        for name in schema.ALL_COLUMNS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out

    def take(self, idx: np.ndarray) -> Transitions:
        """The rows ``idx`` (a copy), keeping metadata."""
        kw = {k: v[idx] for k, v in self.columns().items()}
        return Transitions(**kw, meta=self.meta, source=self.source)

    @classmethod
    def concat(cls, parts: list[Transitions]) -> Transitions:
        if not parts:
            raise ValueError("input_: no transitions to concatenate (empty list of datasets).")
        first = parts[0]
        kw = {}
        for name in first.columns():
            if any(getattr(p, name) is None for p in parts):
                missing = [p.source for p in parts if getattr(p, name) is None]
                raise ValueError(
                    f"column '{name}': present in {first.source} but missing in {missing}; "
                    "all files of one dataset need the same columns."
                )
            kw[name] = np.concatenate([getattr(p, name) for p in parts])
        return cls(**kw, meta=first.meta, source=",".join(p.source for p in parts))

    @property
    def num_reward_components(self) -> int | None:
        rc = self.reward_components
        return None if rc is None else int(rc.shape[1])
