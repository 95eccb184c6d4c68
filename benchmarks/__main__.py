"""``python -m benchmarks run SUITE ...`` and ``python -m benchmarks report``: the one harness.

    python -m benchmarks run player-platform --seeds 5 --jobs 2       # the whole suite, full budget, 2 cores
    python -m benchmarks run player-platform --regimes misaligned --methods FAST-Q "direct-method chooser"
    python -m benchmarks run player-platform --budget quick           # smoke test: 1 seed, tiny budgets
    python -m benchmarks report [--suite player-platform] [--budget quick]
    python -m benchmarks run mujoco --seeds 3                         # D4RL-style MuJoCo, 12 datasets
    python -m benchmarks run mujoco --datasets Hopper-v5/medium --methods FAST-Q TD3+BC --seeds 3
    python -m benchmarks report --suite mujoco
    python -m benchmarks list                                         # the suites and their methods

``run`` appends one record per (suite, regime, method, seed) to ``benchmarks/results/store.jsonl``
and skips keys already there (rerun the same command to resume; ``--force`` reruns). ``report``
writes markdown tables (stdout and ``benchmarks/results/<suite>_suite[_quick].md``, or beside another
``--store``) and a PNG plot.
See ``benchmarks/harness/suites.py`` (player-platform) and ``benchmarks/harness/mujoco.py`` for the
protocols and the budgets.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import subprocess
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.harness import mujoco, mujoco_report, report, suites  # noqa: E402
from benchmarks.harness.registry import REGISTRY  # noqa: E402
from benchmarks.harness.store import DEFAULT_STORE, Store  # noqa: E402

RESULTS = suites.ROOT / "benchmarks/results"


def _show(path: pathlib.Path) -> str:
    try:
        return str(path.resolve().relative_to(suites.ROOT))
    except ValueError:
        return str(path)


SUITES = {suites.PLAYER_PLATFORM: REGISTRY, mujoco.MUJOCO: mujoco.MUJOCO_METHODS}


def _report(store: Store, suite: str, budget: str, results: pathlib.Path = RESULTS) -> None:
    if suite not in SUITES:
        raise SystemExit(f"report: unknown suite {suite!r}; known: {list(SUITES)}")
    key = suites.suite_key(suite, budget)
    stem = key.replace("-", "_").replace("@", "_") + "_suite"
    if suite == mujoco.MUJOCO:
        detail = mujoco.BUDGETS[budget]
        text = mujoco_report.tables(store, key, detail)
    else:
        detail = suites.BUDGETS[budget]
        text = report.tables(store, key, detail) + "\n" + report.cost(store, key, detail)
    print(text)
    md = results / f"{stem}.md"
    md.write_text(text + "\n")
    plot = mujoco_report.plot if suite == mujoco.MUJOCO else report.plot
    png = plot(store, key, results / f"{stem}.png", detail)
    print(f"\nwrote {_show(md)}" + (f" and {_show(png)}" if png else ""))


def _run_jobs(argv: list[str], jobs: int) -> None:
    """``--jobs N``: the same command N times with ``--shard i/N`` (and no report), side by side;
    each process appends to the same store (one whole line per record) and starts its own Ray."""
    base = [a for i, a in enumerate(argv) if a != "--no-report" and not a.startswith("--jobs")
            and not (i > 0 and argv[i - 1] == "--jobs")]
    procs = [subprocess.Popen([sys.executable, "-m", "benchmarks", *base, "--shard", f"{i}/{jobs}", "--no-report"],
                              cwd=suites.ROOT) for i in range(jobs)]
    failed = [i for i, p in enumerate(procs) if p.wait() != 0]
    if failed:
        raise SystemExit(f"--jobs: shard(s) {failed} of {jobs} failed; rerun the same command to resume")


OUT_DIR_HELP = ("where the report's .md and .png go (default: benchmarks/results/ for the default store, "
                "else the --store file's folder, so another store's report never overwrites the suite's tables)")


def _out_dir(args: argparse.Namespace) -> pathlib.Path:
    """``--out-dir``, else the results folder for the default store and the store's own folder for
    any other (a measurement of an option must not replace the published tables)."""
    if args.out_dir is not None:
        return pathlib.Path(args.out_dir)
    store = pathlib.Path(args.store)
    return RESULTS if store.resolve() == pathlib.Path(DEFAULT_STORE).resolve() else store.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(DEFAULT_STORE), help="the JSON-lines result store")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a suite (resumable)")
    run.add_argument("suite", choices=list(SUITES))
    run.add_argument("--datasets", "--regimes", dest="datasets", nargs="+", default=None, metavar="DATASET",
                     help=f"player-platform: regimes {list(suites.REGIMES)}; mujoco: <env>/<kind>, e.g. "
                          f"{mujoco.DATASETS[0]} (default: all of the suite)")
    run.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                     help="registered method names (default: all; `python -m benchmarks list`)")
    run.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (quick budget: 1)")
    run.add_argument("--budget", choices=sorted(suites.BUDGETS), default="full")
    run.add_argument("--force", action="store_true", help="rerun keys already in the store")
    run.add_argument("--jobs", type=int, default=1,
                     help="player-platform: run the (regime, seed) datasets in this many processes side by "
                          "side, one core each (2 on this machine; BENCHMARKS.md gives the suite's measured time)")
    run.add_argument("--shard", default=None, metavar="I/N", help=argparse.SUPPRESS)  # one --jobs process
    run.add_argument("--no-report", action="store_true")
    run.add_argument("--out-dir", default=None, help=OUT_DIR_HELP)
    run.add_argument("--fastq-training", nargs="+", default=[], metavar="KEY=VALUE",
                     help="player-platform: FAST-Q settings on top of its defaults, e.g. arm_choice_pessimism=1 "
                          "(values read as JSON, else as strings); recorded in each record's budget. Use "
                          "another --store: the records keep the method's name")
    rep = sub.add_parser("report", help="tables and plots from the store")
    rep.add_argument("--suite", default=suites.PLAYER_PLATFORM, choices=list(SUITES))
    rep.add_argument("--out-dir", default=None, help=OUT_DIR_HELP)
    rep.add_argument("--budget", choices=sorted(suites.BUDGETS), default="full")
    sub.add_parser("list", help="the suites and their registered methods")
    args = parser.parse_args(argv)
    store = Store(args.store)
    if args.cmd == "list":
        for suite, registry in SUITES.items():
            print(f"suite {suite}:")
            for m in registry.values():
                print(f"  {m.name:24s} {m.kind:10s}{' (Ray)' if m.needs_ray else ''}")
        print(f"  (mujoco, imported records only, not run: {', '.join(mujoco.IMPORTED_ONLY)})")
        return 0
    if args.cmd == "report":
        _report(store, args.suite, args.budget, _out_dir(args))
        return 0
    registry = SUITES[args.suite]
    methods = args.methods or list(registry)
    seeds = range(suites.QUICK_SEEDS if args.budget == "quick" else args.seeds)
    command = ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
    try:
        if args.suite == mujoco.MUJOCO:
            mujoco.check(args.datasets or [], methods, args.budget)
        else:
            unknown = [m for m in methods if m not in registry]
            if unknown:
                raise ValueError(f"unknown methods {unknown}; known: {list(registry)}")
            bad = [d for d in args.datasets or [] if d not in suites.REGIMES]
            if bad:
                raise ValueError(f"unknown regimes {bad}; known: {list(suites.REGIMES)}")
    except ValueError as err:
        parser.error(str(err))
    if args.suite == mujoco.MUJOCO:
        mujoco.run_suite(datasets=args.datasets or mujoco.DATASETS, methods=methods, seeds=seeds,
                         budget=args.budget, force=args.force, store=store, command=command)
    elif args.jobs > 1:
        _run_jobs(argv if argv is not None else sys.argv[1:], args.jobs)
    else:
        shard = tuple(int(x) for x in args.shard.split("/")) if args.shard else None
        try:
            detail = suites.with_fastq_training(args.budget, args.fastq_training)
        except ValueError as err:
            parser.error(str(err))
        suites.run_suite(suite=args.suite, regimes=args.datasets or suites.REGIMES, methods=methods, seeds=seeds,
                         budget=args.budget, force=args.force, store=store, command=command, shard=shard,
                         budget_detail=detail)
    if not args.no_report:
        _report(store, args.suite, args.budget, _out_dir(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
