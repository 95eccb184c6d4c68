"""In-memory batch sampling on the learner's device: per-arm balanced (phase 1) and uniform (phase 2).

Holding the dataset as tensors on the learner removes RLlib's per-row episode conversion
(~1,000 rows/s here) from the hot path: a batch is one gather.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from rllib_fastq.data import schema
from rllib_fastq.torch.fastq_torch_rl_module import BR_NEXT_OBS, BR_OBS, EXPERT_ACTION_PREDS

#: Share of phase-1 rows drawn from episode starts. A player's arm is chosen when the player
#: arrives, so the arm values must rank arms at the first state; uniformly drawn, those rows are
#: one per episode (3 % of the player-platform rows) and the values there were unreliable.
EPISODE_START_SHARE = 0.25
_PHASE1_ONLY = (schema.OBS, schema.NEW_OBS, schema.EXPERT_ACTIONS, schema.EXPERT_ACTIONS_MASK,
                schema.RETURNS_TO_GO, schema.COMPONENT_RETURNS_TO_GO, schema.BOOTSTRAP_WEIGHTS,
                schema.EPISODE_START)

#: What the arm values and the routing model read (InMemorySampler.sample_arm_value_rows).
ARM_VALUE_COLUMNS = (schema.OBS, schema.POLICY_ID, schema.RETURNS_TO_GO, schema.COMPONENT_RETURNS_TO_GO,
                     schema.BOOTSTRAP_WEIGHTS)


class InMemorySampler:
    """Draws training batches (dicts of tensors, RLlib column names) from arrays in memory."""

    def __init__(self, arrays: dict[str, np.ndarray], num_policies: int, *, device: torch.device | str,
                 seed: int = 0):
        self.device = torch.device(device)
        self.columns = {k: torch.as_tensor(np.array(v), device=self.device)
                        for k, v in arrays.items()}
        self.size = int(self.columns[schema.OBS].shape[0])
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        pid = self.columns[schema.POLICY_ID].long()
        # Rows sorted by arm (each arm's episode starts first), with each arm's start and count:
        # a balanced draw is one gather.
        starts = self.columns.get(schema.EPISODE_START)
        first = torch.zeros_like(pid) if starts is None else starts.long()
        self._rows_by_arm = torch.argsort(pid * 2 + (1 - first), stable=True)
        counts = torch.bincount(pid, minlength=num_policies)
        self._arm_counts = counts
        self._arm_starts = torch.cumsum(counts, 0) - counts
        self._arm_episode_starts = torch.bincount(pid[first.bool()], minlength=num_policies)
        self._cache: dict[str, torch.Tensor] | None = None

    @property
    def has_cache(self) -> bool:
        return self._cache is not None

    def _gather(self, idx: torch.Tensor, skip: tuple[str, ...] = ()) -> dict[str, torch.Tensor]:
        # index_select, not v[idx]: advanced indexing is ~6x slower on CPU for these shapes.
        out = {k: v.index_select(0, idx) for k, v in self.columns.items() if k not in skip}
        if self._cache is not None:
            out.update({k: v.index_select(0, idx) for k, v in self._cache.items()})
        return out

    def sample_phase1(self, batch_size: int, arm_probs: np.ndarray) -> dict[str, torch.Tensor]:
        """Arms drawn with ``arm_probs``, then rows uniformly within the drawn arm, except that a
        share ``EPISODE_START_SHARE`` of the rows are the arm's episode starts."""
        return self._gather(self._phase1_rows(batch_size, arm_probs))

    def sample_arm_value_rows(self, batch_size: int, arm_probs: np.ndarray) -> dict[str, torch.Tensor]:
        """Rows drawn as in phase 1, with only the columns the arm values and the routing model
        train on (phase 2 keeps training them beside the critic and the actor)."""
        idx = self._phase1_rows(batch_size, arm_probs)
        return {k: v.index_select(0, idx) for k, v in self.columns.items() if k in ARM_VALUE_COLUMNS}

    def _phase1_rows(self, batch_size: int, arm_probs: np.ndarray) -> torch.Tensor:
        probs = torch.as_tensor(arm_probs, dtype=torch.float32, device=self.device)
        arms = torch.multinomial(probs, batch_size, replacement=True, generator=self.generator)
        u = torch.rand(batch_size, generator=self.generator, device=self.device)
        n_start = self._arm_episode_starts[arms]
        from_start = (torch.rand(batch_size, generator=self.generator, device=self.device)
                      < EPISODE_START_SHARE) & (n_start > 0)
        span = torch.where(from_start, n_start, self._arm_counts[arms])
        offset = (u * span).long().clamp_max(span - 1)
        return self._rows_by_arm[self._arm_starts[arms] + offset]

    def sample_phase2(self, batch_size: int) -> dict[str, torch.Tensor]:
        """Rows uniformly, with the cached representations when built."""
        idx = torch.randint(self.size, (batch_size,), generator=self.generator, device=self.device)
        # With the cache, phase 2 reads representations instead of states and expert columns.
        skip = _PHASE1_ONLY if self._cache is not None else ()
        return self._gather(idx, skip)

    def build_cache(self, representations: Callable, chunk: int) -> None:
        """Store b_k(s) [N, K, br], b_p(s') [N, br] and â_k(s) [N, K, d] for every row.

        Within an episode s' of row i is s of row i + 1, and frozen eval-mode networks map equal
        inputs to equal outputs: b(s') is then copied instead of computed (half the work).
        """
        obs, new_obs = self.columns[schema.OBS], self.columns[schema.NEW_OBS]
        pid = self.columns[schema.POLICY_ID].long()

        def chunked(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            parts = [representations(x[i: i + chunk]) for i in range(0, x.shape[0], chunk)]
            return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])

        b, a_hat = chunked(obs)
        next_is_row = torch.zeros(self.size, dtype=torch.bool, device=self.device)
        next_is_row[:-1] = (new_obs[:-1] == obs[1:]).all(-1)
        b_next = b.new_empty(self.size, b.shape[-1])
        same = next_is_row.nonzero().squeeze(-1)
        b_next[same] = b[same + 1, pid[same]]
        other = (~next_is_row).nonzero().squeeze(-1)
        if other.numel():
            b_other, _ = chunked(new_obs[other])
            b_next[other] = b_other[torch.arange(other.numel(), device=self.device), pid[other]]
        self._cache = {BR_OBS: b, BR_NEXT_OBS: b_next, EXPERT_ACTION_PREDS: a_hat}

    def cache_per_row(self, name: str, fn: Callable, chunk: int) -> None:
        """Add ``fn(obs)`` of every row to the cache under ``name`` (after ``build_cache``)."""
        obs = self.columns[schema.OBS]
        self._cache[name] = torch.cat([fn(obs[i: i + chunk]) for i in range(0, self.size, chunk)])

    def drop_cache(self) -> None:
        self._cache = None
