"""The benchmark harness (benchmarks/harness): store, registry and report on a tiny case, without Ray."""

from __future__ import annotations

import json

import pytest

from benchmarks.harness import report, suites
from benchmarks.harness.registry import REGISTRY
from benchmarks.harness.store import Store

METHODS = ["arm retention", "arm competitive", "logged routing", "per-segment oracle", "direct-method chooser"]
META = ("score", "extras", "command", "commit", "date_utc", "machine", "budget", "budget_detail", "wall_s",
        "load_avg_before", "load_avg_after")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("harness")
    budget = {**suites.QUICK, "episodes": 3, "data_episodes": 40, "card_eval_episodes": 3}
    store = Store(root / "store.jsonl")
    kwargs = dict(regimes=["misaligned"], methods=METHODS, seeds=[0], budget="quick", store=store,
                  budget_detail=budget, data_cache=root / "data", command=["pytest"])
    first = suites.run_suite(**kwargs)
    return store, kwargs, first


def test_one_record_per_key_with_metadata(tiny):
    store, _, first = tiny
    assert [r["method"] for r in first] == METHODS
    lines = [json.loads(x) for x in store.path.read_text().splitlines()]
    assert len(lines) == len(METHODS)
    for r in lines:
        assert (r["suite"], r["dataset"], r["seed"]) == ("player-platform@quick", "misaligned", 0)
        assert r.get("error") is None, r.get("error")
        assert all(k in r for k in META)
        assert isinstance(r["score"], float)
        assert {"cpu_count", "torch", "ray", "platform"} <= set(r["machine"])
        assert r["extras"]["eval"]["num_episodes"] == 3
    dm = next(r for r in lines if r["method"] == "direct-method chooser")
    assert abs(sum(dm["extras"]["chosen_arm_share"]) - 1.0) < 1e-6


def test_rerun_skips_and_force_appends(tiny):
    store, kwargs, _ = tiny
    assert suites.run_suite(**kwargs) == []
    assert len(store.records()) == len(METHODS)
    again = suites.run_suite(**{**kwargs, "methods": ["arm retention"]}, force=True)
    assert len(again) == 1 and len(store.records()) == len(METHODS) + 1
    assert len(store.latest("player-platform@quick")) == len(METHODS)


def test_failure_is_recorded_and_retried(tiny, monkeypatch):
    store, kwargs, _ = tiny
    method = REGISTRY["arm monetization"]

    def boom(ds, seed, budget):
        raise RuntimeError("venv missing")

    monkeypatch.setitem(REGISTRY, "arm monetization", method.__class__(method.name, boom, method.kind))
    (rec,) = suites.run_suite(**{**kwargs, "methods": ["arm monetization"]})
    assert rec["score"] is None and "venv missing" in rec["error"]
    monkeypatch.setitem(REGISTRY, "arm monetization", method)
    (rec,) = suites.run_suite(**{**kwargs, "methods": ["arm monetization"]})
    assert rec["score"] is not None


def test_report_lists_every_method(tiny):
    store, _, _ = tiny
    text = report.tables(store, "player-platform@quick")
    assert "## misaligned" in text
    for m in METHODS:
        assert m in text
    assert "No records" in report.tables(store, "player-platform")
    assert "No records" in report.tables(store, "player-platform@quick", {"episodes": -1})


def test_changed_budget_reruns(tiny):
    store, kwargs, _ = tiny
    other = {**kwargs["budget_detail"], "episodes": 2}
    recs = suites.run_suite(**{**kwargs, "methods": ["arm retention"], "budget_detail": other})
    assert len(recs) == 1 and recs[0]["extras"]["eval"]["num_episodes"] == 2


def test_shards_split_the_datasets_in_turn_and_cover_each_once():
    cells = suites.shard_of(["a", "b"], [0, 1, 2], None)
    shards = [suites.shard_of(["a", "b"], [0, 1, 2], (i, 2)) for i in range(2)]
    assert shards == [[("a", 0), ("a", 2), ("b", 1)], [("a", 1), ("b", 0), ("b", 2)]]
    assert sorted(shards[0] + shards[1]) == sorted(cells)
    with pytest.raises(ValueError, match="shard"):
        suites.shard_of(["a"], [0], (2, 2))


def test_a_shard_runs_only_its_datasets(tiny, tmp_path):
    _, kwargs, _ = tiny
    store = Store(tmp_path / "store.jsonl")
    recs = suites.run_suite(**{**kwargs, "store": store, "methods": ["arm retention"], "seeds": [0, 1],
                               "shard": (1, 2)})
    assert [(r["dataset"], r["seed"]) for r in recs] == [("misaligned", 1)]


def test_jobs_starts_one_shard_process_per_job_with_the_same_command(monkeypatch):
    import benchmarks.__main__ as cli

    started = []

    class FakeProcess:
        def __init__(self, cmd, **kwargs):
            started.append(cmd)

        def wait(self):
            return 0

    monkeypatch.setattr(cli.subprocess, "Popen", FakeProcess)
    cli.main(["--store", "S.jsonl", "run", "player-platform", "--jobs", "2", "--methods", "BC", "--no-report"])
    assert [c[c.index("--shard") + 1] for c in started] == ["0/2", "1/2"]
    for c in started:
        assert c[3:] == ["--store", "S.jsonl", "run", "player-platform", "--methods", "BC", "--shard",
                         c[c.index("--shard") + 1], "--no-report"]


def test_another_stores_report_goes_beside_it_not_over_the_suite_tables(tmp_path, monkeypatch):
    import benchmarks.__main__ as cli

    written = []
    monkeypatch.setattr(cli, "_report", lambda store, suite, budget, out: written.append(out))
    other = tmp_path / "option" / "S.jsonl"
    cli.main(["--store", str(other), "report"])
    cli.main(["report"])
    cli.main(["--store", str(other), "report", "--out-dir", str(tmp_path / "mine")])
    assert written == [other.parent, cli.RESULTS, tmp_path / "mine"]


def test_fastq_training_settings_go_into_a_copy_of_the_budget():
    detail = suites.with_fastq_training("full", ["arm_choice_pessimism=1", "arm_value_model=ridge",
                                                 "arm_choice_check=true"])
    assert detail["fastq"]["training"] == {"arm_choice_pessimism": 1, "arm_value_model": "ridge",
                                           "arm_choice_check": True}
    assert "training" not in suites.BUDGETS["full"]["fastq"]  # the suite's own budget is untouched
    assert suites.with_fastq_training("full", []) is None
    with pytest.raises(ValueError, match="KEY=VALUE"):
        suites.with_fastq_training("full", ["arm_choice_pessimism"])
