"""D4RL-style MuJoCo locomotion datasets made here: ``fastq data mujoco``.

D4RL/Minari downloads are unavailable, so we train the behaviour policies ourselves (SAC,
:mod:`rllib_fastq.datasets.sac`) and roll them out. Per environment this writes, under
``offline_data/mujoco/<env>/``:

* ``medium``: the first evaluated policy whose return reaches 1/3 of D4RL's expert return
  (falls back to the best one, flagged ``medium_is_fallback`` in the card);
* ``medium-replay``: the replay buffer up to that point, whole episodes (policy_id 0 = uniform
  random warm-up, 1 = the SAC learner), subsampled by whole episodes to the size cap;
* ``high``: the best policy reached (its measured return is in the card, not called "expert");
* ``medium-high``: the first halves of ``medium`` (policy_id 0) and ``high`` (policy_id 1);
* ``multi-policy``: equal shares from 5 policies, policy_id 0 = uniform random, 1 and 2 = the
  first snapshots reaching 1/4 and 1/2 of the medium policy's normalised score, 3 = medium,
  4 = best;
* ``card.json`` and ``README.md``: versions, seed, returns, normalised scores, sha256 checksums.

Training checkpoints every ``--checkpoint-every`` env steps (at the next episode end) into
``checkpoints/``: ``state.pt`` (learner, optimisers, RNGs, eval history), append-only replay
segments and actor snapshots. **Rerunning the same command resumes from the checkpoint**
(``fastq data mujoco``); a finished environment is
skipped, and its datasets are (re)written only if missing (or ``--overwrite``).

Why this module is long: the five datasets are cut from one trained run (its policy picks,
rollouts and replay buffer) and written with one card; the resumable two-stage CLI drives them.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import subprocess
import sys
import time
from typing import Any

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.io import transitions_to_table
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.datasets import cards
from rllib_fastq.evaluation.scores import normalized_score, reference_returns

ENVS = ("HalfCheetah-v5", "Hopper-v5", "Walker2d-v5")
# HalfCheetah passes medium (1/3 expert) near 90k steps; 150k already gives ~43 normalised.
DEFAULT_STEPS = {"HalfCheetah-v5": 150_000, "Hopper-v5": 300_000, "Walker2d-v5": 300_000}
#: D4RL's "medium" rule: the first policy whose evaluation return reaches this share of the expert's.
MEDIUM_FRACTION = 1.0 / 3.0
DATASETS = ("medium", "medium-replay", "high", "medium-high", "multi-policy")
#: Rows per dataset: ~8 MiB per file (MuJoCo floats barely compress), so that all datasets plus
#: the resumable checkpoints of the three envs stay within the repo's ~150 MiB budget.
DEFAULT_TRANSITIONS = {"HalfCheetah-v5": 50_000, "Hopper-v5": 75_000, "Walker2d-v5": 50_000}


def checkpoint_dir(out_dir: str, env_id: str) -> str:
    """Where ``env_id``'s resumable training state lives."""
    return os.path.join(out_dir, env_id, "checkpoints")


def load_state(out_dir: str, env_id: str) -> dict[str, Any] | None:
    """The saved training state of ``env_id`` (None if training never checkpointed)."""
    from rllib_fastq.datasets.sac import load_state as _load

    return _load(checkpoint_dir(out_dir, env_id))


def train(env_id: str, out_dir: str, steps: int, **kwargs: Any) -> dict[str, Any]:
    """Train or resume SAC on ``env_id`` into ``out_dir/<env>/checkpoints`` (see ``sac.train``)."""
    from rllib_fastq.datasets.sac import train as _train

    return _train(env_id, checkpoint_dir(out_dir, env_id), steps,
                  medium_return=MEDIUM_FRACTION * reference_returns(env_id)[1],
                  after_checkpoint=prune_snapshots, **kwargs)


def select_policies(state: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The eval records behind the behaviour policies medium, high, quarter and half.

    ``quarter``/``half`` are the first snapshots before medium reaching 1/4 and 1/2 of medium's
    normalised score, half after quarter; where training jumped past a target in one
    checkpoint, the best snapshot in that stretch stands in, so the five policies of
    ``multi-policy`` stay distinct and ordered in training time.
    """
    evals = state["evals"]
    if not evals:
        raise ValueError(f"{state['env_id']}: no evaluated snapshot yet; train first.")
    best = max(evals, key=lambda e: e["return"])
    medium = next((e for e in evals if e["step"] == state["medium_step"]), None)
    out = {"high": best, "medium": medium or best}
    after = -1
    for name, frac in (("quarter", 0.25), ("half", 0.5)):
        target = frac * out["medium"]["normalized"]
        stretch = [e for e in evals if after < e["step"] < out["medium"]["step"]]
        if stretch:
            out[name] = next((e for e in stretch if e["normalized"] >= target),
                             max(stretch, key=lambda e: e["normalized"]))
        else:  # medium is the first snapshot: nothing earlier to choose from
            out[name] = next((e for e in evals if e["normalized"] >= target), evals[0])
        after = out[name]["step"]
    return out


def prune_snapshots(ckpt: str, state: dict[str, Any], picks: dict[str, Any] | None = None) -> None:
    """Delete actor snapshots no dataset can use (all are kept until medium is known)."""
    # Only once medium is known can quarter/half be chosen; until then every snapshot may matter.
    if picks is None and state["medium_step"] is None:
        return
    keep = {e["snapshot"] for e in (picks or select_policies(state)).values()}
    for path in glob.glob(os.path.join(ckpt, "actors", "step_*.pt")):
        if os.path.basename(path) not in keep:
            os.remove(path)


def rollout(env_id: str, actor: Any, n: int, *, seed: int, policy_id: int,
            eps_prefix: str) -> tuple[Transitions, list[float]]:
    """``n`` transitions of ``actor`` (stochastic, as D4RL's behaviour; None = uniform random).

    Episodes are whole except possibly the last, which is cut at ``n`` and marked truncated.
    Returns the transitions and the returns of the complete episodes.
    """
    import gymnasium as gym
    import torch

    from rllib_fastq.datasets.sac import env_seed

    env = gym.make(env_id)
    low, high = env.action_space.low, env.action_space.high
    rng = np.random.default_rng(seed)
    gen = torch.Generator().manual_seed(seed)
    keys = ("obs", "actions", "rewards", "new_obs", "term", "trunc", "eps", "t")
    cols: dict[str, list] = {k: [] for k in keys}
    returns, ep = [], 0
    while len(cols["obs"]) < n:
        obs, _ = env.reset(seed=env_seed(seed, ep))
        total, t, done = 0.0, 0, False
        while not done and len(cols["obs"]) < n:
            if actor is None:
                a = rng.uniform(-1.0, 1.0, low.shape).astype(np.float32)
            else:
                a = actor.act(obs, generator=gen)
            new_obs, r, term, trunc, _ = env.step(low + (a + 1.0) * 0.5 * (high - low))
            done = term or trunc
            for k, v in zip(keys, (obs, a, r, new_obs, term, trunc, f"{eps_prefix}{ep:06d}", t)):
                cols[k].append(v)
            total, t, obs = total + float(r), t + 1, new_obs
        if done:
            returns.append(total)
        else:
            cols["trunc"][-1] = True  # our cut, not the environment's: bootstrap through it
        ep += 1
    env.close()
    tr = Transitions(**{k: np.asarray(cols[k], np.float32) for k in keys[:4]},
                     terminateds=np.asarray(cols["term"], bool), truncateds=np.asarray(cols["trunc"], bool),
                     eps_id=np.asarray(cols["eps"]), t=np.asarray(cols["t"], np.int64),
                     policy_id=np.full(n, policy_id, np.int64))
    return tr, returns


def replay_transitions(out_dir: str, env_id: str, state: dict[str, Any], upto: int, cap: int,
                       seed: int = 0) -> Transitions:
    """The replay buffer's first ``upto`` steps as whole episodes, subsampled to <= ``cap`` rows.

    policy_id 0 = the uniform-random warm-up, 1 = the SAC learner (whichever version acted).
    """
    from rllib_fastq.datasets.sac import ReplayBuffer

    replay = os.path.join(checkpoint_dir(out_dir, env_id), "replay")
    with np.load(sorted(glob.glob(os.path.join(replay, "seg_*.npz")))[0]) as first:
        buf = ReplayBuffer(upto, first["obs"].shape[1], first["actions"].shape[1])
    buf.load_segments(replay, upto)
    done = buf.terminateds | buf.truncateds
    episode = np.concatenate([[0], np.cumsum(done)[:-1]])
    starts = np.flatnonzero(np.concatenate([[True], done[:-1]]))
    t = np.arange(upto) - starts[episode]
    keep = np.ones(upto, bool)
    if upto > cap:
        lengths = np.bincount(episode)
        chosen, total = np.zeros(len(lengths), bool), 0
        for e in np.random.default_rng(seed).permutation(len(lengths)):
            if total + lengths[e] <= cap:
                chosen[e], total = True, total + lengths[e]
        keep = chosen[episode]
    start_steps = state["sac_config"]["start_steps"]
    tr = Transitions(
        obs=buf.obs, actions=buf.actions, rewards=buf.rewards, new_obs=buf.new_obs,
        terminateds=buf.terminateds, truncateds=buf.truncateds,
        eps_id=np.char.add("replay-", episode.astype(str)), t=t.astype(np.int64),
        policy_id=(np.arange(upto) >= start_steps).astype(np.int64),
    )
    return tr.take(np.flatnonzero(keep))


def head(tr: Transitions, n: int, policy_id: int) -> Transitions:
    """The first ``n`` rows relabelled ``policy_id``; a cut episode is marked truncated."""
    out = tr.take(np.arange(min(n, len(tr))))
    if not (out.terminateds[-1] or out.truncateds[-1]):
        out.truncateds[-1] = True
    out.policy_id[:] = policy_id
    return out


def write_parquet(tr: Transitions, path: str) -> str:
    """Write ``tr`` like ``io.write_transitions`` (zstd parquet, our schema), a third smaller.

    MuJoCo floats are near-incompressible; dictionary-encoding them (pyarrow's default) only adds
    bytes, while byte-stream-split lets zstd find the shared exponents.
    """
    import pyarrow.parquet as pq

    table = transitions_to_table(tr)
    floats = [f"{c}.list.element" for c in ("obs", "new_obs", "actions")] + ["rewards"]
    tmp = path + ".tmp"
    pq.write_table(table, tmp, compression="zstd", compression_level=9,
                   use_dictionary=["eps_id", "t", "policy_id"], use_byte_stream_split=floats)
    os.replace(tmp, path)
    return path


def make_datasets(env_id: str, out_dir: str, *, transitions: int | None = None,
                  overwrite: bool = False, seed: int | None = None) -> dict[str, Any]:
    """Write the five datasets, card.json and README.md of a trained ``env_id``; return the card.

    Skips (returning the existing card) when ``card.json`` exists and not ``overwrite``.
    """
    from rllib_fastq.datasets.sac import load_actor

    transitions = transitions or DEFAULT_TRANSITIONS[env_id]
    root = os.path.join(out_dir, env_id)
    card_path = os.path.join(root, "card.json")
    if os.path.exists(card_path) and not overwrite:
        with open(card_path) as f:
            return json.load(f)
    state = load_state(out_dir, env_id)
    if state is None:
        raise FileNotFoundError(f"{checkpoint_dir(out_dir, env_id)}: no training checkpoint; train first.")
    seed = state["seed"] if seed is None else seed
    ckpt = checkpoint_dir(out_dir, env_id)
    picks = select_policies(state)
    prune_snapshots(ckpt, state, picks)
    actors = {k: load_actor(os.path.join(ckpt, "actors", e["snapshot"])) for k, e in picks.items()}
    order = ("random", "quarter", "half", "medium", "high")
    runs: dict[str, tuple[Transitions, list[float]]] = {}
    for i, name in enumerate(("medium", "high")):
        runs[name] = rollout(env_id, actors[name], transitions, seed=seed + 101 + i, policy_id=0,
                             eps_prefix=f"{name}-")
    share = transitions // len(order)
    parts = []
    for pid, name in enumerate(order):
        n = transitions - share * (len(order) - 1) if pid == len(order) - 1 else share
        tr, rets = rollout(env_id, actors.get(name), n, seed=seed + 201 + pid, policy_id=pid,
                           eps_prefix=f"p{pid}-")
        parts.append(tr)
        runs[f"multi:{name}"] = (tr, rets)
    half = transitions // 2
    datasets = {
        "medium": (runs["medium"][0], ["medium"]),
        "high": (runs["high"][0], ["high"]),
        "medium-replay": (replay_transitions(out_dir, env_id, state, picks["medium"]["step"],
                                             transitions, seed), ["uniform random warm-up", "SAC learner"]),
        "medium-high": (Transitions.concat([head(runs["medium"][0], half, 0),
                                            head(runs["high"][0], transitions - half, 1)]),
                        ["medium", "high"]),
        "multi-policy": (Transitions.concat(parts), list(order)),
    }
    lo, hi = reference_returns(env_id)
    random_rets = runs["multi:random"][1]

    def summary(rets: list[float]) -> dict[str, Any]:
        m = float(np.mean(rets)) if rets else float("nan")
        return {"return_mean": m, "return_std": float(np.std(rets)) if rets else float("nan"),
                "episodes": len(rets), "normalized": normalized_score(env_id, m)}

    policies: dict[str, Any] = {"random": {"step": 0, **summary(random_rets)}}
    for name in order[1:]:
        e = picks[name]
        beh = runs[name][1] if name in runs else runs[f"multi:{name}"][1]
        policies[name] = {"step": e["step"], "snapshot": e["snapshot"], "eval_return": e["return"],
                          "eval_normalized": e["normalized"], **summary(beh)}
    card: dict[str, Any] = {
        "env_id": env_id, "seed": seed, "created_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "versions": cards.versions("numpy", "torch", "gymnasium", "mujoco", "pyarrow"),
        "training": {"algorithm": "SAC", "budget_steps": state["budget"], "steps": state["step"],
                     "sac_config": state["sac_config"], "evals": state["evals"]},
        "medium_rule": "first snapshot with eval return >= 1/3 of the D4RL expert return",
        "medium_is_fallback": state["medium_step"] is None,
        "reference_returns": {"d4rl_random": lo, "d4rl_expert": hi,
                              "measured_random": summary(random_rets)["return_mean"]},
        "policies": policies, "datasets": {},
        "behaviour": "stochastic SAC policies (sampled actions, as D4RL); eval_* = deterministic",
        "dataset_notes": {
            "medium-replay": f"replay buffer steps [0, {picks['medium']['step']}), whole episodes, "
                             f"subsampled by episode to <= {transitions} rows; obs stored float16",
            "medium-high": "first half of medium (policy_id 0) + first half of high (policy_id 1)",
            "multi-policy": "equal shares; a cut last episode is marked truncated",
        },
        "resume": f"python -m rllib_fastq.cli data mujoco --env {env_id}",
    }
    for name, (tr, names) in datasets.items():
        tr.meta = schema.DatasetMeta(
            obs_layout=schema.ObsLayout(static=int(tr.obs.shape[1])), num_policies=len(names),
            extra={"env_id": env_id, "dataset": name, "policy_names": names, "seed": seed,
                   "generator": "rllib_fastq.datasets.mujoco"})
        path = write_parquet(tr, os.path.join(root, f"{name}.parquet"))
        card["datasets"][name] = {
            "file": os.path.basename(path), "rows": len(tr), "episodes": int(len(np.unique(tr.eps_id))),
            "policy_names": names, "bytes": os.path.getsize(path), "sha256": cards.sha256(path)}
    cards.write_card(root, card, _readme(card))
    return card


def _readme(card: dict[str, Any]) -> str:
    ref = card["reference_returns"]
    lines = [
        f"# {card['env_id']} offline datasets (D4RL-style, made here)", "",
        f"SAC behaviour policies trained for {card['training']['steps']} env steps, seed {card['seed']}; "
        f"versions: {', '.join(f'{k} {v}' for k, v in card['versions'].items())}.",
        f"Normalised score = 100 (R - R_random) / (R_expert - R_random) with D4RL's R_random = "
        f"{ref['d4rl_random']:.1f}, R_expert = {ref['d4rl_expert']:.1f}; our measured random return: "
        f"{ref['measured_random']:.1f}. \"high\" is the best policy we reached, not D4RL's expert"
        + ("; no policy reached 1/3 of expert, so medium = high." if card["medium_is_fallback"] else "."),
        "Behaviour returns are of the stochastic policies that made the data.", "",
        "| policy | step | behaviour return | normalised |", "|---|---|---|---|",
    ]
    for name, p in card["policies"].items():
        lines.append(f"| {name} | {p['step']} | {p['return_mean']:.1f} ± {p['return_std']:.1f} | "
                     f"{p['normalized']:.1f} |")
    lines += ["", "| dataset | rows | episodes | policy_id = | sha256 |", "|---|---|---|---|---|"]
    for d in card["datasets"].values():
        ids = ", ".join(f"{i}: {n}" for i, n in enumerate(d["policy_names"]))
        lines.append(f"| {d['file']} | {d['rows']} | {d['episodes']} | {ids} | `{d['sha256'][:16]}…` |")
    lines += [""] + [f"- {k}: {v}" for k, v in card["dataset_notes"].items()]
    lines += ["", f"Regenerate / resume (from the repo root): `{card['resume']}`; rerunning resumes "
              "training from `checkpoints/`, and `--stage datasets --overwrite` rewrites the data.", ""]
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fastq data mujoco``."""
    parser.add_argument("--env", action="append", choices=ENVS, default=None,
                        help="environment(s), trained one after another (default: all three)")
    parser.add_argument("--out", default="offline_data/mujoco", help="output root directory")
    parser.add_argument("--steps", type=int, default=None,
                        help=f"env-step budget per environment (default: {DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--stage", choices=("all", "train", "datasets"), default="all")
    parser.add_argument("--transitions", type=int, default=None,
                        help=f"rows per dataset (default: {DEFAULT_TRANSITIONS})")
    parser.add_argument("--checkpoint-every", type=int, default=10_000, help="env steps")
    parser.add_argument("--eval-episodes", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--overwrite", action="store_true", help="rewrite existing datasets")


def run_cli(args: argparse.Namespace) -> int:
    """Train and/or write datasets; several envs (or ``--stage all``) run as one child per stage.

    Children pick up code fixed while a long job runs, and a crash in one env's dataset stage
    does not stop the next env's training.
    """
    envs = args.env or list(ENVS)
    if len(envs) > 1 or args.stage == "all":
        failed = 0
        for env_id in envs:
            for stage in ("train", "datasets"):
                cmd = [sys.executable, "-m", "rllib_fastq.datasets.mujoco", "--env", env_id,
                       "--stage", stage, *_forwarded(args)]
                print(f"$ {' '.join(cmd)}", flush=True)
                rc = subprocess.call(cmd)
                failed += rc != 0
                if rc != 0:
                    print(f"[{env_id}] stage {stage} failed (exit {rc})", flush=True)
                    break
        return 1 if failed else 0
    import torch

    torch.set_num_threads(args.threads)
    env_id = envs[0]
    out = os.path.abspath(args.out)
    if args.stage == "train":
        train(env_id, out, args.steps or DEFAULT_STEPS[env_id], seed=args.seed,
              checkpoint_every=args.checkpoint_every, eval_episodes=args.eval_episodes,
              log=lambda m: print(time.strftime("%H:%M:%S"), m, flush=True))
    else:
        make_datasets(env_id, out, transitions=args.transitions, overwrite=args.overwrite)
    return 0


def _forwarded(args: argparse.Namespace) -> list[str]:
    out = ["--out", os.path.abspath(args.out), "--overwrite"][: 3 if args.overwrite else 2]
    for name in ("seed", "checkpoint_every", "eval_episodes", "threads", "steps", "transitions"):
        if getattr(args, name) is not None:
            out += ["--" + name.replace("_", "-"), str(getattr(args, name))]
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m rllib_fastq.datasets.mujoco`` (same arguments as ``fastq data mujoco``)."""
    parser = argparse.ArgumentParser(prog="python -m rllib_fastq.datasets.mujoco", description=__doc__)
    add_cli_arguments(parser)
    return run_cli(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
