"""``python -m benchmarks run SUITE ...`` and ``python -m benchmarks report``: the one harness.

    python -m benchmarks run player-platform --seeds 5                # the whole suite, full budget
    python -m benchmarks run player-platform --regimes misaligned --methods FAST-Q "direct-method chooser"
    python -m benchmarks run player-platform --budget quick           # smoke test: 1 seed, tiny budgets
    python -m benchmarks report [--suite player-platform] [--budget quick]
    python -m benchmarks list                                         # the registered methods

``run`` appends one record per (suite, regime, method, seed) to ``benchmarks/results/store.jsonl``
and skips keys already there (rerun the same command to resume; ``--force`` reruns). ``report``
writes markdown tables (stdout and ``benchmarks/results/<suite>_suite[_quick].md``) and a PNG plot.
See ``benchmarks/harness/suites.py`` for the protocol and the budgets.
"""

from __future__ import annotations

import argparse
import os
import sys

os.environ.setdefault("OMP_NUM_THREADS", "1")

from benchmarks.harness import report, suites  # noqa: E402
from benchmarks.harness.registry import REGISTRY  # noqa: E402
from benchmarks.harness.store import DEFAULT_STORE, Store  # noqa: E402

RESULTS = suites.ROOT / "benchmarks/results"


def _report(store: Store, suite: str, budget: str) -> None:
    key = suites.suite_key(suite, budget)
    stem = key.replace("-", "_").replace("@", "_") + "_suite"
    detail = suites.BUDGETS[budget]
    text = report.tables(store, key, detail) + "\n" + report.cost(store, key, detail)
    print(text)
    md = RESULTS / f"{stem}.md"
    md.write_text(text + "\n")
    png = report.plot(store, key, RESULTS / f"{stem}.png", detail)
    print(f"\nwrote {md.relative_to(suites.ROOT)}" + (f" and {png.relative_to(suites.ROOT)}" if png else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--store", default=str(DEFAULT_STORE), help="the JSON-lines result store")
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a suite (resumable)")
    run.add_argument("suite", choices=[suites.PLAYER_PLATFORM])
    run.add_argument("--regimes", nargs="+", default=list(suites.REGIMES), choices=suites.REGIMES)
    run.add_argument("--methods", nargs="+", default=None, metavar="METHOD",
                     help="registered method names (default: all; `python -m benchmarks list`)")
    run.add_argument("--seeds", type=int, default=5, help="seeds 0..N-1 (quick budget: 1)")
    run.add_argument("--budget", choices=sorted(suites.BUDGETS), default="full")
    run.add_argument("--force", action="store_true", help="rerun keys already in the store")
    run.add_argument("--no-report", action="store_true")
    rep = sub.add_parser("report", help="tables and plots from the store")
    rep.add_argument("--suite", default=suites.PLAYER_PLATFORM)
    rep.add_argument("--budget", choices=sorted(suites.BUDGETS), default="full")
    sub.add_parser("list", help="the registered methods")
    args = parser.parse_args(argv)
    store = Store(args.store)
    if args.cmd == "list":
        for m in REGISTRY.values():
            print(f"{m.name:24s} {m.kind:10s}{' (Ray)' if m.needs_ray else ''}")
        return 0
    if args.cmd == "report":
        _report(store, args.suite, args.budget)
        return 0
    methods = args.methods or list(REGISTRY)
    unknown = [m for m in methods if m not in REGISTRY]
    if unknown:
        parser.error(f"unknown methods {unknown}; known: {list(REGISTRY)}")
    seeds = range(suites.QUICK_SEEDS if args.budget == "quick" else args.seeds)
    command = ["python -m benchmarks", *(argv if argv is not None else sys.argv[1:])]
    suites.run_suite(suite=args.suite, regimes=args.regimes, methods=methods, seeds=seeds, budget=args.budget,
                     force=args.force, store=store, command=command)
    if not args.no_report:
        _report(store, args.suite, args.budget)
    return 0


if __name__ == "__main__":
    sys.exit(main())
