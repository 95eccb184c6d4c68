"""Serve round trip: train a small checkpoint, serve it on 127.0.0.1, ask /act (with the Q
decomposition), shut down.

    python examples/serve_roundtrip.py [--checkpoint DIR] [--port 8000] [--smoke]

The same from the shell: ``fastq serve CHECKPOINT`` and
``curl -X POST 127.0.0.1:8000/act -d '{"obs": ..., "explain": true}'``.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request

import ray
from _tiny import parse_args, tiny_config
from ray import serve

import rllib_fastq  # noqa: F401
from rllib_fastq.envs import PlayerPlatformEnv
from rllib_fastq.local_ray import init_local_ray
from rllib_fastq.serve import build_app
from rllib_fastq.spec import PLAYER_PLATFORM_DIR

args = parse_args(__doc__, **{"--checkpoint": dict(default=None, help="serve this checkpoint instead of training"),
                              "--port": dict(type=int, default=8000)})
init_local_ray(num_cpus=2, log_to_driver=False)  # Ray on 127.0.0.1 only

checkpoint = args.checkpoint
if checkpoint is None:
    config = tiny_config(str(PLAYER_PLATFORM_DIR / "heldout.parquet"), num_policies=3, steps=10 if args.smoke else 100,
                         gamma=0.9, reward_weights=[0.25, 0.25, -0.25, 0.25],
                         reward_component_names=["revenue", "engagement", "cost", "dwell"])
    algo = config.build_algo()
    for _ in range(3 if args.smoke else 6):
        algo.train()
    checkpoint = tempfile.mkdtemp(prefix="fastq_serve_")
    algo.save_to_path(checkpoint)
    algo.stop()
    print(f"trained a checkpoint: {checkpoint}")

serve.start(http_options={"host": "127.0.0.1", "port": args.port})
serve.run(build_app(checkpoint), name="fastq", route_prefix="/")
try:
    obs, _ = PlayerPlatformEnv().reset(seed=0)  # a player as the platform sees them
    body = {"obs": {k: v.tolist() for k, v in obs.items()}, "explain": True}  # policy_id: default "best"
    req = urllib.request.Request(f"http://127.0.0.1:{args.port}/act", data=json.dumps(body).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    print(f"POST /act -> arm {answer['policy_id']}, action {[round(a, 3) for a in answer['actions']]}")
    print(f"Q {answer['q']:.4f} = " + " + ".join(f"{v:.4f} ({k})" for k, v in answer["components"].items()))
finally:
    serve.shutdown()
    ray.shutdown()
print("serve shut down")
