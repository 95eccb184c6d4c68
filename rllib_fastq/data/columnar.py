"""Columnar streaming ingest: a Ray Data batch of FAST-Q rows → the learner's training batch.

Why this exists: with ``in_memory_data=False`` RLlib's stock ``OfflinePreLearner`` builds one
``SingleAgentEpisode`` per row and runs the learner connector pipeline over them (~7.6k rows/s
on one CPU here), while the learner only needs the columns back, unchanged. FAST-Q's rows are
already transitions (``obs``, ``actions``, ``rewards``, ``new_obs``, ``terminateds`` + its own
columns, :mod:`rllib_fastq.data.schema`), so :class:`ColumnarPreLearner` maps a whole batch at
once: each column is one vectorised conversion (an Arrow list column is a zero-copy reshape),
no per-row Python. It emits exactly the columns, dtypes and shapes the stock path emits for our
schema (``tests/test_streaming_columnar.py`` checks it), so the learner trains identically.

``FastQConfig.validate`` makes it the default of the streaming path (:func:`configure_streaming`)
unless the user set their own ``prelearner_class``, reads RLlib's recorded episodes
(``input_read_episodes=True``) or added a custom learner connector (which only the stock path runs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.offline.offline_prelearner import OfflinePreLearner
from ray.rllib.utils import flatten_dict

from rllib_fastq import _rllib_compat as compat
from rllib_fastq.data import schema
from rllib_fastq.data.io import _list_column_to_array

#: Columns of a training batch, with their dtype; the stock path emits the same for our schema.
#: ``truncateds`` is filled with False when absent; the optional ones are emitted when present.
REQUIRED = {schema.OBS: np.float32, schema.NEW_OBS: np.float32, schema.ACTIONS: np.float32,
            schema.REWARDS: np.float32, schema.TERMINATEDS: np.bool_}
OPTIONAL = {schema.TRUNCATEDS: np.bool_, schema.POLICY_ID: np.int64, schema.REWARD_COMPONENTS: np.float32,
            schema.EXPERT_ACTIONS: np.float32, schema.EXPERT_ACTIONS_MASK: np.bool_,
            schema.POLICY_PROPENSITY: np.float32}
#: Columns with one value per row ([B]); the others are [B, width].
_SCALAR = {schema.REWARDS, schema.TERMINATEDS, schema.TRUNCATEDS, schema.POLICY_ID, schema.POLICY_PROPENSITY}
#: Ray Data batch format the columnar mapping reads fastest (Arrow list columns: zero-copy).
BATCH_FORMAT = "pyarrow"


def _column_names(batch: Any) -> list[str]:
    if isinstance(batch, pa.Table):
        return list(batch.column_names)
    if isinstance(batch, Mapping):
        return list(batch.keys())
    return [str(c) for c in batch.columns]  # pandas.DataFrame


def _dict_obs(values: Any, name: str, n: int, layout: schema.ObsLayout | None) -> np.ndarray:
    """A column of ``{"temporal", "static"}`` observations, flattened by :meth:`ObsLayout.flatten`."""
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        struct = values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values
        parts = {f: _list_column_to_array(pa.chunked_array([struct.field(f)]), f"{name}.{f}", "batch")
                 for f in ("temporal", "static")}
    else:  # numpy/pandas: an object array of dicts (only Arrow batches are fully vectorised)
        parts = {f: np.stack([np.asarray(v[f], np.float32).reshape(-1) for v in values])
                 for f in ("temporal", "static")}
    temporal = parts["temporal"].reshape(n, -1)
    t, f = layout.temporal if layout is not None and layout.temporal else (1, temporal.shape[1])
    return schema.ObsLayout.flatten({"temporal": temporal.reshape(n, t, f), "static": parts["static"]})


def _to_array(values: Any, name: str, n: int, layout: schema.ObsLayout | None) -> np.ndarray:
    """One batch column (Arrow, pandas or numpy) as a numpy array [B] or [B, width]."""
    if isinstance(values, (pa.ChunkedArray, pa.Array)):
        if pa.types.is_struct(values.type):
            return _dict_obs(values, name, n, layout)
        arr = _list_column_to_array(values if isinstance(values, pa.ChunkedArray) else pa.chunked_array([values]),
                                    name, "batch")
    else:
        arr = np.asarray(getattr(values, "to_numpy", lambda: values)())
        if arr.dtype == object and n:
            if isinstance(arr[0], Mapping):
                return _dict_obs(arr, name, n, layout)
            arr = np.stack([np.asarray(v).reshape(-1) for v in arr])  # Ray Data's numpy lists
    if name in _SCALAR:
        if arr.ndim > 1 and arr.shape[1:] != (1,) * (arr.ndim - 1):
            raise ValueError(f"column '{name}': expected one value per row, got shape {arr.shape[1:]} per row.")
        return arr.reshape(n)
    return arr.reshape(n, -1)


class ColumnarPreLearner(OfflinePreLearner):
    """RLlib ``OfflinePreLearner`` for FAST-Q's columnar rows: one vectorised pass per batch.

    Reads Arrow (``batch_format="pyarrow"``, the fastest), pandas or numpy batches of the schema
    of :mod:`rllib_fastq.data.schema` and returns ``{"default_policy/<column>": array}`` as the
    stock class does, without building episodes, the RLModule or the learner connector.
    A missing or misshapen column raises ``ValueError`` naming it. RLlib's recorded episodes
    (``input_read_episodes=True``) go through the stock class.
    """

    def __init__(self, *, config: Any, spaces: tuple[Any, Any] | None = None,
                 module_state: dict[str, Any] | None = None, **kwargs: Any):
        self._stock = bool(config.input_read_episodes)
        if self._stock:
            super().__init__(config=config, spaces=spaces, module_state=module_state, **kwargs)
            return
        self.config = config
        self.observation_space, self.action_space = spaces or (config.observation_space, config.action_space)
        self.layout = None if self.observation_space is None else schema.ObsLayout.from_space(self.observation_space)
        self.action_dim = None if self.action_space is None else int(np.prod(self.action_space.shape))
        self.zero_next_obs = bool(config.ignore_final_observation)
        self.needs_components = getattr(config, "reward_weights", None) is not None

    def __call__(self, batch: Any) -> dict[str, np.ndarray]:
        if self._stock:
            return super().__call__(batch)
        return flatten_dict({DEFAULT_MODULE_ID: self.map_columns(batch)})

    def map_columns(self, batch: Any) -> dict[str, np.ndarray]:
        """The training columns of one Ray Data batch (unprefixed), validated."""
        names = set(_column_names(batch))
        required = dict(REQUIRED)
        if self.needs_components:
            required[schema.REWARD_COMPONENTS] = np.float32
        missing = [c for c in required if c not in names]
        if missing:
            raise ValueError(
                f"streamed batch: missing column(s) {missing}; FAST-Q's streaming path needs "
                f"{list(required)} (found {sorted(names)}). See rllib_fastq.data.schema.")
        n = len(batch[schema.OBS])
        out: dict[str, np.ndarray] = {}
        for name, dtype in {**required, **OPTIONAL}.items():
            if name in names:
                out[name] = _to_array(batch[name], name, n, self.layout).astype(dtype, copy=False)
        out.setdefault(schema.TRUNCATEDS, np.zeros(n, np.bool_))
        self._check_widths(out)
        if self.zero_next_obs:  # RLlib's `ignore_final_observation`, as the stock path applies it
            out[schema.NEW_OBS] = np.zeros_like(out[schema.NEW_OBS])
        return out

    def _check_widths(self, cols: dict[str, np.ndarray]) -> None:
        expected = {}
        if self.layout is not None:
            expected[schema.OBS] = expected[schema.NEW_OBS] = self.layout.flat_dim
        if self.action_dim is not None:
            expected[schema.ACTIONS] = self.action_dim
        k = getattr(self.config, "num_policies", None)
        if k is not None:
            expected[schema.EXPERT_ACTIONS_MASK] = k
            if self.action_dim is not None:
                expected[schema.EXPERT_ACTIONS] = k * self.action_dim
        for name, width in expected.items():
            if name in cols and cols[name].shape[1] != width:
                raise ValueError(f"streamed batch: column '{name}' has width {cols[name].shape[1]}, "
                                 f"expected {width}.")


def configure_streaming(config: Any) -> None:
    """Make :class:`ColumnarPreLearner` the streaming path's pre-learner, reading Arrow batches.

    Only when the user set no ``prelearner_class``, does not read RLlib's recorded episodes and
    added no custom learner connector (the columnar path runs no connector); a user's own
    ``map_batches_kwargs["batch_format"]`` is kept.
    """
    if (config.prelearner_class is not None or config.input_read_episodes
            or compat.custom_learner_connector(config) is not None):
        return
    config.prelearner_class = ColumnarPreLearner
    config.map_batches_kwargs = {"batch_format": BATCH_FORMAT, **config.map_batches_kwargs}
