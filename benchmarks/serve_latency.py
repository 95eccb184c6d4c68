"""Latency and throughput of the FAST-Q Serve deployment against direct in-process calls.

    python -m benchmarks.serve_latency                       # trains a small model first (~1 min)
    python -m benchmarks.serve_latency --checkpoint DIR      # an Algorithm or RLModule checkpoint

Server: ``c`` concurrent HTTP clients (asyncio + httpx on loopback), each sending one
observation per ``POST /act`` and waiting for the answer before sending the next; latency is
client-side (send to answer), throughput is answered requests per second.

Direct baseline, in the same run: ``module.forward_inference`` in this process, one thread
(like a replica), on a batch of ``c`` observations per call, i.e. what a perfectly batching
server could do for ``c`` concurrent requests with no HTTP, JSON or queueing cost. Latency is
per call, throughput is ``c`` / call time. With ``--obs-per-request k`` each request carries a
list of ``k`` observations and the direct batches hold ``c * k``; the throughput ratio compares
observations per second. Floor: the same clients on ``GET /healthz`` (no body,
no model), i.e. the cost of Serve's HTTP proxy and router alone. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import socket
import sys
import tempfile
import time
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")

import httpx  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DATA = os.path.join(ROOT, "offline_data", "player_platform", "train.parquet")


def train_small_model(out: str, steps: int = 50) -> str:
    """A briefly trained player-platform model with the default network sizes (latency does
    not depend on how well it is trained)."""
    from rllib_fastq import FastQConfig

    half = steps // 2
    cfg = (FastQConfig()
           .offline_data(input_=[DATA], dataset_num_iters_per_learner=half)
           .training(num_policies=3, pretrain_steps=half, gamma=0.9, train_batch_size_per_learner=64,
                     reward_weights=[0.25, 0.25, -0.25, 0.25],
                     reward_component_names=["revenue", "engagement", "cost", "dwell"]))
    algo = cfg.build_algo()
    algo.train()
    algo.train()
    algo.save_to_path(out)
    algo.stop()
    return out


def random_obs(module: Any, n: int, seed: int = 0) -> list[Any]:
    """``n`` JSON-ready observations in the module's observation form."""
    from rllib_fastq.data import schema

    rng = np.random.default_rng(seed)
    lay = schema.ObsLayout.from_space(module.observation_space)
    if lay.temporal is None:
        return rng.normal(size=(n, lay.static)).round(4).tolist()
    return [{"temporal": rng.normal(size=lay.temporal).round(4).tolist(),
             "static": rng.normal(size=lay.static).round(4).tolist()} for _ in range(n)]


def to_tensor(obs: list[Any]) -> Any:
    if isinstance(obs[0], dict):
        return {k: torch.tensor(np.array([o[k] for o in obs], np.float32)) for k in obs[0]}
    return torch.tensor(np.array(obs, np.float32))


def stats(latencies_s: list[float], wall_s: float, items: int) -> dict[str, float]:
    lat = np.asarray(latencies_s) * 1e3
    return {"p50": float(np.percentile(lat, 50)), "p99": float(np.percentile(lat, 99)),
            "rps": items / wall_s, "n": items}


async def load_server(url: str, obs: list[Any], concurrency: int, requests: int,
                      max_s: float, floor: bool = False, per_request: int = 1) -> dict[str, float]:
    """``concurrency`` closed-loop clients until ``requests`` answers or ``max_s`` seconds.

    ``floor``: ``GET /healthz`` instead (no body, no model): what Serve's proxy and router
    cost on this machine, the ceiling any ``/act`` implementation could reach."""

    async def call(client: httpx.AsyncClient, i: int) -> httpx.Response:
        if floor:
            return await client.get("/healthz")
        if per_request == 1:
            return await client.post("/act", json={"obs": obs[i % len(obs)]})
        return await client.post("/act", json={"obs": [obs[(i + j) % len(obs)] for j in range(per_request)]})

    latencies: list[float] = []
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60.0) as client:
        for i in range(2 * concurrency):  # warm connections and the replica
            (await call(client, i)).raise_for_status()
        start = time.perf_counter()
        deadline = start + max_s
        sent = 0

        async def worker(w: int) -> None:
            nonlocal sent
            while sent < requests and time.perf_counter() < deadline:
                sent += 1
                t0 = time.perf_counter()
                r = await call(client, w + sent)
                latencies.append(time.perf_counter() - t0)
                r.raise_for_status()

        await asyncio.gather(*(worker(w) for w in range(concurrency)))
        wall = time.perf_counter() - start
    return stats(latencies, wall, len(latencies))


def load_direct(module: Any, obs: list[Any], concurrency: int, requests: int, max_s: float) -> dict[str, float]:
    """Batches of ``concurrency`` observations through ``forward_inference`` in this process."""
    batches = [to_tensor([obs[(i + j) % len(obs)] for j in range(concurrency)]) for i in range(8)]
    requests = max(requests, 3 * concurrency)
    for b in batches[:3]:
        module.forward_inference({"obs": b})  # warm-up
    latencies: list[float] = []
    start = time.perf_counter()
    calls = max(1, requests // concurrency)
    while len(latencies) < calls and time.perf_counter() - start < max_s:
        t0 = time.perf_counter()
        module.forward_inference({"obs": batches[len(latencies) % len(batches)]})
        latencies.append(time.perf_counter() - t0)
    wall = time.perf_counter() - start
    return stats(latencies, wall, len(latencies) * concurrency)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def describe_model(module: Any) -> str:
    cfg = module.fastq_config
    params = sum(p.numel() for p in module.parameters())
    keys = ("num_policies", "lstm_hidden", "static_hidden", "expert_hiddens", "br_dim", "actor_hiddens",
            "critic_hiddens")
    return (f"{params:,} parameters (incl. target nets); obs {module.observation_space}; action dim "
            f"{module.action_dim}; " + ", ".join(f"{k}={cfg[k]}" for k in keys))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", help="Algorithm or RLModule checkpoint (default: train a small model)")
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--obs-per-request", type=int, default=1,
                   help="observations per POST /act (a list when > 1); direct batches match")
    p.add_argument("--requests", type=int, default=600, help="requests per concurrency level")
    p.add_argument("--max-seconds", type=float, default=30.0, help="time bound per level and path")
    p.add_argument("--max-batch-size", type=int, default=64)
    p.add_argument("--batch-wait-timeout-s", type=float, default=0.005)
    p.add_argument("--num-cpus", type=int, default=2, help="CPUs of the local Ray session")
    args = p.parse_args(argv)

    import ray
    from ray import serve
    from ray.rllib.core.rl_module.rl_module import RLModule

    from rllib_fastq.local_ray import init_local_ray
    from rllib_fastq.serve import build_app, resolve_module_checkpoint

    init_local_ray(num_cpus=args.num_cpus, log_to_driver=False, configure_logging=False)
    tmp = None
    try:
        ckpt = args.checkpoint
        if ckpt is None:
            tmp = tempfile.TemporaryDirectory(prefix="fastq-serve-bench-")
            print("training a small model (no --checkpoint) ...", flush=True)
            ckpt = train_small_model(os.path.join(tmp.name, "ckpt"))
        torch.set_num_threads(1)  # like a replica
        module = RLModule.from_checkpoint(resolve_module_checkpoint(ckpt)).eval()
        obs = random_obs(module, 64)
        port = free_port()
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(build_app(ckpt, max_batch_size=args.max_batch_size,
                            batch_wait_timeout_s=args.batch_wait_timeout_s), name="bench", route_prefix="/")
        url = f"http://127.0.0.1:{port}"
        rows = []
        for c in args.concurrency:
            k = args.obs_per_request
            srv = asyncio.run(load_server(url, obs, c, args.requests, args.max_seconds, per_request=k))
            base = asyncio.run(load_server(url, obs, c, args.requests, args.max_seconds, floor=True))
            direct = load_direct(module, obs, c * k, args.requests * k, args.max_seconds)
            rows.append((c, srv, direct, base))
            print(f"c={c}: server p50 {srv['p50']:.2f} ms, {srv['rps']:.0f} req/s; "
                  f"direct p50 {direct['p50']:.2f} ms, {direct['rps']:.0f} obs/s", flush=True)
    finally:
        serve.shutdown()
        ray.shutdown()
        if tmp is not None:
            tmp.cleanup()

    print(f"\nModel: {describe_model(module)}")
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPU cores, torch {torch.__version__}, "
          f"Python {sys.version.split()[0]}; load average at the end {os.getloadavg()[0]:.1f}; "
          f"Serve max_batch_size={args.max_batch_size}, batch_wait_timeout_s={args.batch_wait_timeout_s}; "
          f"{args.obs_per_request} observation(s) per request\n")
    print("| concurrency | server p50 ms | server p99 ms | server req/s | direct p50 ms | direct p99 ms "
          "| direct obs/s | p50 server/direct | throughput server/direct | requests "
          "| floor p50 ms | floor req/s |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    k = args.obs_per_request
    for c, s, d, b in rows:
        print(f"| {c} | {s['p50']:.2f} | {s['p99']:.2f} | {s['rps']:.0f} | {d['p50']:.2f} | {d['p99']:.2f} "
              f"| {d['rps']:.0f} | {s['p50'] / d['p50']:.1f}x | {s['rps'] * k / d['rps']:.2f} | {s['n']} "
              f"| {b['p50']:.2f} | {b['rps']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
