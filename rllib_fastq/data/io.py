"""Read and write transitions as parquet (default) or JSON lines, in RLlib's columnar format.

Every reader validates what it reads (:mod:`rllib_fastq.data.validation`, which reads nothing
itself), so a bad file fails here, before training, with the file, the column, what was expected
and what was found. :func:`validate_dataset` checks a path, a table or transitions against a config.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pa_json
import pyarrow.parquet as pq

from rllib_fastq.data import schema
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.data.validation import expected_shapes, validate_transitions

_JSON_SUFFIXES = (".json", ".jsonl")
# JSON lines has no place for file metadata: the DatasetMeta goes to a sidecar file next to it,
# named so that directory expansion (here and in Ray Data) never takes it for data.
_JSON_META_SUFFIX = ".meta"


def _uri(p: str) -> tuple[Any, str, str]:
    """``(fs, path, prefix)`` for a path or URI: fs None for local paths (plain, ``local://`` --
    Ray's "on this node" -- or ``file://``), else the fsspec filesystem of the URI's scheme
    (``memory://``, and ``s3://``/``gs://``/... where s3fs/gcsfs are installed); ``prefix``
    re-forms a URI from a path found on it."""
    for prefix in ("local://", "file://"):
        if p.startswith(prefix):
            return None, p[len(prefix):], prefix
    if "://" not in p:
        return None, p, ""
    import fsspec

    fs, path = fsspec.core.url_to_fs(p)
    return fs, path, p.split("://", 1)[0] + "://"


def _is_data_file(name: str) -> bool:
    return name.endswith((".parquet", *_JSON_SUFFIXES))


def _expand_remote(fs: Any, path: str, prefix: str, given: str) -> list[str]:
    norm = lambda f: prefix + (f if prefix != "memory://" else f.lstrip("/"))  # noqa: E731
    if fs.isdir(path):
        found = sorted(f for f in fs.find(path) if _is_data_file(f))
        if not found:
            raise FileNotFoundError(f"input_: directory {given} holds no .parquet or .json files.")
        return [norm(f) for f in found]
    if any(c in path for c in "*?["):
        found = sorted(fs.glob(path))
        if not found:
            raise FileNotFoundError(f"input_: pattern {given} matches no file.")
        return [norm(f) for f in found]
    if fs.isfile(path):
        return [given]
    raise FileNotFoundError(f"input_: {given} does not exist (expected a parquet/JSON file or a directory).")


def expand_paths(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Files named by ``paths``: files, directories (their parquet/JSON files), or globs; local
    paths, ``local://``/``file://`` URIs, or any fsspec URI (``memory://``; ``s3://``/``gs://``
    with s3fs/gcsfs installed). URIs stay URIs (Ray Data reads them as given)."""
    if isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    files: list[str] = []
    for given in map(str, paths):
        fs, p, prefix = _uri(given)
        if fs is not None:
            files.extend(_expand_remote(fs, p, prefix, given))
        elif os.path.isdir(p):
            found = sorted(
                f for f in glob.glob(os.path.join(p, "**", "*"), recursive=True) if _is_data_file(f)
            )
            if not found:
                raise FileNotFoundError(f"input_: directory {given} holds no .parquet or .json files.")
            files.extend(prefix + f for f in found)
        elif any(c in p for c in "*?["):
            found = sorted(glob.glob(p))
            if not found:
                raise FileNotFoundError(f"input_: pattern {given} matches no file.")
            files.extend(prefix + f for f in found)
        elif os.path.isfile(p):
            files.append(given)
        else:
            raise FileNotFoundError(
                f"input_: {given} does not exist (expected a parquet/JSON file or a directory).")
    return files


def open_input(path: str) -> Any:
    """A binary file object for a local path or any URI :func:`expand_paths` accepts."""
    fs, p, _ = _uri(path)
    return open(p, "rb") if fs is None else fs.open(p, "rb")


def _exists(path: str) -> bool:
    fs, p, _ = _uri(path)
    return os.path.isfile(p) if fs is None else fs.isfile(p)


def parquet_file(path: str) -> pq.ParquetFile:
    """``pyarrow.parquet.ParquetFile`` of a local path or URI."""
    return pq.ParquetFile(open_input(path))


def _list_column_to_array(col: pa.ChunkedArray, name: str, source: str) -> np.ndarray:
    """A list<number> column as a 2-D array; a scalar column as a 1-D array."""
    col = col.combine_chunks()
    t = col.type
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        if col.null_count:
            raise ValueError(f"{source}: column '{name}' has {col.null_count} null rows; fill or drop them.")
        inner = col.flatten()
        if pa.types.is_list(inner.type) or pa.types.is_fixed_size_list(inner.type):
            inner = inner.flatten()  # nested lists, e.g. expert_actions as [K][d_a]
        n = len(col)
        values = inner.to_numpy(zero_copy_only=False)
        if n == 0:
            return values.reshape(0, 0)
        if values.size % n:
            lengths = np.unique(pa.compute.list_value_length(col).to_numpy(zero_copy_only=False))
            raise ValueError(
                f"{source}: column '{name}' has rows of different widths {lengths.tolist()}; "
                "every row must have the same width."
            )
        return values.reshape(n, values.size // n)
    if col.null_count:
        raise ValueError(f"{source}: column '{name}' has {col.null_count} null rows; fill or drop them.")
    return col.to_numpy(zero_copy_only=False)


def table_to_transitions(table: pa.Table, source: str = "<table>") -> Transitions:
    """Arrow table in our schema → :class:`Transitions` (no validation; see ``read_transitions``)."""
    meta = schema.DatasetMeta.from_json((table.schema.metadata or {}).get(schema.METADATA_KEY))
    names = set(table.column_names)
    missing = [c for c in schema.REQUIRED_COLUMNS if c not in names]
    if missing:
        raise ValueError(
            f"{source}: missing column(s) {missing}; a FAST-Q dataset needs {list(schema.REQUIRED_COLUMNS)} "
            f"(found {sorted(names)})."
        )
    n = table.num_rows
    if n == 0:  # caught here: the reshapes below cannot infer widths from zero rows
        raise ValueError(f"{source}: the dataset is empty (0 rows); write at least one transition.")
    arr = {c: _list_column_to_array(table[c], c, source) for c in schema.ALL_COLUMNS if c in names}
    obs = arr[schema.OBS].astype(np.float32, copy=False)
    if obs.ndim == 1:
        obs = obs[:, None]
    new_obs = arr[schema.NEW_OBS].astype(np.float32, copy=False)
    if new_obs.ndim == 1:
        new_obs = new_obs[:, None]
    actions = arr[schema.ACTIONS].astype(np.float32, copy=False)
    if actions.ndim == 1:
        actions = actions[:, None]
    expert_actions = arr.get(schema.EXPERT_ACTIONS)
    mask = arr.get(schema.EXPERT_ACTIONS_MASK)
    if expert_actions is not None:
        expert_actions = expert_actions.astype(np.float32, copy=False)
        d_a = actions.shape[1]
        if expert_actions.shape[1] % max(d_a, 1):
            raise ValueError(
                f"{source}: column '{schema.EXPERT_ACTIONS}' has width {expert_actions.shape[1]}, "
                f"expected K * {d_a} (K arms times the action width)."
            )
        expert_actions = expert_actions.reshape(n, -1, d_a)
    if mask is not None:
        mask = mask.astype(bool, copy=False)
    rc = arr.get(schema.REWARD_COMPONENTS)
    eps = arr.get(schema.EPS_ID)
    propensity = arr.get(schema.POLICY_PROPENSITY)
    return Transitions(
        obs=obs,
        actions=actions,
        rewards=arr[schema.REWARDS].astype(np.float32, copy=False).reshape(n),
        new_obs=new_obs,
        terminateds=arr[schema.TERMINATEDS].astype(bool, copy=False).reshape(n),
        truncateds=(
            arr[schema.TRUNCATEDS].astype(bool, copy=False).reshape(n)
            if schema.TRUNCATEDS in arr else np.zeros(n, bool)
        ),
        eps_id=eps.astype(str) if eps is not None else np.full(n, "0"),
        t=arr[schema.T].astype(np.int64, copy=False) if schema.T in arr else np.zeros(n, np.int64),
        policy_id=(
            arr[schema.POLICY_ID].astype(np.int64, copy=False) if schema.POLICY_ID in arr
            else np.zeros(n, np.int64)
        ),
        reward_components=None if rc is None else rc.astype(np.float32, copy=False),
        expert_actions=expert_actions,
        expert_actions_mask=mask,
        policy_propensity=None if propensity is None else propensity.astype(np.float32, copy=False).reshape(n),
        meta=meta,
        source=source,
    )


def _read_one(path: str) -> pa.Table:
    try:
        if path.endswith(_JSON_SUFFIXES):
            with open_input(path) as f:
                table = pa_json.read_json(f)
            if _exists(path + _JSON_META_SUFFIX):
                with open_input(path + _JSON_META_SUFFIX) as f:
                    table = table.replace_schema_metadata({schema.METADATA_KEY: f.read()})
            return table
        with open_input(path) as f:
            return pq.read_table(f)
    except (pa.ArrowInvalid, OSError) as e:
        kind = "JSON lines" if path.endswith(_JSON_SUFFIXES) else "parquet"
        raise ValueError(f"{path}: cannot be read as {kind}: {e}") from e


def read_table(path: str) -> pa.Table:
    """One parquet or JSON-lines file as an Arrow table (a file that cannot be read: ValueError naming it)."""
    return _read_one(path)


def read_transitions(
    paths: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    num_policies: int | None = None,
    action_dim: int | None = None,
    obs_dim: int | None = None,
    num_reward_components: int | None = None,
) -> Transitions:
    """Read and validate parquet/JSON files (or directories of them) into one :class:`Transitions`.

    The keyword arguments are what the caller expects (e.g. from the algorithm config);
    a mismatch raises ``ValueError`` naming the file and the column.
    """
    parts = []
    for f in expand_paths(paths):
        tr = table_to_transitions(_read_one(f), source=f)
        validate_transitions(
            tr, num_policies=num_policies, action_dim=action_dim, obs_dim=obs_dim,
            num_reward_components=num_reward_components,
        )
        parts.append(tr)
    return parts[0] if len(parts) == 1 else Transitions.concat(parts)


def _columns(path: str, names: Sequence[str]) -> Any:
    """The ``names`` columns a data file has (parquet: only those are read), with its metadata;
    a file that cannot be read (empty, truncated, not parquet/JSON) is a ValueError naming it."""
    if path.endswith(".parquet"):
        try:
            pf = parquet_file(path)
            cols = [n for n in names if n in pf.schema_arrow.names]
            return pf.read(columns=cols).replace_schema_metadata(pf.schema_arrow.metadata)
        except (pa.ArrowInvalid, OSError) as e:
            raise ValueError(f"{path}: cannot be read as parquet ({str(e).splitlines()[0]}); "
                             "regenerate or remove the file") from None
    return _read_one(path)


def infer_num_policies(paths: Sequence[str]) -> int:
    """K from every data file (parquet or JSON lines, directories expanded).

    A file that states K (its metadata's ``num_policies`` or the width of ``expert_actions``)
    decides; else K is the count of arms ``0, 1, ...`` that have rows, so a stray id beyond a gap
    (``7`` in data of arms 0-2) is reported by the data check instead of silently adding empty arms.
    """
    declared, seen = 0, set()
    for f in expand_paths(list(paths)):
        table = _columns(f, (schema.POLICY_ID, schema.EXPERT_ACTIONS))
        meta = schema.DatasetMeta.from_json((table.schema.metadata or {}).get(schema.METADATA_KEY))
        if meta.num_policies:
            declared = max(declared, int(meta.num_policies))
        if schema.EXPERT_ACTIONS in table.column_names:
            first = table[schema.EXPERT_ACTIONS].drop_null()
            if len(first):
                declared = max(declared, len(first[0].as_py()))
        if schema.POLICY_ID in table.column_names:
            ids = pc.unique(table[schema.POLICY_ID]).drop_null().to_numpy(zero_copy_only=False)
            seen.update(int(i) for i in np.asarray(ids, np.float64) if float(i).is_integer())
    if declared:
        return declared
    k = 0
    while k in seen:
        k += 1
    return max(k, 1)


def check_readable(paths: Sequence[str]) -> None:
    """Every parquet data file has a readable footer (an empty or truncated file is named here,
    before Ray starts, not deep inside Ray Data)."""
    for f in expand_paths(list(paths)):
        if f.endswith(".parquet"):
            _columns(f, ())


def validate_dataset(path_or_table: Any, config: Any = None) -> Transitions:
    """Validate a dataset (path(s), an Arrow table, or :class:`Transitions`) against ``config``.

    ``config`` is a ``FastQConfig`` (or None): its ``num_policies``, action/observation spaces and
    ``reward_weights`` give the expected shapes. Returns the loaded transitions.
    """
    expect: dict[str, Any] = {}
    if config is not None:
        expect = expected_shapes(config)
    if isinstance(path_or_table, Transitions):
        return validate_transitions(path_or_table, **expect)
    if isinstance(path_or_table, pa.Table):
        return validate_transitions(table_to_transitions(path_or_table), **expect)
    if isinstance(path_or_table, (str, os.PathLike, list, tuple)):
        return read_transitions(path_or_table, **expect)
    raise TypeError(f"validate_dataset: expected a path, a list of paths, a pyarrow.Table or "
                    f"Transitions, got {type(path_or_table).__name__}.")


def transitions_to_table(tr: Transitions) -> pa.Table:
    """:class:`Transitions` → Arrow table in RLlib's columnar format (+ our columns, metadata)."""
    n = len(tr)
    cols: dict[str, pa.Array] = {}
    for name, value in tr.columns().items():
        if value.ndim == 1:
            cols[name] = pa.array(value)
        else:
            flat = np.ascontiguousarray(value).reshape(n, -1)
            offsets = np.arange(0, flat.size + 1, flat.shape[1], dtype=np.int32)
            cols[name] = pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.ravel()))
    table = pa.table(cols)
    return table.replace_schema_metadata({schema.METADATA_KEY: tr.meta.to_json()})


def write_transitions(tr: Transitions, path: str | os.PathLike, *, fmt: str | None = None,
                      overwrite: bool = False) -> str:
    """Write ``tr`` to ``path`` as parquet (zstd) or JSON lines (by ``fmt`` or the suffix)."""
    path = str(path)
    fmt = fmt or ("json" if path.endswith(_JSON_SUFFIXES) else "parquet")
    if fmt not in ("parquet", "json"):
        raise ValueError(f"format: expected 'parquet' or 'json', got {fmt!r}.")
    if os.path.exists(path) and not overwrite:
        raise FileExistsError(f"{path} exists; pass overwrite=True (CLI: --overwrite) to replace it.")
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    table = transitions_to_table(tr)
    tmp = path + ".tmp"
    if fmt == "parquet":
        pq.write_table(table, tmp, compression="zstd")
    else:
        # Not pandas.to_json: it rounds floats to 10 decimals. float32 -> Python float is exact
        # and json writes the shortest repr that reads back to the same value.
        try:
            with open(tmp, "w") as f:
                for row in table.to_pylist():
                    f.write(json.dumps(row, allow_nan=False))
                    f.write("\n")
        except ValueError as e:  # NaN/inf have no JSON spelling
            os.remove(tmp)
            raise ValueError(f"{path}: cannot write NaN or inf as JSON ({e}); clean the data first.") from e
        with open(path + _JSON_META_SUFFIX, "wb") as f:
            f.write(tr.meta.to_json())
    os.replace(tmp, path)  # never leave a half-written file under the final name
    return path


def write_json_atomic(path: str | os.PathLike, obj: Any, *, indent: int = 1) -> None:
    """Write ``obj`` as JSON through a temporary file, so a kill never leaves a half-written file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=indent, default=float)
    os.replace(tmp, path)

