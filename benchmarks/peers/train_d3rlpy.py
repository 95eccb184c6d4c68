"""Train one d3rlpy peer on a FAST-Q parquet dataset and export its greedy policy (TorchScript).

Runs INSIDE the peers' virtual environment (``benchmarks/peers/setup.sh`` creates ``.venv-peers``):
d3rlpy 2.8.1 pins ``gymnasium==1.0.0`` while ``ray[rllib]==2.60`` pins ``gymnasium==1.2.2``, so this
script imports only d3rlpy, torch, numpy, pandas and pyarrow, never ``rllib_fastq`` or ``ray``.

    .venv-peers/bin/python benchmarks/peers/train_d3rlpy.py \\
        --data offline_data/player_platform/train.parquet --algo iql --steps 2000 --seed 0 \\
        --gamma 0.9 --out /tmp/peer-iql

Writes ``OUT/policy.pt`` (d3rlpy's ``save_policy``: the observation scaler and the greedy actor traced
into one TorchScript graph, input ``[B, obs_dim]`` float32, output ``[B, act_dim]``) and
``OUT/meta.json`` (algorithm, settings, steps, seed, seconds, updates/s, versions, last losses).

Settings per algorithm follow d3rlpy's own D4RL reproduction scripts
(``reproductions/offline/*.py`` at tag v2.8.1) where one exists; every algorithm additionally gets
d3rlpy's ``StandardObservationScaler`` (our observations mix counters, rates and one-hot segments).
Actions are already in [-1, 1], so no action scaler. See ``benchmarks/peers/README.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ALGOS = ("bc", "td3plusbc", "iql", "cql", "awac")

# Per-algorithm settings of d3rlpy's D4RL reproduction scripts (v2.8.1); None = d3rlpy's default.
#   hidden: encoder hidden sizes (d3rlpy's default for vector observations is [256, 256]);
#   batch_size: the script's batch size (our CLI default follows it unless --batch-size is given).
REPRODUCTION: dict[str, dict[str, Any]] = {
    # No BC reproduction script in d3rlpy: its BCConfig defaults (deterministic policy, Adam 1e-3).
    "bc": {"hidden": [256, 256], "batch_size": 256, "learning_rate": 1e-3, "policy_type": "deterministic"},
    # reproductions/offline/td3_plus_bc.py
    "td3plusbc": {
        "hidden": [256, 256], "batch_size": 256, "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4,
        "target_smoothing_sigma": 0.2, "target_smoothing_clip": 0.5, "alpha": 2.5, "update_actor_interval": 2,
        "tau": 0.005,
    },
    # reproductions/offline/iql.py (cosine-annealed actor learning rate over the whole run; rewards scaled
    # so that the dataset's return range spans 1000, as in the IQL paper)
    "iql": {
        "hidden": [256, 256], "batch_size": 256, "actor_learning_rate": 3e-4, "critic_learning_rate": 3e-4,
        "expectile": 0.7, "weight_temp": 3.0, "max_weight": 100.0, "tau": 0.005,
        "actor_lr_schedule": "cosine(T_max=steps)", "reward_scaler": "ReturnBasedRewardScaler(multiplier=1000)",
    },
    # reproductions/offline/cql.py (conservative_weight 5.0: the script's value for every dataset but
    # the *-medium-v0 ones; alpha fixed at 1.0 by alpha_learning_rate=0)
    "cql": {
        "hidden": [256, 256, 256], "batch_size": 256, "actor_learning_rate": 1e-4, "critic_learning_rate": 3e-4,
        "temp_learning_rate": 1e-4, "alpha_learning_rate": 0.0, "n_action_samples": 10,
        "conservative_weight": 5.0, "tau": 0.005,
    },
    # reproductions/offline/awac.py (4x256 encoders, actor Adam with weight decay 1e-4, batch 1024)
    "awac": {
        "hidden": [256, 256, 256, 256], "batch_size": 1024, "actor_learning_rate": 3e-4,
        "critic_learning_rate": 3e-4, "actor_weight_decay": 1e-4, "lam": 1.0, "n_action_samples": 1, "tau": 0.005,
    },
}


def load_dataset(path: str | Path) -> tuple[Any, dict[str, Any]]:
    """Read a FAST-Q parquet file into a d3rlpy ``MDPDataset``.

    Rows are grouped into episodes by ``eps_id`` (kept in file order, sorted by ``t`` inside each).
    ``terminals`` come from ``terminateds``. An episode that ends without termination (``truncateds``,
    or simply the last row of an ``eps_id``) is a timeout; d3rlpy would drop the last transition of
    such an episode (it has no next row), so we append the logged final ``new_obs`` as one extra
    observation row (action 0, reward 0, marked as the timeout). Every logged transition is then
    trained on with its true next observation; the dummy action and reward are never used by
    BC, TD3+BC, IQL, CQL or AWAC (no next-action targets, returns unchanged).
    """
    import d3rlpy

    df = pd.read_parquet(path)
    missing = {"obs", "actions", "rewards", "terminateds", "eps_id", "t"} - set(df.columns)
    if missing:
        raise ValueError(f"{path}: missing columns {sorted(missing)}")
    order = {e: i for i, e in enumerate(pd.unique(df["eps_id"]))}
    df = df.assign(_ep=df["eps_id"].map(order)).sort_values(["_ep", "t"], kind="stable").reset_index(drop=True)

    obs = np.stack(df["obs"].to_numpy()).astype(np.float32)
    actions = np.stack(df["actions"].to_numpy()).astype(np.float32)
    if actions.ndim == 1:
        actions = actions[:, None]
    rewards = df["rewards"].to_numpy(np.float32)
    terminated = df["terminateds"].to_numpy(bool)
    ep = df["_ep"].to_numpy()
    last = np.append(ep[1:] != ep[:-1], True)
    has_new_obs = "new_obs" in df.columns
    if terminated[~last].any():
        raise ValueError(f"{path}: 'terminateds' is set before the last row of an episode")

    obs_rows, act_rows, rew_rows, term_rows, tout_rows = [], [], [], [], []
    starts = np.flatnonzero(np.append(True, ep[1:] != ep[:-1]))
    ends = np.append(starts[1:], len(df))
    n_timeouts = 0
    for s, e in zip(starts, ends):
        term = np.zeros(e - s, np.float32)
        tout = np.zeros(e - s, np.float32)
        o, a, r = obs[s:e], actions[s:e], rewards[s:e]
        if terminated[e - 1]:
            term[-1] = 1.0
        elif has_new_obs:
            n_timeouts += 1
            final = np.asarray(df["new_obs"].iat[e - 1], np.float32)[None]
            o = np.concatenate([o, final])
            a = np.concatenate([a, np.zeros_like(a[:1])])
            r = np.concatenate([r, np.zeros(1, np.float32)])
            term = np.append(term, np.float32(0.0))
            tout = np.append(tout, np.float32(1.0))
        else:  # no next observation logged: d3rlpy drops this episode's last transition
            n_timeouts += 1
            tout[-1] = 1.0
        obs_rows.append(o)
        act_rows.append(a)
        rew_rows.append(r)
        term_rows.append(term)
        tout_rows.append(tout)

    dataset = d3rlpy.dataset.MDPDataset(
        observations=np.concatenate(obs_rows),
        actions=np.concatenate(act_rows),
        rewards=np.concatenate(rew_rows),
        terminals=np.concatenate(term_rows),
        timeouts=np.concatenate(tout_rows),
        action_space=d3rlpy.ActionSpace.CONTINUOUS,
    )
    info = {
        "path": str(path),
        "transitions": int(len(df)),
        "episodes": int(len(starts)),
        "terminated_episodes": int(terminated[last].sum()),
        "timeout_episodes": n_timeouts,
        "final_new_obs_appended": bool(has_new_obs),
        "obs_dim": int(obs.shape[1]),
        "action_dim": int(actions.shape[1]),
        "action_min": float(actions.min()),
        "action_max": float(actions.max()),
    }
    return dataset, info


def build_algo(algo: str, *, gamma: float, batch_size: int, hidden: list[int], steps: int) -> Any:
    """The d3rlpy algorithm object for ``algo`` with its reproduction settings (see ``REPRODUCTION``)."""
    import d3rlpy
    from d3rlpy.models.encoders import VectorEncoderFactory
    from d3rlpy.optimizers import AdamFactory, CosineAnnealingLRFactory

    p = REPRODUCTION[algo]
    enc = VectorEncoderFactory(hidden_units=list(hidden))
    common: dict[str, Any] = {
        "batch_size": batch_size,
        "gamma": gamma,
        "observation_scaler": d3rlpy.preprocessing.StandardObservationScaler(),
    }
    if algo == "bc":
        cfg = d3rlpy.algos.BCConfig(
            learning_rate=p["learning_rate"], policy_type=p["policy_type"], encoder_factory=enc, **common
        )
    elif algo == "td3plusbc":
        cfg = d3rlpy.algos.TD3PlusBCConfig(
            actor_learning_rate=p["actor_learning_rate"], critic_learning_rate=p["critic_learning_rate"],
            target_smoothing_sigma=p["target_smoothing_sigma"], target_smoothing_clip=p["target_smoothing_clip"],
            alpha=p["alpha"], update_actor_interval=p["update_actor_interval"], tau=p["tau"],
            actor_encoder_factory=enc, critic_encoder_factory=enc, **common,
        )
    elif algo == "iql":
        cfg = d3rlpy.algos.IQLConfig(
            actor_learning_rate=p["actor_learning_rate"], critic_learning_rate=p["critic_learning_rate"],
            actor_optim_factory=AdamFactory(lr_scheduler_factory=CosineAnnealingLRFactory(T_max=steps)),
            expectile=p["expectile"], weight_temp=p["weight_temp"], max_weight=p["max_weight"], tau=p["tau"],
            reward_scaler=d3rlpy.preprocessing.ReturnBasedRewardScaler(multiplier=1000.0),
            actor_encoder_factory=enc, critic_encoder_factory=enc, value_encoder_factory=enc, **common,
        )
    elif algo == "cql":
        cfg = d3rlpy.algos.CQLConfig(
            actor_learning_rate=p["actor_learning_rate"], critic_learning_rate=p["critic_learning_rate"],
            temp_learning_rate=p["temp_learning_rate"], alpha_learning_rate=p["alpha_learning_rate"],
            n_action_samples=p["n_action_samples"], conservative_weight=p["conservative_weight"], tau=p["tau"],
            actor_encoder_factory=enc, critic_encoder_factory=enc, **common,
        )
    elif algo == "awac":
        cfg = d3rlpy.algos.AWACConfig(
            actor_learning_rate=p["actor_learning_rate"], critic_learning_rate=p["critic_learning_rate"],
            actor_optim_factory=AdamFactory(weight_decay=p["actor_weight_decay"]),
            lam=p["lam"], n_action_samples=p["n_action_samples"], tau=p["tau"],
            actor_encoder_factory=enc, critic_encoder_factory=enc, **common,
        )
    else:
        raise ValueError(f"unknown algo {algo!r}; expected one of {ALGOS}")
    return cfg.create(device="cpu:0")


def parse_hidden(text: str) -> list[int]:
    """``"256,256"`` -> ``[256, 256]``."""
    try:
        sizes = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--hidden: expected comma-separated integers, got {text!r}") from err
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden: expected positive sizes, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="FAST-Q parquet file (flat obs/actions list columns)")
    parser.add_argument("--algo", required=True, choices=ALGOS)
    parser.add_argument("--steps", type=int, required=True, help="gradient steps (updates)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--gamma", type=float, default=0.99)
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: the reproduction script's (1024 for awac, 256 otherwise)")
    parser.add_argument("--hidden", type=parse_hidden, default=None,
                        help="encoder hidden sizes for every network, e.g. 256,256 "
                             "(default: the reproduction script's: cql 3x256, awac 4x256, others 2x256)")
    parser.add_argument("--out", required=True, help="output directory (policy.pt, meta.json)")
    parser.add_argument("--verbose", action="store_true", help="keep d3rlpy's info/debug log lines")
    args = parser.parse_args(argv)
    if args.steps < 1:
        parser.error("--steps must be >= 1")

    t0 = time.perf_counter()
    import torch

    torch.set_num_threads(1)
    import d3rlpy

    if not args.verbose:
        # d3rlpy logs through structlog (its own dependency) at debug level: keep warnings only.
        import structlog

        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
        # save_policy traces the greedy graph; the shape assertion it warns about holds for any batch size.
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
    d3rlpy.seed(args.seed)
    torch.use_deterministic_algorithms(True, warn_only=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    dataset, data_info = load_dataset(args.data)
    if data_info["action_min"] < -1.0 - 1e-6 or data_info["action_max"] > 1.0 + 1e-6:
        raise ValueError(f"actions outside [-1, 1] ({data_info['action_min']}, {data_info['action_max']}); "
                         "this script assumes the FAST-Q convention and uses no action scaler")
    batch_size = args.batch_size or REPRODUCTION[args.algo]["batch_size"]
    hidden = args.hidden or REPRODUCTION[args.algo]["hidden"]
    algo = build_algo(args.algo, gamma=args.gamma, batch_size=batch_size, hidden=hidden, steps=args.steps)

    # Whole epochs of 1000 steps when the step count allows (d3rlpy runs n_steps // n_steps_per_epoch
    # epochs), else one epoch of all steps.
    per_epoch = 1000 if args.steps % 1000 == 0 else args.steps
    t_fit, cpu_fit = time.perf_counter(), time.process_time()
    history = algo.fit(
        dataset,
        n_steps=args.steps,
        n_steps_per_epoch=per_epoch,
        experiment_name=f"{args.algo}_seed{args.seed}",
        with_timestamp=False,
        logger_adapter=d3rlpy.logging.NoopAdapterFactory(),
        show_progress=False,
        save_interval=10**9,
    )
    fit_s = time.perf_counter() - t_fit
    fit_cpu_s = time.process_time() - cpu_fit
    policy_path = out / "policy.pt"
    algo.save_policy(str(policy_path))
    wall_s = time.perf_counter() - t0

    settings = dict(REPRODUCTION[args.algo])
    settings.update(batch_size=batch_size, hidden=list(hidden), gamma=args.gamma,
                    observation_scaler="StandardObservationScaler", action_scaler=None)
    meta = {
        "algo": args.algo,
        "d3rlpy_class": type(algo).__name__,
        "settings": settings,
        "d3rlpy_config": json.loads(algo.config.serialize()),
        "steps": args.steps,
        "seed": args.seed,
        "data": data_info,
        "wall_s": round(wall_s, 3),
        "fit_s": round(fit_s, 3),
        "updates_per_s": round(args.steps / fit_s, 2),
        # CPU seconds of this process: on shared cores the wall-clock rate depends on the neighbours.
        "fit_cpu_s": round(fit_cpu_s, 3),
        "updates_per_cpu_s": round(args.steps / fit_cpu_s, 2),
        "torch_threads": torch.get_num_threads(),
        "last_epoch_metrics": {k: float(v) for k, v in (history[-1][1] if history else {}).items()},
        "policy": policy_path.name,
        "policy_io": {"input": ["B", data_info["obs_dim"]], "output": ["B", data_info["action_dim"]]},
        "versions": {
            "d3rlpy": d3rlpy.__version__, "torch": torch.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "python": platform.python_version(),
        },
        "command": [os.path.basename(sys.executable), *sys.argv],
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": platform.node(),
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(json.dumps({k: meta[k] for k in ("algo", "steps", "seed", "wall_s", "updates_per_s", "updates_per_cpu_s")}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
