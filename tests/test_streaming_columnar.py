"""The columnar streaming pre-learner (rllib_fastq.data.columnar) against RLlib's stock one.

Same columns, dtypes, shapes and values on Ray Data's batch formats; FAST-Q trains on it with
the same losses; a user's ``prelearner_class`` is kept; a malformed batch names the column.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.offline.offline_prelearner import OfflinePreLearner

from rllib_fastq import FastQConfig
from rllib_fastq.data import schema
from rllib_fastq.data.columnar import BATCH_FORMAT, ColumnarPreLearner
from rllib_fastq.data.io import transitions_to_table, write_transitions
from tests.synthetic import TINY_NETS, make_synthetic

WEIGHTS = [1.0, 0.5, -1.0]


class UserPreLearner(OfflinePreLearner):
    """A user's own pre-learner: RLlib's, under another name."""


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    path = tmp_path_factory.mktemp("stream") / "tiny.parquet"
    tr = make_synthetic(n=200)
    tr.policy_propensity = np.full(len(tr), 0.5, np.float32)
    write_transitions(tr, path)
    return str(path)


def _config(path: str, iters: int = 3, **training) -> FastQConfig:
    training = {"in_memory_data": False, **TINY_NETS, **training}
    return (FastQConfig()
            .offline_data(input_=[path], dataset_num_iters_per_learner=iters)
            .training(num_policies=3, pretrain_steps=4, reward_weights=WEIGHTS, train_batch_size_per_learner=16,
                      **training)
            .debugging(seed=0)
            .reference())


def _prelearners(config: FastQConfig) -> tuple[OfflinePreLearner, ColumnarPreLearner]:
    config.validate()
    spaces = (config.observation_space, config.action_space)
    spec = config.get_multi_rl_module_spec(spaces={DEFAULT_MODULE_ID: spaces})
    return (OfflinePreLearner(config=config, spaces=spaces, module_spec=spec),
            ColumnarPreLearner(config=config, spaces=spaces, module_spec=spec))


def _numpy(out: dict) -> dict[str, np.ndarray]:
    return {k: (v.numpy() if hasattr(v, "numpy") else np.asarray(v)) for k, v in out.items()}


def test_columnar_output_equals_the_stock_prelearners_columns(ray_session, tiny_path):
    ds = ray_session.data.read_parquet(tiny_path).materialize()
    stock, ours = _prelearners(_config(tiny_path))
    expected = _numpy(stock(ds.take_batch(40, batch_format="numpy")))
    assert {f"{DEFAULT_MODULE_ID}/{c}" for c in (schema.OBS, schema.EXPERT_ACTIONS, schema.POLICY_ID,
                                                 schema.POLICY_PROPENSITY)} <= set(expected)
    for fmt in ("pyarrow", "numpy", "pandas"):
        got = _numpy(ours(ds.take_batch(40, batch_format=fmt)))
        assert set(got) == set(expected), (fmt, set(got) ^ set(expected))
        for key, want in expected.items():
            assert got[key].dtype == want.dtype, (fmt, key, got[key].dtype, want.dtype)
            assert got[key].shape == want.shape, (fmt, key, got[key].shape, want.shape)
            np.testing.assert_array_equal(got[key], want, err_msg=f"{fmt} {key}")


def test_dict_observations_are_flattened_by_the_obs_layout(tmp_path):
    """Flat stored dict observations pass as they are; a struct column is flattened per ObsLayout."""
    layout = schema.ObsLayout(static=2, temporal=(3, 2))
    tr = make_synthetic(n=20, obs_dim=layout.flat_dim)
    tr.meta = schema.DatasetMeta(obs_layout=layout, num_policies=3)
    path = tmp_path / "dict.parquet"
    write_transitions(tr, path)
    config = _config(str(path))
    config.validate()
    prelearner = ColumnarPreLearner(config=config, spaces=(config.observation_space, config.action_space))
    table = transitions_to_table(tr)
    flat = prelearner.map_columns(table)
    np.testing.assert_array_equal(flat[schema.OBS], tr.obs)
    as_dict = layout.unflatten(tr.obs)
    struct = pa.StructArray.from_arrays(
        [pa.array(as_dict["temporal"].tolist()), pa.array(as_dict["static"].tolist())], names=["temporal", "static"])
    nested = prelearner.map_columns(table.set_column(table.column_names.index(schema.OBS), schema.OBS, struct))
    np.testing.assert_array_equal(nested[schema.OBS], schema.ObsLayout.flatten(as_dict))
    np.testing.assert_array_equal(nested[schema.OBS], tr.obs)


def _losses(config: FastQConfig, iters: int = 2) -> tuple[type, list[dict[str, float]]]:
    algo = config.build_algo()
    try:
        cls = algo.offline_data.prelearner_class
        out = []
        for _ in range(iters):
            result = algo.train()["learners"][DEFAULT_MODULE_ID]
            out.append({k: float(v) for k, v in result.items() if k.endswith("_loss") and np.isfinite(v)})
        return cls, out
    finally:
        algo.stop()


def test_streaming_trains_with_the_same_losses_on_both_prelearners(ray_session, tiny_path, monkeypatch):
    """Reference preset, ``in_memory_data=False``: 2 iterations over phase 1 and phase 2.

    Ray Data does not keep the row order by default: two runs on one pre-learner then differ
    as much as runs on the two; with ``preserve_order`` both give bit-identical losses."""
    monkeypatch.setattr(ray_session.data.DataContext.get_current().execution_options, "preserve_order", True)
    cls, ours = _losses(_config(tiny_path))
    assert cls is ColumnarPreLearner
    assert "expert_loss" in ours[0] and "adversary_loss" in ours[0] and "td_loss" in ours[1]
    assert all(np.isfinite(v) for step in ours for v in step.values())
    cls, stock = _losses(_config(tiny_path).offline_data(prelearner_class=UserPreLearner))
    assert cls is UserPreLearner  # the user's class is kept
    assert [sorted(s) for s in stock] == [sorted(s) for s in ours]
    for s, o in zip(stock, ours):
        for key in s:
            assert s[key] == pytest.approx(o[key], rel=1e-6), key


def test_user_choices_keep_the_stock_path(tiny_path):
    user = _config(tiny_path).offline_data(prelearner_class=UserPreLearner,
                                           map_batches_kwargs={"concurrency": 1})
    user.validate()
    assert user.prelearner_class is UserPreLearner and "batch_format" not in user.map_batches_kwargs
    default = _config(tiny_path)
    default.validate()
    assert default.prelearner_class is ColumnarPreLearner
    assert default.map_batches_kwargs["batch_format"] == BATCH_FORMAT
    # A custom learner connector only runs on the stock path: the columnar one is not chosen.
    connected = _config(tiny_path).learners(learner_connector=lambda obs_space, act_space: [])
    connected.validate()
    assert connected.prelearner_class is None
    in_memory = _config(tiny_path, in_memory_data=True)
    in_memory.validate()
    assert in_memory.prelearner_class is None


@pytest.mark.parametrize("drop, message", [
    (schema.REWARDS, r"missing column\(s\) \['rewards'\]"),
    (schema.NEW_OBS, r"missing column\(s\) \['new_obs'\]"),
    (schema.REWARD_COMPONENTS, r"missing column\(s\) \['reward_components'\]"),  # reward_weights need it
])
def test_a_missing_column_is_named(tiny_path, drop, message):
    _, ours = _prelearners(_config(tiny_path))
    table = transitions_to_table(make_synthetic(n=10)).drop_columns([drop])
    with pytest.raises(ValueError, match=message):
        ours(table)


def test_a_column_of_the_wrong_width_is_named(tiny_path):
    _, ours = _prelearners(_config(tiny_path))
    table = transitions_to_table(make_synthetic(n=10, action_dim=3))
    with pytest.raises(ValueError, match="column 'actions' has width 3, expected 2"):
        ours(table)
