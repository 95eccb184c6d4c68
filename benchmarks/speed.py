"""Speed of FAST-Q inside RLlib, as ratios against baselines run in the same process.

    python -m benchmarks.speed updates          # phase 1/2 updates/s vs a plain PyTorch TD3+BC loop
    python -m benchmarks.speed user             # user view: 3-d Pendulum data, default br_dim vs plain TD3+BC
    python -m benchmarks.speed ingest           # build_algo() → first update, 100k and 1M rows
    python -m benchmarks.speed learners         # num_learners 1 vs 2 (CPU)
    python -m benchmarks.speed rllib            # RLlib's CQL and IQL updates/s on the same data
    python -m benchmarks.speed stream --rows 200000  # streaming ingest rows/s: columnar vs RLlib's default

Each prints a markdown table; the machine is shared and noisy, so runs alternate A/B rounds
and report medians and their ratio.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import ray
import torch

from benchmarks.td3bc_plain import updates_per_second  # noqa: E402
from rllib_fastq import FastQConfig  # noqa: E402
from rllib_fastq.data import schema  # noqa: E402
from rllib_fastq.data.io import write_transitions  # noqa: E402
from rllib_fastq.data.transitions import Transitions  # noqa: E402
from rllib_fastq.local_ray import init_local_ray  # noqa: E402

HIDDENS = [256, 256]
OBS_DIM, ACT_DIM = 17, 6  # HalfCheetah/Walker2d-sized


def make_rows(n: int, k: int = 1, seed: int = 0) -> Transitions:
    """``n`` random transitions of D4RL locomotion size (episodes of 1000 steps)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) % 1000
    obs = rng.normal(size=(n, OBS_DIM)).astype(np.float32)
    return Transitions(
        obs=obs, actions=rng.uniform(-1, 1, (n, ACT_DIM)).astype(np.float32),
        rewards=rng.normal(size=n).astype(np.float32), new_obs=np.roll(obs, -1, 0),
        terminateds=np.zeros(n, bool), truncateds=t == 999, eps_id=(np.arange(n) // 1000).astype(str),
        t=t.astype(np.int64), policy_id=rng.integers(0, k, n).astype(np.int64),
        meta=schema.DatasetMeta(obs_layout=schema.ObsLayout(static=OBS_DIM), num_policies=k),
    )


def fastq_config(path: str, *, k: int = 1, steps: int, pretrain: int, **training) -> FastQConfig:
    return (FastQConfig()
            .offline_data(input_=[path], dataset_num_iters_per_learner=steps)
            .training(num_policies=k, pretrain_steps=pretrain, actor_hiddens=HIDDENS, critic_hiddens=HIDDENS,
                      train_batch_size_per_learner=256, **training)
            .debugging(seed=0))


def timed_train(algo, rounds: int) -> list[float]:
    """Updates/s of each of ``rounds`` calls to ``algo.train()``."""
    steps = algo.config.dataset_num_iters_per_learner
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        algo.train()
        out.append(steps / (time.perf_counter() - t))
    return out


def bench_updates(path: str, steps: int, rounds: int) -> None:
    data = make_rows(100_000)
    tensors = {"obs": torch.as_tensor(data.obs), "actions": torch.as_tensor(data.actions),
               "rewards": torch.as_tensor(data.rewards), "new_obs": torch.as_tensor(data.new_obs),
               "terminateds": torch.as_tensor(data.terminateds, dtype=torch.float32)}
    phase1 = fastq_config(path, k=3, steps=steps, pretrain=10**9).build_algo()
    phase2 = fastq_config(path, steps=steps, pretrain=steps).build_algo()
    phase2.train()  # phase 1, then the next call builds the phase-2 cache
    phase2.train()
    # FAST-Q's actor and critic read the 256-wide BR, not the 17-wide state: a plain loop on
    # 256-wide inputs does the same arithmetic, so it isolates the framework's overhead.
    br = phase2.get_module().fastq_config["br_dim"]  # br_dim "auto" resolved from the data
    wide = dict(tensors, obs=torch.randn(100_000, br), new_obs=torch.randn(100_000, br))
    p1, p2, plain, plain_wide, plain_fused = [], [], [], [], []
    for _ in range(rounds):  # alternate so that machine noise hits all alike
        p1 += timed_train(phase1, 1)
        p2 += timed_train(phase2, 1)
        plain.append(updates_per_second(tensors, HIDDENS, 256, steps))
        plain_wide.append(updates_per_second(wide, HIDDENS, 256, steps))
        plain_fused.append(updates_per_second(wide, HIDDENS, 256, steps, fused_adam=True))
    m1, m2, mp, mw, mf = (statistics.median(x) for x in (p1, p2, plain, plain_wide, plain_fused))
    print("\n| what (batch 256, nets 256-256) | updates/s (median) | vs plain, same input width "
          "| vs plain on the state |")
    print("|---|---|---|---|")
    print(f"| plain PyTorch TD3+BC, {OBS_DIM}-wide state | {mp:.0f} | | 1.00 |")
    print(f"| plain PyTorch TD3+BC, {br}-wide input | {mw:.0f} | 1.00 | {mw / mp:.2f} |")
    print(f"| plain PyTorch TD3+BC, {br}-wide input, fused Adam (as FAST-Q) | {mf:.0f} | {mf / mw:.2f} | "
          f"{mf / mp:.2f} |")
    print(f"| FAST-Q phase 2 in RLlib (K=1, cached BR) | {m2:.0f} | {m2 / mw:.2f} | {m2 / mp:.2f} |")
    print(f"| FAST-Q phase 1 in RLlib (K=3, experts + adversary) | {m1:.0f} | | {m1 / mp:.2f} |")
    print(f"\nrounds={rounds}, steps/round={steps}; raw: phase1={np.round(p1)}, phase2={np.round(p2)}, "
          f"plain={np.round(plain)}, plain_wide={np.round(plain_wide)}, plain_fused={np.round(plain_fused)}")


def bench_user_view(tmp: str, steps: int, rounds: int) -> None:
    """What a user compares: the same 3-d Pendulum data and hidden sizes, FAST-Q (K=1, default
    ``br_dim``, so the actor and critic read b(s) of the width the data gives) vs plain TD3+BC on s."""
    import sys

    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    from tests.pendulum_data import make_pendulum_dataset

    data = make_pendulum_dataset(episodes=100, seed=0)  # 20k rows, obs 3, action 1
    data.policy_id[:] = 0
    data.meta = schema.DatasetMeta(obs_layout=schema.ObsLayout(static=3), num_policies=1)
    path = os.path.join(tmp, "pendulum.parquet")
    write_transitions(data, path, overwrite=True)
    tensors = {"obs": torch.as_tensor(data.obs), "actions": torch.as_tensor(data.actions),
               "rewards": torch.as_tensor(data.rewards), "new_obs": torch.as_tensor(data.new_obs),
               "terminateds": torch.as_tensor(data.terminateds, dtype=torch.float32)}
    algo = fastq_config(path, steps=steps, pretrain=steps).build_algo()
    algo.train()  # phase 1, then the next call builds the phase-2 cache
    algo.train()
    br = algo.get_module().fastq_config["br_dim"]
    fq, plain = [], []
    for _ in range(rounds):  # alternate so that machine noise hits both alike
        fq += timed_train(algo, 1)
        plain.append(updates_per_second(tensors, HIDDENS, 256, steps))
    algo.stop()
    mf, mp = statistics.median(fq), statistics.median(plain)
    print("\n| user view: Pendulum data (obs 3, action 1), batch 256, nets 256-256 | updates/s (median) "
          "| vs plain |")
    print("|---|---|---|")
    print(f"| plain PyTorch TD3+BC on the 3-d state | {mp:.0f} | 1.00 |")
    print(f"| FAST-Q phase 2 in RLlib, K=1, default br_dim (= {br}) | {mf:.0f} | {mf / mp:.2f} |")
    print(f"\nrounds={rounds}, steps/round={steps}; raw: fastq={np.round(fq)}, plain={np.round(plain)}")


def bench_ingest(tmp: str, sizes: list[int]) -> None:
    """build_algo() (read + validate + load) → first gradient update; then the one-off phase-2 cache."""
    print("\n| rows | path | build_algo() s | first update s | build → first update s | rows/s to first update "
          "| phase-2 cache build s |")
    print("|---|---|---|---|---|---|---|")
    for n in sizes:
        path = os.path.join(tmp, f"rows_{n}.parquet")
        write_transitions(make_rows(n), path, overwrite=True)
        for in_memory in (True, False):
            if not in_memory and n > 100_000:
                continue  # RLlib's per-row conversion: minutes; measured at 100k
            cfg = fastq_config(path, steps=1, pretrain=1, in_memory_data=in_memory)
            t0 = time.perf_counter()
            algo = cfg.build_algo()
            t1 = time.perf_counter()
            algo.train()  # one phase-1 step
            t2 = time.perf_counter()
            algo.train()  # the first phase-2 step builds the cache (in-memory path)
            cache = f"{time.perf_counter() - t2:.1f}" if in_memory else "n/a (not cached)"
            algo.stop()
            name = "in-memory (FAST-Q default)" if in_memory else "RLlib Ray Data (OfflinePreLearner)"
            print(f"| {n:,} | {name} | {t1 - t0:.1f} | {t2 - t1:.1f} | {t2 - t0:.1f} | {n / (t2 - t0):,.0f} "
                  f"| {cache} |")


def _stream_file(tmp: str, n: int, k: int = 3) -> str:
    """``n`` rows with every FAST-Q column (K arms, 4 reward components, expert actions)."""
    rng = np.random.default_rng(1)
    tr = make_rows(n, k=k)
    tr.reward_components = rng.normal(size=(n, 4)).astype(np.float32)
    tr.expert_actions = rng.uniform(-1, 1, (n, k, ACT_DIM)).astype(np.float32)
    tr.expert_actions_mask = rng.random((n, k)) < 0.5
    path = os.path.join(tmp, f"stream_{n}.parquet")
    write_transitions(tr, path, overwrite=True)
    return path


def bench_stream(tmp: str, rows: int, stock_rows: int, batch: int, rounds: int) -> None:
    """Streaming ingest (``in_memory_data=False``): rows/s of one pre-learner mapping Ray Data
    batches of a parquet file into training batches, in this process on one CPU: FAST-Q's
    columnar pre-learner against RLlib's stock ``OfflinePreLearner`` (row → episode → learner
    connector). Each timing includes the conversion of the file's Arrow batch into the batch
    format the pre-learner reads (what Ray Data does before calling it)."""
    import pyarrow.parquet as pq
    from ray.rllib.core import DEFAULT_MODULE_ID
    from ray.rllib.offline.offline_prelearner import OfflinePreLearner

    from rllib_fastq.data.columnar import BATCH_FORMAT, ColumnarPreLearner

    path = _stream_file(tmp, rows)
    cfg = fastq_config(path, k=3, steps=1, pretrain=1, in_memory_data=False,
                       reward_weights=[0.25, 0.25, -0.25, 0.25]).reference()
    cfg.validate()
    spaces = (cfg.observation_space, cfg.action_space)
    spec = cfg.get_multi_rl_module_spec(spaces={DEFAULT_MODULE_ID: spaces})
    stock = OfflinePreLearner(config=cfg, spaces=spaces, module_spec=spec)
    ours = ColumnarPreLearner(config=cfg, spaces=spaces, module_spec=spec)
    table = pq.read_table(path)
    slices = [table.slice(i, batch) for i in range(0, table.num_rows, batch)]

    def to_numpy(t):  # Ray Data's "numpy" batches: list columns as object arrays of arrays
        return {c: t[c].to_numpy(zero_copy_only=False) for c in t.column_names}

    def rate(prelearner, parts, convert) -> float:
        t0 = time.perf_counter()
        n = 0
        for part in parts:
            out = prelearner(convert(part))
            n += len(out[f"{DEFAULT_MODULE_ID}/obs"])
        return n / (time.perf_counter() - t0)

    stock_parts = slices[: max(1, stock_rows // batch)]
    runs: dict[str, list[float]] = {"stock": [], "arrow": [], "numpy": []}
    for _ in range(rounds):  # alternate so that machine noise hits all alike
        runs["stock"].append(rate(stock, stock_parts, to_numpy))
        runs["arrow"].append(rate(ours, slices, lambda t: t))
        runs["numpy"].append(rate(ours, slices, to_numpy))
    med = {k: statistics.median(v) for k, v in runs.items()}
    print(f"\n| streaming ingest, batch {batch}, obs {OBS_DIM}, actions {ACT_DIM}, K=3, 4 reward components "
          "| rows mapped per round | rows/s (median) | vs RLlib default |")
    print("|---|---|---|---|")
    print(f"| RLlib default: `OfflinePreLearner` (numpy batches) | {len(stock_parts) * batch:,} | "
          f"{med['stock']:,.0f} | 1.00 |")
    print(f"| FAST-Q columnar (`{BATCH_FORMAT}` batches, the default) | {rows:,} | {med['arrow']:,.0f} | "
          f"{med['arrow'] / med['stock']:.1f} |")
    print(f"| FAST-Q columnar (numpy batches) | {rows:,} | {med['numpy']:,.0f} | "
          f"{med['numpy'] / med['stock']:.1f} |")
    print(f"\nrounds={rounds}; raw rows/s: " + ", ".join(f"{k}={np.round(v).astype(int).tolist()}"
                                                     for k, v in runs.items()))


def bench_stream_pipeline(tmp: str, rows: int, batch: int) -> None:
    """The columnar pre-learner inside Ray Data as training runs it (read_parquet → one actor →
    iter_batches): wall time to drain ``rows / 16`` and ``rows`` rows, start-up included. The
    start-up (~10-20 s here) varies by seconds between runs: read the difference as a rough
    marginal rate only."""
    from ray.rllib.core import DEFAULT_MODULE_ID

    from rllib_fastq.data.columnar import BATCH_FORMAT, ColumnarPreLearner

    path = _stream_file(tmp, rows)
    cfg = fastq_config(path, k=3, steps=1, pretrain=1, in_memory_data=False,
                       reward_weights=[0.25, 0.25, -0.25, 0.25]).reference()
    cfg.validate()
    spaces = (cfg.observation_space, cfg.action_space)
    kwargs = {"config": cfg, "spaces": spaces,
              "module_spec": cfg.get_multi_rl_module_spec(spaces={DEFAULT_MODULE_ID: spaces})}
    times = {}
    for limit in (rows // 16, rows):
        t0 = time.perf_counter()
        ds = ray.data.read_parquet(path).limit(limit).map_batches(
            ColumnarPreLearner, fn_constructor_kwargs=kwargs, batch_size=batch, batch_format=BATCH_FORMAT,
            concurrency=1, num_cpus=1, zero_copy_batch=True)
        n = sum(len(b[f"{DEFAULT_MODULE_ID}/obs"]) for b in ds.iter_batches(batch_size=batch, batch_format="numpy"))
        times[n] = time.perf_counter() - t0
    (n1, t1), (n2, t2) = sorted(times.items())
    print(f"\nRay Data pipeline, columnar, batch {batch}: {n1:,} rows in {t1:.1f} s, {n2:,} rows in {t2:.1f} s "
          f"(start-up included); marginal {(n2 - n1) / max(t2 - t1, 1e-9):,.0f} rows/s")


def _peak_rss_mib(_: object = None) -> float:
    """Peak resident memory of the calling process (a learner or the driver), MiB."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_learners(path: str, steps: int, rounds: int) -> None:
    """Phase-2 throughput and peak memory per learner: the local learner vs 1 and 2 remote learners."""
    print("\n| num_learners | updates/s per learner (median) | samples/s total | ratio | peak RSS per learner MiB |")
    print("|---|---|---|---|---|")
    base = None
    for n in (0, 1, 2):
        cfg = fastq_config(path, steps=steps, pretrain=steps)
        if n:
            cfg = cfg.learners(num_learners=n, num_cpus_per_learner=1)
        algo = cfg.build_algo()
        algo.train()
        algo.train()
        rate = statistics.median(timed_train(algo, rounds))
        rss = [_peak_rss_mib()] if n == 0 else [r.get() for r in algo.learner_group.foreach_learner(_peak_rss_mib)]
        total = rate * 256 * max(1, n)
        base = base or total
        where = "local, in the driver" if n == 0 else "remote, gradients all-reduced over gloo"
        print(f"| {n} ({where}) | {rate:.0f} | {total:,.0f} | {total / base:.2f} | "
              f"{', '.join(f'{r:.0f}' for r in rss)} |")
        algo.stop()


def bench_rllib(path: str, steps: int) -> None:
    """RLlib's CQL and IQL (configured as in the quality benchmarks) against FAST-Q's phase 2."""
    from benchmarks.baselines import rllib_config

    # RLlib maps rows to episodes at ~1-2k rows/s: map a 20k-row file once (materialized) so the
    # table compares update speed, not ingest (see `ingest`).
    path = path.replace("rows_100000", "rows_20000")
    write_transitions(make_rows(20_000), path, overwrite=True)
    print("\n| algorithm (batch 256, nets 256-256, 20k rows, mapped once) | updates/s | ratio vs FAST-Q phase 2 |")
    print("|---|---|---|")
    fq = fastq_config(path, steps=steps, pretrain=steps).build_algo()
    fq.train()
    fq.train()
    base = statistics.median(timed_train(fq, 2))
    fq.stop()
    print(f"| FAST-Q phase 2 (in-memory) | {base:.1f} | 1.00 |")
    for name in ("CQL", "IQL"):
        # An env of the data's shape (17/6-dim) for CQL's local env runner.
        algo = rllib_config(name, path, steps_per_iter=steps, gamma=0.99, seed=0, hiddens=HIDDENS,
                            env="HalfCheetah-v5", obs_dim=OBS_DIM, act_dim=ACT_DIM).build_algo()
        algo.train()
        rate = statistics.median(timed_train(algo, 2))
        algo.stop()
        print(f"| RLlib {name} (Ray Data path) | {rate:.1f} | {rate / base:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["updates", "user", "ingest", "learners", "rllib", "stream"])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="100000,1000000")
    parser.add_argument("--rows", type=int, default=200_000, help="stream: rows the columnar path maps")
    parser.add_argument("--stock-rows", type=int, default=10_000, help="stream: rows RLlib's default maps")
    parser.add_argument("--batch", type=int, default=256, help="stream: rows per Ray Data batch")
    parser.add_argument("--pipeline-rows", type=int, default=0,
                        help="stream: also drain this many rows through a Ray Data pipeline (0: skip)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    init_local_ray(num_cpus=2, log_to_driver=False)
    print(f"torch {torch.__version__}, {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "rows_100000.parquet")
        write_transitions(make_rows(100_000), path)
        if args.what == "updates":
            bench_updates(path, args.steps, args.rounds)
        elif args.what == "user":
            bench_user_view(tmp, args.steps, args.rounds)
        elif args.what == "ingest":
            bench_ingest(tmp, [int(s) for s in args.sizes.split(",")])
        elif args.what == "stream":
            bench_stream(tmp, args.rows, args.stock_rows, args.batch, args.rounds)
            if args.pipeline_rows:
                bench_stream_pipeline(tmp, args.pipeline_rows, args.batch)
        elif args.what == "learners":
            bench_learners(path, args.steps, args.rounds)
        else:
            bench_rllib(path, args.steps)
    ray.shutdown()


if __name__ == "__main__":
    main()
