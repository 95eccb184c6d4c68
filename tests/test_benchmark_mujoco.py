"""The harness's ``mujoco`` suite: the importer of the old script's files, refusals, report, one tiny run."""

from __future__ import annotations

import json
import os

import pytest

from benchmarks import __main__ as cli
from benchmarks.harness import mujoco, mujoco_import, mujoco_report
from benchmarks.harness.store import Store

META = {"command": "python benchmarks/mujoco_quality.py --env Hopper-v5 --datasets medium --seeds 2",
        "date_utc": "2026-12-02 16:03", "machine": "x86_64, 2 CPUs (shared)", "steps": 5000, "pretrain": 1000,
        "episodes": 10, "eval_seed": 100000}


def _entry(norm: float, **extra) -> dict:
    return {"eval": {"return": 10 * norm, "normalized": norm, "episodes": 10}, "wall_s": 12.345, "k": 1, **extra}


def _old_files(tmp_path):
    main = {"runs": {"Hopper-v5/medium": {"FAST-Q": {"0": _entry(20.0, curve=[[2000, 5.0]]), "1": _entry(30.0)},
                                          "TD3+BC": {"1": _entry(40.0)}}},
            "failures": {}, "meta": {"Hopper-v5": META}}
    bc_actor = {"runs": {"Hopper-v5/medium": {"RLlib CQL": {"0": _entry(50.0, build_s=2.0)}}}, "failures": {},
                "meta": {"Hopper-v5": {**META, "date_utc": "2026-12-01 09:00"}}}
    a, b = tmp_path / "mujoco_quality_hopper.json", tmp_path / "mujoco_quality_hopper_cql_bc_actor.json"
    a.write_text(json.dumps(main))
    b.write_text(json.dumps(bc_actor))
    return [a, b]


def test_importer_maps_old_runs_to_records(tmp_path):
    files = _old_files(tmp_path)
    store = Store(tmp_path / "store.jsonl")
    new = mujoco_import.import_files(files, store)
    got = {(r["dataset"], r["method"], r["seed"]): r for r in store.records()}
    assert len(new) == len(got) == 4
    assert set(got) == {("Hopper-v5/medium", "FAST-Q", 0), ("Hopper-v5/medium", "FAST-Q", 1),
                        ("Hopper-v5/medium", "TD3+BC", 1), ("Hopper-v5/medium", "RLlib CQL (BC actor)", 0)}
    r = got[("Hopper-v5/medium", "FAST-Q", 0)]
    assert r["suite"] == "mujoco" and r["score"] == 20.0 and r["wall_s"] == 12.35
    assert r["extras"] == {"eval": {"return": 200.0, "normalized": 20.0, "episodes": 10}, "k": 1,
                           "curve": [[2000, 5.0]]}
    assert r["budget"] == "full" and r["budget_detail"] == mujoco.FULL
    assert r["command"] == META["command"] and r["date_utc"] == "2026-12-02T16:03:00Z" and r["commit"] is None
    assert r["imported_from"]["script"] == "benchmarks/mujoco_quality.py"
    assert r["imported_from"]["file"].endswith("mujoco_quality_hopper.json")
    cql = got[("Hopper-v5/medium", "RLlib CQL (BC actor)", 0)]
    assert cql["imported_from"]["method"] == "RLlib CQL" and cql["date_utc"] == "2026-12-01T09:00:00Z"
    assert cql["extras"]["build_s"] == 2.0
    # Idempotent, and every run of the files is covered.
    assert mujoco_import.import_files(files, store) == []
    assert len(store.records()) == 4 and mujoco_import.missing(files, store) == []
    # ... and a changed score is reported as not covered.
    old = json.loads(files[0].read_text())
    old["runs"]["Hopper-v5/medium"]["TD3+BC"]["1"]["eval"]["normalized"] = 41.0
    files[0].write_text(json.dumps(old))
    assert mujoco_import.missing(files, store) == [f"{r['imported_from']['file']}: ('mujoco', 'Hopper-v5/medium', "
                                                    "'TD3+BC', 1)"]


def test_importer_refuses_one_key_in_two_files(tmp_path):
    a = tmp_path / "mujoco_quality_hopper.json"
    b = tmp_path / "mujoco_quality_hopper_again.json"
    for f in (a, b):
        f.write_text(json.dumps({"runs": {"Hopper-v5/medium": {"FAST-Q": {"0": _entry(1.0)}}},
                                 "meta": {"Hopper-v5": META}}))
    store = Store(tmp_path / "store.jsonl")
    with pytest.raises(ValueError, match="in both"):
        mujoco_import.import_files([a, b], store)
    assert store.records() == []


def test_importer_other_budget_is_not_full(tmp_path):
    f = tmp_path / "mujoco_quality_hopper.json"
    f.write_text(json.dumps({"runs": {"Hopper-v5/medium": {"FAST-Q": {"0": _entry(1.0)}}},
                             "meta": {"Hopper-v5": {**META, "steps": 2000}}}))
    (r,) = mujoco_import.records_of(f)
    assert r["budget"] == "imported" and r["budget_detail"]["steps"] == 2000


@pytest.mark.parametrize("kwargs, message", [
    ({"datasets": ["Hopper-v5/expert"]}, r"unknown datasets \['Hopper-v5/expert'\]; known: \['HalfCheetah-v5/medium'"),
    ({"methods": ["FAST-Q", "SAC"]}, r"unknown methods \['SAC'\]; known: \['FAST-Q'"),
    ({"methods": ["RLlib CQL"]}, r"not run on this harness"),
    ({"budget": "huge"}, r"unknown budget 'huge'"),
])
def test_suite_refuses_unknown_names(tmp_path, kwargs, message):
    store = Store(tmp_path / "store.jsonl")
    args = {"datasets": ["Hopper-v5/medium"], "methods": ["TD3+BC"], "seeds": [0], "store": store, **kwargs}
    with pytest.raises(ValueError, match=message):
        mujoco.run_suite(**args)
    assert not store.path.exists()


def test_cli_refuses_unknown_dataset(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["--store", str(tmp_path / "s.jsonl"), "run", "mujoco", "--datasets", "Ant-v5/medium"])
    assert exc.value.code == 2
    assert "unknown datasets ['Ant-v5/medium']" in capsys.readouterr().err


def _record(dataset: str, method: str, seed: int, score: float | None, imported: bool = False, **extras) -> dict:
    r = {"suite": "mujoco", "dataset": dataset, "method": method, "seed": seed, "score": score,
         "extras": {"k": 2, **extras}, "budget": "full", "budget_detail": mujoco.FULL, "wall_s": 1.0}
    if imported:
        r["imported_from"] = {"file": "x.json"}
    if score is None:
        r["error"] = "RuntimeError: boom\ntraceback"
    return r


def test_report_renders_the_mujoco_table(tmp_path):
    store = Store(tmp_path / "store.jsonl")
    for rec in [_record("Hopper-v5/medium-replay", "FAST-Q", 0, 10.0, imported=True, curve=[[1000, 1.0], [2000, 2.0]]),
                _record("Hopper-v5/medium-replay", "FAST-Q", 1, 12.0, imported=True, curve=[[1000, 3.0], [2000, 4.0]]),
                _record("Hopper-v5/medium-replay", "FAST-Q", 1, 14.0),  # a harness rerun: latest wins
                _record("Hopper-v5/medium-replay", "RLlib CQL", 0, 4.0, imported=True),
                _record("Walker2d-v5/multi-policy", "TD3+BC", 0, 23.5),
                _record("Walker2d-v5/multi-policy", "BC", 0, None),
                {**_record("Walker2d-v5/multi-policy", "TD3+BC", 1, 99.0), "budget_detail": mujoco.QUICK}]:
        store.append(rec)
    text = mujoco_report.tables(store, "mujoco", mujoco.FULL)
    header = next(x for x in text.splitlines() if x.startswith("| dataset"))
    assert header.split(" | ")[3:6] == ["FAST-Q", "TD3+BC", "RLlib CQL"]
    row = next(x for x in text.splitlines() if x.startswith("| Hopper medium-replay"))
    assert "| 2 | mixed | 12.0 ± 2.0 (2) |  | 4.0 (1) | 18.1 / 60.9 / 95.0 / 94.7 |" in row
    row = next(x for x in text.splitlines() if x.startswith("| Walker2d multi-policy"))
    assert "23.5 (1)" in row and "99.0" not in row and row.endswith("| n/a |")
    assert "1 records of this suite at other budgets" in text
    assert "FAST-Q 1 imported + 1 run by the harness" in text and "RLlib CQL 1 imported" in text
    assert "Walker2d-v5/multi-policy BC seed 0: RuntimeError: boom" in text
    out = tmp_path / "out"
    out.mkdir()
    assert cli.main(["--store", str(store.path), "report", "--suite", "mujoco", "--out-dir", str(out)]) == 0
    assert (out / "mujoco_suite.md").read_text().startswith("# Suite `mujoco`")
    pytest.importorskip("matplotlib")
    assert (out / "mujoco_suite.png").stat().st_size > 1000


@pytest.mark.skipif(not os.path.exists(mujoco.DATA / "Hopper-v5/medium.parquet"), reason="no shipped MuJoCo data")
def test_tiny_real_run_without_ray(tmp_path):
    """TD3+BC and BC for 20 steps on the shipped Hopper medium file; FAST-Q (K=1) is skipped (K = 1)."""
    pytest.importorskip("mujoco")
    store = Store(tmp_path / "store.jsonl")
    budget = {**mujoco.QUICK, "steps": 20, "steps_per_iter": 10, "curve_every": 20, "episodes": 1}
    out = mujoco.run_suite(datasets=["Hopper-v5/medium"], methods=["TD3+BC", "BC", "FAST-Q (K=1)"], seeds=[0],
                           budget="quick", store=store, budget_detail=budget, command=["pytest"])
    assert [(r["method"], r.get("error")) for r in out] == [("TD3+BC", None), ("BC", None)]
    for r in out:
        assert r["suite"] == "mujoco@quick" and isinstance(r["score"], float)
        assert r["extras"]["k"] == 1 and r["extras"]["eval"]["episodes"] == 1 and len(r["extras"]["curve"]) == 1
        assert r["budget_detail"] == budget and r["command"] == "pytest"
    assert mujoco.run_suite(datasets=["Hopper-v5/medium"], methods=["TD3+BC"], seeds=[0], budget="quick",
                            store=store, budget_detail=budget) == []
