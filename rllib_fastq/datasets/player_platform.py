"""Logged multi-arm data from the player platform, with a dataset card (``fastq data player-platform``).

Each player is routed to one arm by a routing regime (:mod:`rllib_fastq.envs.routing`:
``aligned``, ``misaligned``, ``feature-rule``, ``uniform``, ``low-overlap``), and that arm acts
with Gaussian noise for the whole episode. Every row logs the router's propensity of the logged
arm (``policy_propensity``) and what every arm would have done (``expert_actions``): the arms'
deterministic rules, except the logging arm's slot, which holds the action actually logged.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.io import write_transitions
from rllib_fastq.data.transitions import Transitions
from rllib_fastq.data.validation import validate_transitions
from rllib_fastq.datasets import cards
from rllib_fastq.envs.arms import (
    ARM_NAMES,
    ArmPolicy,
    SegmentOraclePolicy,
    arm_actions,
    per_player_policy,
)
from rllib_fastq.envs.evaluate import evaluate_policy
from rllib_fastq.envs.player_platform import (
    REWARD_COMPONENT_NAMES,
    SEGMENT_NAMES,
    PlayerPlatformConfig,
    PlayerPlatformEnv,
)
from rllib_fastq.envs.routing import ROUTINGS, Router, RoutingPolicy

#: Seed offset of the online evaluation players, so they are never the logged ones.
EVAL_SEED_OFFSET = 1_000_003


def collect_episodes(num_episodes: int, seed: int,
                     env_config: PlayerPlatformConfig | Mapping[str, Any] | None = None,
                     router: Router | None = None) -> Transitions:
    """Roll out ``num_episodes`` players routed by ``router`` (default: ``aligned``); the same
    ``seed`` gives the same data."""
    config = PlayerPlatformConfig.from_any(env_config, flat_obs=False)
    env = PlayerPlatformEnv(config)
    K, noise = config.num_arms, config.logging_noise
    router = router or Router("aligned", num_arms=K)
    if router.num_arms != K:
        raise ValueError(f"router: routes to {router.num_arms} arms but the simulator has num_arms={K}.")
    router_rng = np.random.default_rng([seed, 1])
    action_rng = np.random.default_rng([seed, 2])
    rows: dict[str, list] = {k: [] for k in (
        "obs", "new_obs", "actions", "rewards", "terminateds", "truncateds", "eps_id", "t",
        "policy_id", "policy_propensity", "reward_components", "expert_actions")}
    obs, _ = env.reset(seed=seed)
    for ep in range(num_episodes):
        if ep:
            obs, _ = env.reset()
        arm, propensity = router(obs, router_rng)
        flat = schema.flatten_obs(obs)
        done, t = False, 0
        while not done:
            experts = arm_actions(obs, num_arms=K)
            action = np.clip(experts[arm] + noise * action_rng.standard_normal(3), -1.0, 1.0)
            experts[arm] = action
            obs, reward, terminated, truncated, info = env.step(action)
            new_flat = schema.flatten_obs(obs)
            for key, value in (("obs", flat), ("new_obs", new_flat), ("actions", action),
                               ("rewards", reward), ("terminateds", terminated),
                               ("truncateds", truncated), ("eps_id", f"{seed}-{ep}"), ("t", t),
                               ("policy_id", arm), ("policy_propensity", propensity),
                               ("reward_components", info["reward_components"]),
                               ("expert_actions", experts)):
                rows[key].append(value)
            flat, t, done = new_flat, t + 1, terminated or truncated
    n = len(rows["rewards"])
    meta = schema.DatasetMeta(
        obs_layout=config.obs_layout, num_policies=K, reward_component_names=REWARD_COMPONENT_NAMES,
        extra={"source": "player-platform", "seed": seed, "arm_names": list(ARM_NAMES[:K]),
               "routing": router.name, "overlap": router.share_randomised},
    )
    return Transitions(
        obs=np.stack(rows["obs"]), new_obs=np.stack(rows["new_obs"]),
        actions=np.stack(rows["actions"]).astype(np.float32),
        rewards=np.asarray(rows["rewards"], np.float32),
        terminateds=np.asarray(rows["terminateds"], bool), truncateds=np.asarray(rows["truncateds"], bool),
        eps_id=np.asarray(rows["eps_id"]), t=np.asarray(rows["t"], np.int64),
        policy_id=np.asarray(rows["policy_id"], np.int64),
        policy_propensity=np.asarray(rows["policy_propensity"], np.float32),
        reward_components=np.stack(rows["reward_components"]).astype(np.float32),
        expert_actions=np.stack(rows["expert_actions"]).astype(np.float32),
        expert_actions_mask=np.ones((n, K), bool),
        meta=meta, source=f"player-platform(seed={seed})",
    )


def logged_arm_stats(tr: Transitions) -> dict[str, Any]:
    """Per arm in the logged data: episodes, transitions, mean return and per-component means."""
    names = tr.meta.reward_component_names or REWARD_COMPONENT_NAMES
    _, ep_index = np.unique(tr.eps_id, return_inverse=True)
    ep_return = np.bincount(ep_index, weights=tr.rewards)
    ep_arm = np.zeros(ep_return.shape[0], np.int64)
    ep_arm[ep_index] = tr.policy_id
    ep_comp = np.stack([np.bincount(ep_index, weights=tr.reward_components[:, j])
                        for j in range(len(names))], axis=1)
    out = {}
    for k in range(int(tr.meta.num_policies or tr.policy_id.max() + 1)):
        sel = ep_arm == k
        out[ARM_NAMES[k]] = {
            "arm": k,
            "episodes": int(sel.sum()),
            "transitions": int((tr.policy_id == k).sum()),
            "mean_return": float(ep_return[sel].mean()) if sel.any() else None,
            "components": {n: float(ep_comp[sel, j].mean()) if sel.any() else None
                           for j, n in enumerate(names)},
        }
    return out


def _mean_episode_return(tr: Transitions) -> float:
    _, ep_index = np.unique(tr.eps_id, return_inverse=True)
    return float(np.bincount(ep_index, weights=tr.rewards).mean())


def online_values(config: PlayerPlatformConfig, num_episodes: int, seed: int,
                  router: Router | None = None) -> dict[str, Any]:
    """True values (online) of each arm, the logged routing, the per-segment oracle and the
    per-player policy.

    The segment oracle's arm table is chosen on one set of players and measured on another,
    so its margin is not inflated by selection on the evaluation noise.
    """
    layout = config.obs_layout
    select_seed, eval_seed = seed + EVAL_SEED_OFFSET, seed + 2 * EVAL_SEED_OFFSET
    arms = {ARM_NAMES[k]: evaluate_policy(ArmPolicy(k, layout), config, num_episodes, eval_seed)
            for k in range(config.num_arms)}
    selection = [evaluate_policy(ArmPolicy(k, layout), config, num_episodes, select_seed)
                 for k in range(config.num_arms)]
    best_per_segment = tuple(
        int(np.argmax([sel["segment_returns"].get(s, -np.inf) for sel in selection]))
        for s in SEGMENT_NAMES)
    seg_oracle = evaluate_policy(SegmentOraclePolicy(best_per_segment, layout), config,
                                 num_episodes, eval_seed)
    per_player = evaluate_policy(lambda o: per_player_policy(o, layout), config, num_episodes, eval_seed)
    router = router or Router("aligned", num_arms=config.num_arms)
    routing = evaluate_policy(RoutingPolicy(router, layout, seed=eval_seed), config, num_episodes, eval_seed)
    best_arm = max(arms, key=lambda a: arms[a]["mean_return"])
    best = arms[best_arm]["mean_return"]

    def margin(v: float) -> float:
        return (v - best) / abs(best)

    return {
        "num_episodes": num_episodes, "eval_seed": eval_seed, "selection_seed": select_seed,
        "arms": arms, "best_arm": best_arm, "best_arm_return": best,
        "segment_oracle": {
            "best_arm_per_segment": {s: ARM_NAMES[k] for s, k in zip(SEGMENT_NAMES, best_per_segment)},
            **seg_oracle, "margin_over_best_arm": margin(seg_oracle["mean_return"])},
        "per_player_policy": {**per_player, "margin_over_best_arm": margin(per_player["mean_return"])},
        "logged_routing": {"routing": router.name, "overlap": router.share_randomised, **routing,
                           "margin_over_best_arm": margin(routing["mean_return"])},
    }


def generate_player_platform_dataset(
    out: str | os.PathLike,
    *,
    episodes: int = 1000,
    seed: int = 0,
    heldout_episodes: int | None = None,
    heldout_seed: int | None = None,
    fmt: str = "parquet",
    overwrite: bool = False,
    env_config: PlayerPlatformConfig | Mapping[str, Any] | None = None,
    eval_episodes: int = 1000,
    routing: str = "aligned",
    overlap: float | None = None,
) -> dict[str, Any]:
    """Write ``train`` and ``heldout`` splits plus ``card.json`` and ``README.md`` to ``out``.

    ``heldout`` holds other players (``heldout_seed``, default ``seed + 1``; size default a
    quarter of ``episodes``). Returns the card. Existing files are kept unless ``overwrite``.
    """
    if fmt not in ("parquet", "json"):
        raise ValueError(f"format: expected 'parquet' or 'json', got {fmt!r}.")
    if episodes < 1:
        raise ValueError(f"episodes: expected >= 1, got {episodes}.")
    config = PlayerPlatformConfig.from_any(env_config, flat_obs=False)
    router = Router(routing, num_arms=config.num_arms, overlap=overlap)
    heldout_episodes = max(1, episodes // 4) if heldout_episodes is None else heldout_episodes
    heldout_seed = seed + 1 if heldout_seed is None else heldout_seed
    if heldout_seed == seed:
        raise ValueError("heldout_seed: must differ from seed, or held-out players repeat training ones.")
    out = str(out)
    suffix = ".parquet" if fmt == "parquet" else ".jsonl"
    splits = {"train": (episodes, seed), "heldout": (heldout_episodes, heldout_seed)}
    targets = [os.path.join(out, f) for f in (*(s + suffix for s in splits), "card.json", "README.md")]
    existing = [p for p in targets if os.path.exists(p)]
    if existing and not overwrite:
        raise FileExistsError(f"{existing[0]} exists; pass --overwrite (overwrite=True) to replace it.")
    os.makedirs(out, exist_ok=True)

    files, logged, mixtures = {}, {}, {}
    gen_time, gen_rows = 0.0, 0
    for split, (n_ep, s) in splits.items():
        if n_ep < 1:
            continue
        start = time.perf_counter()
        tr = collect_episodes(n_ep, s, config, router)
        gen_time += time.perf_counter() - start
        gen_rows += len(tr)
        validate_transitions(tr, num_policies=config.num_arms, action_dim=3,
                             num_reward_components=len(REWARD_COMPONENT_NAMES))
        path = write_transitions(tr, os.path.join(out, split + suffix), fmt=fmt, overwrite=overwrite)
        files[split] = {"path": os.path.basename(path), "episodes": n_ep, "seed": s, "transitions": len(tr),
                        "bytes": os.path.getsize(path)}
        logged[split] = logged_arm_stats(tr)
        mixtures[split] = tr

    card = {
        "name": "player-platform",
        "description": "Logged data of K rule-based arms on the FAST-Q player-platform simulator "
                       "(rllib_fastq.envs, env id rllib_fastq/PlayerPlatform-v0).",
        "simulator": dataclasses.asdict(config),
        "obs_layout": config.obs_layout.to_dict(),
        "reward_component_names": list(REWARD_COMPONENT_NAMES),
        "arm_names": list(ARM_NAMES[:config.num_arms]),
        "routing": {"name": router.name, "overlap": router.share_randomised},
        "files": files,
        "logged_by_arm": logged,
        # Value of the logging behaviour as a whole (routing + arms): what the data's author got.
        "logged_mixture_return": {split: _mean_episode_return(p) for split, p in mixtures.items()},
        "online": online_values(config, eval_episodes, seed, router),
        "generation": {"transitions": gen_rows, "seconds": gen_time,
                       "transitions_per_s": gen_rows / max(gen_time, 1e-9)},
        "versions": cards.versions("numpy", "gymnasium", "pyarrow"),
    }
    cards.write_card(out, card, card_markdown(card), indent=2)
    return card


def card_markdown(card: dict[str, Any]) -> str:
    """A short human-readable dataset card."""
    on = card["online"]
    lines = [
        "# Player-platform logged dataset", "",
        card["description"], "",
        f"Observation: Dict(temporal [T, F] = {card['obs_layout']['temporal']}, "
        f"static [F_s] = {card['obs_layout']['static']}), stored flat as concat(temporal.ravel(), static). "
        f"Action: Box(-1, 1, (3,)). Reward components: {', '.join(card['reward_component_names'])}; "
        f"reward = {list(card['simulator']['reward_weights'])} · components.", "",
        "| split | file | seed | episodes | transitions | bytes |", "|---|---|---|---|---|---|",
    ]
    for split, f in card["files"].items():
        lines.append(f"| {split} | {f['path']} | {f['seed']} | {f['episodes']} | {f['transitions']} "
                     f"| {f['bytes']} |")
    comp_header = " | ".join(card["reward_component_names"]) + " |"
    lines += ["", "## Logged data per arm (train; returns are biased by routing)", "",
              "| arm | episodes | transitions | mean return | " + comp_header,
              "|---" * (4 + len(card["reward_component_names"])) + "|"]
    for name, s in card["logged_by_arm"]["train"].items():
        comps = " | ".join(f"{v:.2f}" if v is not None else "-" for v in s["components"].values())
        ret = f"{s['mean_return']:.2f}" if s["mean_return"] is not None else "-"
        lines.append(f"| {name} | {s['episodes']} | {s['transitions']} | {ret} | {comps} |")
    lines += ["", f"Logging behaviour as a whole (routing + arms), mean return: "
              f"{card['logged_mixture_return']['train']:.2f}."]
    lines += ["", f"## True values online ({on['num_episodes']} fresh players each, mean ± s.e.)", "",
              "| policy | mean return | " + comp_header,
              "|---" * (2 + len(card["reward_component_names"])) + "|"]
    rows = [(f"arm {n}", v) for n, v in on["arms"].items()]
    rows += [(f"logged routing ({on['logged_routing']['routing']}, overlap {on['logged_routing']['overlap']:g})",
              on["logged_routing"]),
             ("per-segment oracle (best arm per observed segment)", on["segment_oracle"]),
             ("hand-written per-player policy", on["per_player_policy"])]
    for name, v in rows:
        comps = " | ".join(f"{x:.2f}" for x in v["components"].values())
        lines.append(f"| {name} | {v['mean_return']:.2f} ± {v['sem_return']:.2f} | {comps} |")
    seg_names = list(next(iter(on["arms"].values()))["segment_returns"])
    lines += ["", "Mean return per observed segment (no arm is best for every kind of player):", "",
              "| policy | " + " | ".join(seg_names) + " |", "|---" * (1 + len(seg_names)) + "|"]
    for name, v in rows:
        lines.append(f"| {name} | " + " | ".join(f"{v['segment_returns'].get(g, float('nan')):.2f}"
                                                  for g in seg_names) + " |")
    seg, pp = on["segment_oracle"], on["per_player_policy"]
    lines += ["", f"Best single arm: **{on['best_arm']}** ({on['best_arm_return']:.2f}). "
              f"Per-segment oracle margin over it: **{100 * seg['margin_over_best_arm']:+.1f} %** "
              f"(arms per segment: {seg['best_arm_per_segment']}); hand-written per-player "
              f"policy: **{100 * pp['margin_over_best_arm']:+.1f} %**.", "",
              f"Generated at {card['generation']['transitions_per_s']:.0f} transitions/s; "
              f"versions: {card['versions']}. Full numbers and simulator parameters: `card.json`.", ""]
    return "\n".join(lines)


def add_cli_arguments(parser: argparse.ArgumentParser) -> None:
    """Arguments of ``fastq data player-platform``."""
    parser.add_argument("--episodes", type=int, default=1000, help="training players (episodes)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--format", choices=("parquet", "json"), default="parquet")
    parser.add_argument("--heldout-episodes", type=int, default=None, help="default: episodes // 4")
    parser.add_argument("--heldout-seed", type=int, default=None, help="default: seed + 1")
    parser.add_argument("--eval-episodes", type=int, default=1000, help="players per online evaluation")
    parser.add_argument("--routing", choices=ROUTINGS, default="aligned",
                        help="routing regime of the experiment (rllib_fastq.envs.routing)")
    parser.add_argument("--overlap", type=float, default=None,
                        help="share of randomly routed players (default: the regime's own)")
    parser.add_argument("--num-arms", type=int, default=None)
    parser.add_argument("--window", type=int, default=None, help="T, steps of history in the observation")
    parser.add_argument("--overwrite", action="store_true", help="replace existing files in --out")


def run_cli(args: argparse.Namespace) -> int:
    """Run ``fastq data player-platform``; prints where the data went and the card's headline."""
    env_config = {k: v for k, v in (("num_arms", args.num_arms),
                                    ("window", args.window)) if v is not None}
    card = generate_player_platform_dataset(
        args.out, episodes=args.episodes, seed=args.seed, heldout_episodes=args.heldout_episodes,
        heldout_seed=args.heldout_seed, fmt=args.format, overwrite=args.overwrite,
        env_config=env_config, eval_episodes=args.eval_episodes, routing=args.routing, overlap=args.overlap)
    on = card["online"]
    print(f"wrote {', '.join(f['path'] for f in card['files'].values())} to {args.out} "
          f"({card['generation']['transitions_per_s']:.0f} transitions/s); best arm {on['best_arm']} "
          f"{on['best_arm_return']:.2f}, logged routing {on['logged_routing']['mean_return']:.2f}, "
          f"per-segment oracle {on['segment_oracle']['mean_return']:.2f} "
          f"({100 * on['segment_oracle']['margin_over_best_arm']:+.1f} %)")
    return 0
