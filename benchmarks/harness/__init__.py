"""The benchmark harness: one method registry per suite, one append-only result store, suites and reports.

    python -m benchmarks run player-platform [--regimes ...] [--methods ...] [--seeds 5] [--budget full|quick]
    python -m benchmarks run mujoco [--datasets Hopper-v5/medium ...] [--methods ...] [--seeds 3] [--budget full|quick]
    python -m benchmarks report [--suite player-platform|mujoco] [--budget full|quick]
"""
