"""The append-only result store: one JSON line per run of (suite, dataset, method, seed).

Every record carries its score (``None`` when the run failed, with ``error``), the method's
extras, and the metadata that makes it reproducible: the command line, git commit, UTC date,
machine (platform, CPU count, torch/ray versions), the budget, wall seconds and load average.
Records are only ever appended; the latest record of a key wins when reading, so a failed run
is retried by the next ``run`` and ``--force`` simply appends a newer record.
"""

from __future__ import annotations

import datetime
import json
import os
import pathlib
import platform
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[2]
DEFAULT_STORE = ROOT / "benchmarks/results/store.jsonl"
KEY_FIELDS = ("suite", "dataset", "method", "seed")
Key = tuple[str, str, str, int]


def key_of(record: dict[str, Any]) -> Key:
    return (record["suite"], record["dataset"], record["method"], int(record["seed"]))


def git_commit() -> str:
    """HEAD's commit, with ``+dirty`` when tracked files differ from it ("unknown" outside git)."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _version(module: str) -> str | None:
    mod = sys.modules.get(module)
    if mod is None:
        try:
            mod = __import__(module)
        except Exception:  # noqa: BLE001 - a missing package is recorded as None
            return None
    return getattr(mod, "__version__", None)


def machine() -> dict[str, Any]:
    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "python": platform.python_version(), "cpu_count": os.cpu_count(),
            "torch": _version("torch"), "ray": _version("ray")}


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Store:
    """A JSON-lines file of run records (see the module docstring)."""

    def __init__(self, path: str | os.PathLike[str] = DEFAULT_STORE):
        self.path = pathlib.Path(path)

    def records(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        out = []
        for n, line in enumerate(self.path.read_text().splitlines(), 1):
            if line.strip():
                try:
                    out.append(json.loads(line))
                except json.JSONDecodeError as err:  # a half-written last line of a killed run
                    print(f"{self.path}:{n}: skipped an unreadable record ({err})", file=sys.stderr)
        return out

    def latest(self, suite: str | None = None,
               budget_detail: dict[str, Any] | None = None) -> dict[Key, dict[str, Any]]:
        """The newest record of every key (optionally of one suite, and only runs at ``budget_detail``:
        records of an older budget of the suite are kept in the file but neither reported nor skipped)."""
        want = None if budget_detail is None else json.dumps(budget_detail, sort_keys=True)
        out: dict[Key, dict[str, Any]] = {}
        for r in self.records():
            if suite is not None and r["suite"] != suite:
                continue
            if want is not None and json.dumps(r.get("budget_detail"), sort_keys=True) != want:
                continue
            out[key_of(r)] = r
        return out

    def done(self, suite: str, budget_detail: dict[str, Any] | None = None) -> set[Key]:
        """Keys whose newest record (at this budget) succeeded: ``run`` skips them."""
        return {k for k, r in self.latest(suite, budget_detail).items() if r.get("score") is not None}

    def append(self, record: dict[str, Any]) -> None:
        missing = [f for f in KEY_FIELDS if f not in record]
        if missing:
            raise ValueError(f"record: missing key fields {missing}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as f:
            f.write(json.dumps(record, sort_keys=False, default=float) + "\n")
            f.flush()
            os.fsync(f.fileno())


def record(*, suite: str, dataset: str, method: str, seed: int, score: float | None, budget: str,
           budget_detail: dict[str, Any], wall_s: float, command: Iterable[str], extras: dict[str, Any] | None = None,
           error: str | None = None, commit: str | None = None, load_before: list[float] | None = None,
           ) -> dict[str, Any]:
    """A run record with the metadata fields every record carries."""
    out: dict[str, Any] = {
        "suite": suite, "dataset": dataset, "method": method, "seed": int(seed), "score": score,
        "extras": extras or {}, "budget": budget, "budget_detail": budget_detail, "wall_s": round(wall_s, 2),
        "command": " ".join(command), "commit": commit or git_commit(), "date_utc": utc_now(),
        "machine": machine(), "load_avg_before": load_before, "load_avg_after": load_average(),
    }
    if error is not None:
        out["error"] = error
    return out
