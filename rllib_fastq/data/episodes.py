"""RLlib-recorded episodes (``output=..., output_write_episodes=True``) as FAST-Q transitions.

RLlib's recorder writes parquet rows with one column, ``item``: each a msgpack'd
``SingleAgentEpisode.get_state()``. Read with ``config.offline_data(input_read_episodes=True)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.io import _read_one, expand_paths
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.data.validation import validate_transitions

#: The column RLlib's ``output=`` recorder (``output_write_episodes=True``) writes each episode to:
#: msgpack'd ``SingleAgentEpisode.get_state()``.
EPISODE_COLUMN = "item"


def episodes_to_transitions(episodes: Sequence[Any], source: str = "<episodes>") -> Transitions:
    """RLlib ``SingleAgentEpisode`` s (flat Box observations and actions) → :class:`Transitions`.

    Step i of an episode is the row (o_i, a_i, r_i, o_{i+1}); only its last step carries the
    episode's ``terminated``/``truncated``. ``policy_id`` comes from the extra model output of that
    name where the recording module wrote one, else 0 (one logging policy).
    """
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "obs", "new_obs", "actions", "rewards", "terminateds", "truncateds", "eps_id", "t", "policy_id")}
    for eps in episodes:
        n = len(eps)
        if n == 0:
            continue
        obs = np.asarray(eps.get_observations(), np.float32)
        if obs.dtype == object or obs.ndim != 2:
            raise ValueError(f"{source}: episode {eps.id_}: FAST-Q reads recorded episodes with flat Box "
                             f"observations; got observations of shape {obs.shape}.")
        cols["obs"].append(obs[:-1])
        cols["new_obs"].append(obs[1:])
        cols["actions"].append(np.asarray(eps.get_actions(), np.float32).reshape(n, -1))
        cols["rewards"].append(np.asarray(eps.get_rewards(), np.float32).reshape(n))
        last = np.arange(n) == n - 1
        cols["terminateds"].append(last & bool(eps.is_terminated))
        cols["truncateds"].append(last & bool(eps.is_truncated))
        cols["eps_id"].append(np.full(n, str(eps.id_)))
        cols["t"].append(eps.t_started + np.arange(n, dtype=np.int64))
        pid = eps.extra_model_outputs.get(schema.POLICY_ID)
        cols["policy_id"].append(np.zeros(n, np.int64) if pid is None else
                                 np.asarray(eps.get_extra_model_outputs(schema.POLICY_ID), np.int64).reshape(n))
    if not cols["obs"]:
        raise ValueError(f"{source}: no recorded episode with at least one step.")
    arr = {k: np.concatenate(v) for k, v in cols.items()}
    return Transitions(
        **arr,
        meta=schema.DatasetMeta(obs_layout=schema.ObsLayout(static=arr["obs"].shape[1]),
                                num_policies=int(arr["policy_id"].max()) + 1),
        source=source,
    )


def _read_episode_file(path: str, limit: int | None = None) -> Transitions:
    import msgpack
    import msgpack_numpy as mnp
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    table = _read_one(path)
    if EPISODE_COLUMN not in table.column_names:
        raise ValueError(f"{path}: `input_read_episodes=True` expects RLlib's recorded episodes (an "
                         f"'{EPISODE_COLUMN}' column of msgpack'd episodes); found columns {table.column_names}.")
    items = table[EPISODE_COLUMN].to_pylist()[:limit]
    episodes = [SingleAgentEpisode.from_state(msgpack.unpackb(item, object_hook=mnp.decode)) for item in items]
    return episodes_to_transitions(episodes, source=path)


def read_episodes(paths: str | os.PathLike | Sequence[str | os.PathLike], *, limit_per_file: int | None = None,
                  **expected: Any) -> Transitions:
    """RLlib-recorded episodes (``config.offline_data(output=..., output_write_episodes=True)``)
    from parquet/JSON files, directories or URIs, as validated :class:`Transitions`."""
    parts = []
    for f in expand_paths(paths):
        tr = _read_episode_file(f, limit_per_file)
        if expected:
            validate_transitions(tr, **expected)
        parts.append(tr)
    return parts[0] if len(parts) == 1 else Transitions.concat(parts)
