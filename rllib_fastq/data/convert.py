"""Converters into and out of our columnar format: pandas logs, Minari datasets, JSON ↔ parquet.

Everything produced here goes through :func:`rllib_fastq.data.validation.validate_transitions`,
so a conversion that would yield a dataset the algorithm rejects fails here, naming the column.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.io import read_transitions, write_transitions
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.data.validation import validate_transitions

# FAST-Q columns that ride along in Minari's per-step ``infos`` (Minari has no place for them).
_MINARI_INFO_COLUMNS = (schema.POLICY_ID, schema.REWARD_COMPONENTS, schema.EXPERT_ACTIONS,
                        schema.EXPERT_ACTIONS_MASK, schema.POLICY_PROPENSITY)
_MINARI_META_KEY = "rllib_fastq"


# -- pandas -----------------------------------------------------------------------------------
def _check_finite(df: Any, cols: Sequence[str]) -> None:
    import pandas as pd

    for c in cols:
        col = df[c]
        if pd.api.types.is_numeric_dtype(col) or pd.api.types.is_bool_dtype(col):
            # na_value: nullable (extension) dtypes hold pd.NA, which isfinite cannot take.
            bad = ~np.isfinite(col.to_numpy(dtype=np.float64, na_value=np.nan))
        else:
            bad = col.isna().to_numpy()
        if bad.any():
            raise ValueError(f"column '{c}': {int(bad.sum())} NaN/inf/missing value(s) "
                             f"(first at row {int(np.flatnonzero(bad)[0])}); fill or drop them.")


def from_dataframe(
    df: Any,
    *,
    user_col: str,
    time_col: str,
    feature_cols: Sequence[str],
    action_cols: Sequence[str],
    reward_component_cols: Sequence[str] | None = None,
    reward_col: str | None = None,
    arm_col: str | None = None,
    reward_weights: Sequence[float] | None = None,
    terminal_col: str | None = None,
) -> Transitions:
    """Tabular logs (one row per user-step) → :class:`Transitions`, one episode per user.

    Rows are sorted by ``(user, time)``; ``new_obs`` is the next row of the same user. The last
    step of each user is terminated, or truncated where ``terminal_col`` is False there (then
    its ``new_obs`` is a copy of ``obs``: no next row exists, and a truncation bootstraps from
    it, so prefer logs that end on a real terminal). The reward is ``reward_col`` when given,
    else ``reward_weights · reward_component_cols``. ``arm_col`` holds integer arm ids, or
    labels that are numbered in sorted order (kept in ``meta.extra["arm_names"]``).

    Raises ``ValueError`` naming the column for missing columns, NaN/inf, duplicate timestamps,
    gaps in integer time steps, and a terminal flag before a user's last step.
    """
    import pandas as pd

    feature_cols, action_cols = list(feature_cols), list(action_cols)
    comp_cols = list(reward_component_cols or [])
    if not feature_cols or not action_cols:
        raise ValueError("feature_cols and action_cols: name at least one column each.")
    if reward_col is None and not comp_cols:
        raise ValueError("reward: give reward_col, or reward_component_cols with reward_weights.")
    if reward_col is None and reward_weights is None:
        raise ValueError(f"reward_weights: needed to combine {comp_cols} into a scalar reward "
                         "(or give reward_col).")
    if reward_weights is not None and comp_cols and len(reward_weights) != len(comp_cols):
        raise ValueError(f"reward_weights: {len(reward_weights)} weights for {len(comp_cols)} "
                         f"reward_component_cols {comp_cols}.")
    named = [user_col, time_col, *feature_cols, *action_cols, *comp_cols,
             *(c for c in (reward_col, arm_col, terminal_col) if c is not None)]
    missing = [c for c in named if c not in df.columns]
    if missing:
        raise ValueError(f"column '{missing[0]}' is not in the DataFrame (missing: {missing}; "
                         f"found: {list(df.columns)}).")
    _check_finite(df, [c for c in named if c != user_col])
    if df[user_col].isna().any():
        raise ValueError(f"column '{user_col}': {int(df[user_col].isna().sum())} missing user id(s).")
    if len(df) == 0:
        raise ValueError("the DataFrame is empty (0 rows).")

    df = df.sort_values([user_col, time_col], kind="stable").reset_index(drop=True)
    users = df[user_col].to_numpy()
    times = df[time_col].to_numpy()
    same_user_next = np.zeros(len(df), bool)
    same_user_next[:-1] = users[1:] == users[:-1]
    if (same_user_next[:-1] & (times[1:] == times[:-1])).any():
        i = int(np.flatnonzero(same_user_next[:-1] & (times[1:] == times[:-1]))[0])
        raise ValueError(f"column '{time_col}': duplicate timestamp {times[i]} for user '{users[i]}'; "
                         "each user-step needs its own time.")
    if pd.api.types.is_integer_dtype(df[time_col]):
        gap = same_user_next[:-1] & (times[1:] - times[:-1] != 1)
        if gap.any():
            i = int(np.flatnonzero(gap)[0])
            raise ValueError(f"column '{time_col}': gap for user '{users[i]}': step {times[i]} is followed "
                             f"by {times[i + 1]} (missing step(s) in between).")
    last = ~same_user_next
    if terminal_col is not None:
        flags = df[terminal_col].to_numpy().astype(bool)
        if (flags & ~last).any():
            i = int(np.flatnonzero(flags & ~last)[0])
            raise ValueError(f"column '{terminal_col}': user '{users[i]}' is terminal at {time_col}="
                             f"{times[i]} but has later rows.")
        terminateds, truncateds = last & flags, last & ~flags
    else:
        terminateds, truncateds = last, np.zeros(len(df), bool)

    obs = df[feature_cols].to_numpy(np.float32)
    new_obs = obs.copy()
    new_obs[same_user_next] = obs[np.flatnonzero(same_user_next) + 1]
    comps = df[comp_cols].to_numpy(np.float32) if comp_cols else None
    if reward_col is not None:
        rewards = df[reward_col].to_numpy(np.float32)
    else:
        rewards = (comps.astype(np.float64) @ np.asarray(reward_weights, np.float64)).astype(np.float32)
    extra: dict[str, Any] = {"feature_cols": feature_cols, "action_cols": action_cols}
    if arm_col is None:
        policy_id = np.zeros(len(df), np.int64)
    elif pd.api.types.is_integer_dtype(df[arm_col]):
        policy_id = df[arm_col].to_numpy(np.int64)
    else:
        names, policy_id = np.unique(df[arm_col].astype(str).to_numpy(), return_inverse=True)
        extra["arm_names"] = names.tolist()
    _, eps_index = np.unique(users, return_inverse=True)
    starts = np.flatnonzero(np.r_[True, ~same_user_next[:-1]])
    t = np.arange(len(df)) - np.repeat(starts, np.diff(np.r_[starts, len(df)]))
    tr = Transitions(
        obs=obs, actions=df[action_cols].to_numpy(np.float32), rewards=rewards, new_obs=new_obs,
        terminateds=terminateds, truncateds=truncateds, eps_id=users.astype(str), t=t.astype(np.int64),
        policy_id=policy_id.astype(np.int64), reward_components=comps,
        meta=schema.DatasetMeta(
            obs_layout=schema.ObsLayout(static=len(feature_cols)),
            num_policies=int(policy_id.max()) + 1 if len(policy_id) else 1,
            reward_component_names=tuple(comp_cols) or None, extra=extra),
        source="<DataFrame>",
    )
    return validate_transitions(tr)


# -- Minari -----------------------------------------------------------------------------------
def minari_to_parquet(dataset_or_id: Any, out: str | os.PathLike, *, overwrite: bool = False) -> str:
    """A local Minari dataset (object or id) → one parquet (or ``.jsonl``) file; returns its path.

    Box observations are stored as they are; ``Dict(temporal, static)`` ones are flattened with
    :func:`~rllib_fastq.data.schema.flatten_obs`. ``ref_min_score``/``ref_max_score`` go to
    ``meta.extra``; FAST-Q columns written by :func:`parquet_to_minari` come back from ``infos``.
    """
    import minari

    ds = minari.load_dataset(dataset_or_id) if isinstance(dataset_or_id, str) else dataset_or_id
    md = dict(ds.storage.metadata)
    saved = schema.DatasetMeta.from_json(md.get(_MINARI_META_KEY))
    layout = saved.obs_layout or schema.ObsLayout.from_space(ds.observation_space)
    cols: dict[str, list] = {c: [] for c in schema.ALL_COLUMNS}
    for ep in ds.iterate_episodes():
        n = len(ep.rewards)
        if n == 0:
            continue
        o = schema.flatten_obs(ep.observations).reshape(n + 1, -1)
        cols[schema.OBS].append(o[:-1])
        cols[schema.NEW_OBS].append(o[1:])
        cols[schema.ACTIONS].append(np.asarray(ep.actions, np.float32).reshape(n, -1))
        cols[schema.REWARDS].append(np.asarray(ep.rewards, np.float32))
        cols[schema.TERMINATEDS].append(np.asarray(ep.terminations, bool))
        cols[schema.TRUNCATEDS].append(np.asarray(ep.truncations, bool))
        cols[schema.EPS_ID].append(np.full(n, str(ep.id)))
        cols[schema.T].append(np.arange(n, dtype=np.int64))
        infos = ep.infos or {}
        for c in _MINARI_INFO_COLUMNS:
            if c in infos:
                cols[c].append(np.asarray(infos[c])[:n])
    if not cols[schema.REWARDS]:
        raise ValueError(f"Minari dataset {md.get('dataset_id')}: no steps to convert.")
    kw = {c: np.concatenate(v) for c, v in cols.items() if v and len(v) == len(cols[schema.REWARDS])}
    n_all = kw[schema.REWARDS].shape[0]
    kw[schema.POLICY_ID] = kw.get(schema.POLICY_ID, np.zeros(n_all, np.int64)).reshape(n_all).astype(np.int64)
    extra = dict(saved.extra)
    extra["minari_dataset_id"] = md.get("dataset_id")
    for key in ("ref_min_score", "ref_max_score"):
        if md.get(key) is not None:
            extra[key] = float(md[key])
    meta = schema.DatasetMeta(
        obs_layout=layout, num_policies=saved.num_policies or int(kw[schema.POLICY_ID].max()) + 1,
        reward_component_names=saved.reward_component_names, extra=extra)
    tr = validate_transitions(Transitions(**kw, meta=meta, source=f"minari:{md.get('dataset_id')}"))
    return write_transitions(tr, out, overwrite=overwrite)


def parquet_to_minari(path: str | os.PathLike | Sequence[str], dataset_id: str, *,
                      author: str | None = None, description: str | None = None,
                      ref_min_score: float | None = None, ref_max_score: float | None = None,
                      data_format: str = "arrow") -> Any:
    """Our parquet/JSON file(s) → a new local Minari dataset (``MINARI_DATASETS_PATH``).

    Each episode must be contiguous (``new_obs[i] == obs[i + 1]``), since Minari stores the
    ``n + 1`` observations of an episode. FAST-Q columns and our metadata are kept (``infos``
    and the dataset metadata) so that :func:`minari_to_parquet` restores them. Reference
    scores default to the file's ``meta.extra`` ones. ``data_format="arrow"`` needs no h5py.
    """
    import warnings

    import gymnasium as gym
    import minari
    from minari.data_collector import EpisodeBuffer

    tr = read_transitions(path)
    order = np.lexsort((tr.t, tr.eps_id))
    tr = tr.take(order)
    bounds = np.flatnonzero(np.r_[True, tr.eps_id[1:] != tr.eps_id[:-1], True])
    buffers = []
    for e, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        if not np.array_equal(tr.new_obs[a:b - 1], tr.obs[a + 1:b]):
            raise ValueError(f"{tr.source}: column '{schema.NEW_OBS}': episode '{tr.eps_id[a]}' is not "
                             "contiguous (new_obs[i] != obs[i + 1]); Minari needs whole episodes.")
        infos = {}
        for c in _MINARI_INFO_COLUMNS:
            v = getattr(tr, c)
            if v is not None:
                v = v[a:b].reshape(b - a, *((1,) if v.ndim == 1 else v.shape[1:]))
                # Minari aligns infos with the n + 1 observations; the last repeats the final step.
                infos[c] = np.concatenate([v, v[-1:]])
        buffers.append(EpisodeBuffer(
            id=e, observations=np.concatenate([tr.obs[a:b], tr.new_obs[b - 1:b]]),
            actions=tr.actions[a:b], rewards=tr.rewards[a:b].astype(np.float64).tolist(),
            terminations=tr.terminateds[a:b].tolist(), truncations=tr.truncateds[a:b].tolist(),
            infos=infos))
    extra = tr.meta.extra
    ref_min = ref_min_score if ref_min_score is not None else extra.get("ref_min_score")
    ref_max = ref_max_score if ref_max_score is not None else extra.get("ref_max_score")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # Minari nags about author/e-mail/env
        ds = minari.create_dataset_from_buffers(
            dataset_id, buffers,
            observation_space=gym.spaces.Box(-np.inf, np.inf, tr.obs.shape[1:], np.float32),
            action_space=gym.spaces.Box(-np.inf, np.inf, tr.actions.shape[1:], np.float32),
            author=author, description=description, data_format=data_format)
    # Minari stores reference scores only when it can compute them from an env: set them here.
    update = {_MINARI_META_KEY: tr.meta.to_json().decode()}
    if ref_min is not None:
        update["ref_min_score"] = float(ref_min)
    if ref_max is not None:
        update["ref_max_score"] = float(ref_max)
    ds.storage.update_metadata(update)
    return minari.load_dataset(dataset_id)


# -- JSON <-> parquet -------------------------------------------------------------------------
def convert(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Re-write ``src`` (parquet or JSON lines) as ``dst``, format by suffix; all columns, dtypes
    and metadata are kept (``.json``/``.jsonl`` → JSON lines, anything else → parquet)."""
    tr = read_transitions(src)
    return write_transitions(tr, dst, overwrite=overwrite)
