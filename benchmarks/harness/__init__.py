"""The benchmark harness: one method registry, one append-only result store, suites and reports.

    python -m benchmarks run player-platform [--regimes ...] [--methods ...] [--seeds 5] [--budget full|quick]
    python -m benchmarks report [--suite player-platform] [--budget full|quick]
"""
