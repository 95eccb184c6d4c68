"""Dataset I/O: writer → validator → reader round trips and the error of every bad input (no Ray)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rllib_fastq.data import schema
from rllib_fastq.data.convert import convert, from_dataframe, minari_to_parquet, parquet_to_minari
from rllib_fastq.data.io import read_transitions, transitions_to_table, validate_dataset, write_transitions
from rllib_fastq.data.validation import validate_transitions
from rllib_fastq.datasets.player_platform import collect_episodes


@pytest.fixture(scope="module")
def logged():
    """A small multi-arm dataset with every column (dict observations, T = 4)."""
    return collect_episodes(8, seed=2, env_config={"window": 4, "horizon": 12})


def _assert_same(a, b):
    assert set(a.columns()) == set(b.columns())
    for name, value in a.columns().items():
        other = getattr(b, name)
        assert other.dtype == value.dtype, name
        np.testing.assert_array_equal(other, value, err_msg=name)
    assert a.meta == b.meta


# -- round trips ------------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_write_validate_read_round_trip(logged, tmp_path, suffix):
    path = write_transitions(logged, tmp_path / f"d{suffix}")
    back = read_transitions(path, num_policies=3, action_dim=3, num_reward_components=4,
                            obs_dim=4 * 9 + 7)
    _assert_same(logged, back)
    assert back.expert_actions_mask.dtype == bool and back.policy_id.dtype == np.int64
    assert validate_dataset(path) is not None


def test_parquet_json_parquet_keeps_every_column_dtype_and_meta(logged, tmp_path):
    tiny = logged.take(np.arange(len(logged)))
    tiny.obs[0, :3] = [1e-30, -3.4e38, 1.1754944e-38]  # values that decimal rounding would mangle
    first = write_transitions(tiny, tmp_path / "a.parquet")
    js = convert(first, tmp_path / "b.jsonl")
    again = convert(js, tmp_path / "c.parquet")
    t1, t2 = pq.read_table(first), pq.read_table(again)
    assert t1.schema == t2.schema  # column names, arrow types and metadata
    _assert_same(tiny, read_transitions(js))
    _assert_same(tiny, read_transitions(again))


def test_existing_file_is_kept_unless_overwrite(logged, tmp_path):
    path = write_transitions(logged, tmp_path / "d.parquet")
    with pytest.raises(FileExistsError, match="d.parquet exists"):
        write_transitions(logged, path)
    write_transitions(logged, path, overwrite=True)


def _log_frame() -> pd.DataFrame:
    rows = []
    for user, n, arm in (("u1", 3, "promo"), ("u2", 2, "control")):
        for step in range(n):
            rows.append({"user": user, "step": step, "f1": step + 0.5, "f2": len(user) * step,
                         "a": 0.1 * step, "rev": 1.0, "eng": 2.0, "arm": arm, "done": step == n - 1})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # unsorted on purpose


def _from(df, **kw):
    args = dict(user_col="user", time_col="step", feature_cols=["f1", "f2"], action_cols=["a"],
                reward_component_cols=["rev", "eng"], reward_weights=[1.0, -0.5], arm_col="arm")
    args.update(kw)
    return from_dataframe(df, **args)


def test_pandas_logs_become_episodes_and_round_trip(tmp_path):
    tr = _from(_log_frame())
    assert tr.eps_id.tolist() == ["u1"] * 3 + ["u2"] * 2 and tr.t.tolist() == [0, 1, 2, 0, 1]
    np.testing.assert_array_equal(tr.new_obs[:2], tr.obs[1:3])        # next row of the same user
    assert tr.terminateds.tolist() == [False, False, True, False, True]
    np.testing.assert_allclose(tr.rewards, 1.0 - 0.5 * 2.0)
    assert tr.meta.extra["arm_names"] == ["control", "promo"] and tr.policy_id.tolist() == [1, 1, 1, 0, 0]
    assert tr.meta.reward_component_names == ("rev", "eng")
    df = _log_frame()
    df.loc[(df.user == "u2") & (df.step == 1), "done"] = False          # u2 was cut off, not finished
    tr2 = _from(df, terminal_col="done", reward_col="rev")
    assert tr2.terminateds.tolist()[-1] is False and tr2.truncateds.tolist()[-1] is True
    np.testing.assert_allclose(tr2.rewards, 1.0)
    _assert_same(tr, read_transitions(write_transitions(tr, tmp_path / "p.parquet")))


@pytest.mark.parametrize("edit, kw, message", [
    (lambda df: df.drop(columns=["f2"]), {}, "column 'f2' is not in the DataFrame"),
    (lambda df: df.assign(f1=df.f1.where(df.step != 1, np.nan)), {}, "column 'f1': 2 NaN"),
    (lambda df: df.assign(a=df.a.where(df.step != 0, np.inf)), {}, "column 'a': 2 NaN/inf"),
    (lambda df: df.assign(step=df.step.where(df.step != 1, 0)), {}, "column 'step': duplicate timestamp 0"),
    (lambda df: df[~((df.user == "u1") & (df.step == 1))], {}, "column 'step': gap for user 'u1'"),
    (lambda df: df.assign(done=True), {"terminal_col": "done"}, "column 'done': user 'u1' is terminal"),
    (lambda df: df, {"reward_weights": None}, "reward_weights: needed"),
    (lambda df: df.iloc[:0], {}, "empty"),
])
def test_pandas_bad_logs_name_the_column(edit, kw, message):
    with pytest.raises(ValueError, match=message):
        _from(edit(_log_frame()), **kw)


# -- Minari -----------------------------------------------------------------------------------
def test_minari_round_trip_offline(logged, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    meta = schema.DatasetMeta(obs_layout=logged.meta.obs_layout, num_policies=3,
                              reward_component_names=logged.meta.reward_component_names,
                              extra={"ref_min_score": -1.0, "ref_max_score": 20.0})
    src = logged.take(np.arange(len(logged)))
    src.meta = meta
    path = write_transitions(src, tmp_path / "src.parquet")
    ds = parquet_to_minari(path, "fastq/platform-test-v0")
    assert ds.total_steps == len(src) and ds.total_episodes == 8
    out = minari_to_parquet("fastq/platform-test-v0", tmp_path / "back.parquet")
    back = read_transitions(out)
    order = np.lexsort((src.t, src.eps_id))
    want = src.take(order)
    for name, value in want.columns().items():
        if name != schema.EPS_ID:  # Minari numbers episodes itself
            np.testing.assert_array_equal(getattr(back, name), value, err_msg=name)
            assert getattr(back, name).dtype == value.dtype, name
    assert len(np.unique(back.eps_id)) == 8
    assert back.meta.extra["ref_min_score"] == -1.0 and back.meta.extra["ref_max_score"] == 20.0
    assert back.meta.obs_layout == src.meta.obs_layout and back.meta.num_policies == 3


def test_minari_rejects_non_contiguous_episodes(logged, tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    broken = logged.take(np.arange(len(logged)))
    broken.new_obs[0] += 1.0
    path = write_transitions(broken, tmp_path / "b.parquet")
    with pytest.raises(ValueError, match=r"b.parquet: column 'new_obs': episode '2-0' is not contiguous"):
        parquet_to_minari(path, "fastq/broken-v0")


# -- bad files --------------------------------------------------------------------------------
def _write_table(tr, path, mutate):
    table = mutate(transitions_to_table(tr))
    if str(path).endswith(".jsonl"):
        table.to_pandas().to_json(path, orient="records", lines=True)
    else:
        pq.write_table(table, path)
    return str(path)


def _replace(table, name, values):
    return table.set_column(table.schema.get_field_index(name), name, values)


@pytest.mark.parametrize("suffix", [".parquet", ".jsonl"])
def test_missing_column_names_file_and_column(logged, tmp_path, suffix):
    path = _write_table(logged, tmp_path / f"m{suffix}", lambda t: t.drop_columns(["actions"]))
    with pytest.raises(ValueError, match=rf"m{suffix}: missing column\(s\) \['actions'\]"):
        read_transitions(path)


def test_wrong_width_is_reported(logged, tmp_path):
    path = write_transitions(logged, tmp_path / "w.parquet")
    with pytest.raises(ValueError, match=r"w.parquet: column 'actions': expected width 2"):
        read_transitions(path, action_dim=2)
    short = logged.take(np.arange(len(logged)))
    short.obs, short.new_obs = short.obs[:, :-1], short.new_obs[:, :-1]  # layout says 43
    path = write_transitions(short, tmp_path / "s.parquet")
    with pytest.raises(ValueError, match=r"s.parquet: column 'obs': expected width 43.*found width 42"):
        read_transitions(path)
    ragged = pa.array([[1.0, 2.0]] * (len(logged) - 1) + [[1.0]], pa.list_(pa.float32()))
    path = _write_table(logged, tmp_path / "r.parquet", lambda t: _replace(t, "actions", ragged))
    with pytest.raises(ValueError, match=r"r.parquet: column 'actions' has rows of different widths"):
        read_transitions(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_and_inf_are_reported(logged, tmp_path, bad):
    rewards = logged.rewards.copy()
    rewards[3] = bad
    path = _write_table(logged, tmp_path / "n.parquet", lambda t: _replace(t, "rewards", pa.array(rewards)))
    with pytest.raises(ValueError, match=r"n.parquet: column 'rewards': expected finite numbers, "
                                         r"found NaN or inf in 1 row"):
        read_transitions(path)
    broken = logged.take(np.arange(len(logged)))
    broken.rewards[0] = bad
    with pytest.raises(ValueError, match=r"x.jsonl: cannot write NaN or inf as JSON"):
        write_transitions(broken, tmp_path / "x.jsonl")


def test_policy_id_out_of_range(logged, tmp_path):
    relabelled = logged.take(np.arange(len(logged)))
    relabelled.expert_actions = relabelled.expert_actions_mask = None
    relabelled.policy_id[5] = 7
    path = write_transitions(relabelled, tmp_path / "p.parquet")
    with pytest.raises(ValueError, match=r"p.parquet: column 'policy_id': expected integers in \[0, 3\) "
                                         r"\(num_policies=3\), found \[7\]"):
        read_transitions(path, num_policies=3)
    neg = _write_table(logged, tmp_path / "q.parquet",
                       lambda t: _replace(t, "policy_id", pa.array(np.full(len(logged), -1))))
    with pytest.raises(ValueError, match=r"q.parquet: column 'policy_id': expected non-negative"):
        read_transitions(neg)


def test_empty_files(logged, tmp_path):
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"e.jsonl: cannot be read as JSON lines"):
        read_transitions(tmp_path / "e.jsonl")
    path = _write_table(logged, tmp_path / "z.parquet", lambda t: t.slice(0, 0))
    with pytest.raises(ValueError, match=r"z.parquet: the dataset is empty"):
        read_transitions(path)
    (tmp_path / "junk.parquet").write_bytes(b"not parquet")
    with pytest.raises(ValueError, match=r"junk.parquet: cannot be read as parquet"):
        read_transitions(tmp_path / "junk.parquet")


def test_mask_without_expert_actions_is_reported(logged):
    tr = logged.take(np.arange(len(logged)))
    tr.expert_actions = None
    with pytest.raises(ValueError, match="column 'expert_actions_mask': expected a companion"):
        validate_transitions(tr)
