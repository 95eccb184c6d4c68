"""Import the old MuJoCo script's result files into the result store (run once, 2026-12-07).

    python -m benchmarks.harness.mujoco_import [FILE.json ...] [--store PATH] [--dry-run]

``benchmarks/mujoco_quality.py`` (removed; its last version is in git history, see each record's
``imported_from.commit``) wrote ``benchmarks/results/mujoco_quality_*.json``: ``runs[<env>/<kind>]
[method][seed] = {eval: {return, normalized, episodes}, curve?, arm?, k, build_s?, resumed_at_step?,
wall_s}`` and one ``meta[<env>]`` per file. Each run becomes one store record of suite ``mujoco``:
score = the normalised score, extras = the entry (less ``wall_s``), budget ``full`` when the file's
meta has the ``mujoco.FULL`` budget (all of them did). The file's ``meta`` is the LAST invocation
that wrote it (the old script kept one per file and environment), so a record's ``command``,
``date_utc`` and ``machine`` are that invocation's, not necessarily the one that produced the run;
``imported_from`` says so, names the file and the commit holding it. The old script recorded no
commit (``commit`` is null) and no load average.

The RLlib CQL runs made at RLlib's default ``bc_iters`` (a BC actor; ``*_cql_bc_actor.json``)
become method ``RLlib CQL (BC actor)``. Rerunning skips the records already imported.

After the import (and ``missing`` finding every run in the store) the JSON files were removed; read
one back with ``git show <imported_from.commit>:<imported_from.file>``.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import subprocess
import sys
from collections.abc import Iterable
from typing import Any

from benchmarks.harness import mujoco
from benchmarks.harness.store import DEFAULT_STORE, ROOT, Store, key_of, utc_now

SCRIPT = "benchmarks/mujoco_quality.py"
DEFAULT_FILES = "benchmarks/results/mujoco_quality_*.json"
#: file-name part → method renames (the same method name ran another configuration there).
RENAMES = {"_cql_bc_actor": {"RLlib CQL": "RLlib CQL (BC actor)"}}
META_NOTE = ("command, date_utc and machine are the file's meta: the LAST invocation of the old script that wrote "
             "the file (one meta per file and env), not necessarily the invocation that produced this run")


def _rel(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def file_commit(path: pathlib.Path) -> str | None:
    """The last commit that changed ``path`` (where the imported version can be read back), or None."""
    try:
        out = subprocess.run(["git", "log", "-1", "--format=%H", "--", str(path)], cwd=ROOT, capture_output=True,
                             text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


def _budget(meta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    full = mujoco.FULL
    same = all(meta.get(k) == full[k] for k in ("steps", "pretrain", "episodes", "eval_seed"))
    if same:
        return "full", dict(full)
    return "imported", {k: meta.get(k) for k in ("steps", "pretrain", "episodes", "eval_seed")}


def _date(s: str | None) -> str | None:
    """``2026-12-02 16:03`` (the old format) → ``2026-12-02T16:03:00Z``."""
    return None if not s else s.replace(" ", "T") + (":00Z" if len(s) == 16 else "")


def records_of(path: pathlib.Path, *, commit: str | None = None, imported_at: str | None = None
               ) -> list[dict[str, Any]]:
    """The store records of one old result file (see the module docstring)."""
    res = json.loads(path.read_text())
    renames = next((r for part, r in RENAMES.items() if part in path.stem), {})
    out = []
    for key in sorted(res.get("runs", {})):
        env = key.split("/")[0]
        meta = res.get("meta", {}).get(env, {})
        budget, detail = _budget(meta)
        for method, seeds in res["runs"][key].items():
            for seed, entry in sorted(seeds.items(), key=lambda kv: int(kv[0])):
                extras = {k: v for k, v in entry.items() if k != "wall_s"}
                out.append({
                    "suite": mujoco.MUJOCO, "dataset": key, "method": renames.get(method, method), "seed": int(seed),
                    "score": float(entry["eval"]["normalized"]), "extras": extras, "budget": budget,
                    "budget_detail": detail, "wall_s": round(float(entry.get("wall_s", 0.0)), 2),
                    "command": meta.get("command"), "commit": None, "date_utc": _date(meta.get("date_utc")),
                    "machine": {"description": meta.get("machine")}, "load_avg_before": None,
                    "load_avg_after": None,
                    "imported_from": {"script": SCRIPT, "file": _rel(path), "commit": commit,
                                      "method": method, "imported_utc": imported_at or utc_now(),
                                      "note": META_NOTE},
                })
    return out


def import_files(paths: Iterable[pathlib.Path], store: Store, *, dry_run: bool = False) -> list[dict[str, Any]]:
    """Append the records of ``paths`` not yet imported into ``store``; the records appended.

    Two files giving one key is an error (the old table merged them silently, the last one winning).
    """
    paths = sorted(pathlib.Path(p) for p in paths)
    have = {(key_of(r), r["imported_from"]["file"]) for r in store.records() if r.get("imported_from")}
    now = utc_now()
    new, seen = [], {}
    for path in paths:
        for r in records_of(path, commit=file_commit(path), imported_at=now):
            k = key_of(r)
            if k in seen:
                raise ValueError(f"{k}: in both {seen[k]} and {path}")
            seen[k] = path
            if (k, r["imported_from"]["file"]) not in have:
                new.append(r)
    if not dry_run:
        for r in new:
            store.append(r)
    return new


def missing(paths: Iterable[pathlib.Path], store: Store) -> list[str]:
    """Runs of ``paths`` that the store does not hold with the same score and extras (empty: all covered)."""
    held = {(key_of(r), r["imported_from"]["file"]): r for r in store.records() if r.get("imported_from")}
    out = []
    for path in paths:
        for r in records_of(pathlib.Path(path)):
            h = held.get((key_of(r), r["imported_from"]["file"]))
            if h is None or h["score"] != r["score"] or h["extras"] != r["extras"]:
                out.append(f"{r['imported_from']['file']}: {key_of(r)}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness.mujoco_import", description=__doc__.splitlines()[0])
    p.add_argument("files", nargs="*", help=f"old result files (default: {DEFAULT_FILES})")
    p.add_argument("--store", default=str(DEFAULT_STORE))
    p.add_argument("--dry-run", action="store_true", help="count, append nothing")
    args = p.parse_args(argv)
    files = [pathlib.Path(f) for f in args.files] or sorted(ROOT.glob(DEFAULT_FILES))
    if not files:
        print(f"no files match {DEFAULT_FILES}")
        return 1
    store = Store(args.store)
    new = import_files(files, store, dry_run=args.dry_run)
    verb = "would append" if args.dry_run else "appended"
    print(f"{verb} {len(new)} records from {len(files)} files to {store.path}")
    if not args.dry_run:
        gaps = missing(files, store)
        print("every run of the files is in the store" if not gaps else f"NOT in the store: {gaps}")
        return 1 if gaps else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
