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
