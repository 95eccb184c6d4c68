"""ONE registry of benchmark methods: name → ``fn(dataset, seed, budget) -> Trained``.

A method trains on (or reads) one dataset and returns a :class:`Trained`: a policy function of the
simulator's DICT observation (flat-observation learners are wrapped with ``schema.flatten_obs``)
plus optional extras (e.g. FAST-Q's chosen-arm share, filled in after the evaluation). ``kind`` says
how the report shows a method: ``reference`` (arms, logged routing, oracles: rules that need no
training), ``baseline`` (the direct-method chooser), ``learned`` (FAST-Q, BC, TD3+BC, RLlib) and
``peer`` (d3rlpy, trained in its own venv by ``benchmarks.peers``). ``needs_ray``: the suite starts
Ray once per process when a selected method needs it.

Budgets are plain dicts chosen by the suite (``benchmarks.harness.suites``); every method reads the
keys it needs and records what it actually did in its extras.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import time
from collections.abc import Callable
from typing import Any

import numpy as np

Policy = Callable[[dict[str, np.ndarray]], np.ndarray]
GAMMA, HIDDENS = 0.9, [128, 128]
REWARD_WEIGHTS = [0.25, 0.25, -0.25, 0.25]
COMPONENTS = ["revenue", "engagement", "cost", "dwell"]


@dataclasses.dataclass
class DatasetHandle:
    """One generated dataset of a suite: ``dir`` holds train/heldout parquet and ``card.json``."""

    suite: str
    name: str  # the regime
    seed: int
    dir: pathlib.Path
    card: dict[str, Any]
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)

    @classmethod
    def load(cls, suite: str, name: str, seed: int, path: str | pathlib.Path) -> DatasetHandle:
        path = pathlib.Path(path)
        return cls(suite, name, seed, path, json.loads((path / "card.json").read_text()))

    @property
    def train(self) -> str:
        return str(self.dir / self.card["files"]["train"]["path"])

    @property
    def layout(self) -> Any:
        from rllib_fastq.data.schema import ObsLayout

        return ObsLayout.from_dict(self.card["obs_layout"])

    @property
    def num_arms(self) -> int:
        return len(self.card["arm_names"])

    def flat(self) -> dict[str, Any]:
        """The training split as float tensors (``baselines.load_flat``), loaded once."""
        if "flat" not in self.cache:
            from benchmarks.baselines import load_flat

            self.cache["flat"] = load_flat(self.train)
        return self.cache["flat"]


@dataclasses.dataclass
class Trained:
    policy: Policy
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    #: Called after the evaluation; its dict is merged into the extras (e.g. chosen-arm shares).
    after_eval: Callable[[], dict[str, Any]] | None = None
    #: Called last (e.g. ``algo.stop()``).
    close: Callable[[], None] | None = None
    #: The policy maps a batch of observations (dict of ``[B, ...]`` arrays) to ``[B, 3]`` actions:
    #: the evaluation steps its players side by side (``evaluate_policy(batched=True)``).
    batched: bool = False


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    fn: Callable[[DatasetHandle, int, dict[str, Any]], Trained]
    kind: str
    needs_ray: bool = False


REGISTRY: dict[str, Method] = {}


def register(name: str, kind: str, needs_ray: bool = False) -> Callable:
    def deco(fn: Callable[[DatasetHandle, int, dict[str, Any]], Trained]) -> Callable:
        if name in REGISTRY:
            raise ValueError(f"method {name!r} registered twice")
        REGISTRY[name] = Method(name, fn, kind, needs_ray)
        return fn

    return deco


def flat_policy(fn: Callable[[np.ndarray], np.ndarray]) -> Policy:
    """A flat-observation policy as a policy of the dict observation."""
    from rllib_fastq.data.schema import flatten_obs

    return lambda obs: fn(flatten_obs(obs))


# -- reference rows: the arms, the logged routing, the oracles -------------------------------------

def _arm_method(k: int) -> Callable:
    def fn(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
        from rllib_fastq.envs import ARM_NAMES, ArmPolicy

        return Trained(ArmPolicy(k, ds.layout),
                       {"card_value": ds.card["online"]["arms"][ARM_NAMES[k]]["mean_return"]})

    return fn


def _register_arms() -> None:
    from rllib_fastq.envs import ARM_NAMES

    for k in range(3):
        register(f"arm {ARM_NAMES[k]}", "reference")(_arm_method(k))


_register_arms()


@register("logged routing", "reference")
def logged_routing(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    from rllib_fastq.envs import Router, RoutingPolicy

    router = Router.from_card(ds.card, ds.num_arms)
    return Trained(RoutingPolicy(router, ds.layout, seed=budget["eval_seed"] + seed),
                   {"card_value": ds.card["online"]["logged_routing"]["mean_return"]})


@register("per-segment oracle", "reference")
def segment_oracle(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    """The card's per-segment arm table (chosen on the card's selection players)."""
    from rllib_fastq.envs import SegmentOraclePolicy

    seg = ds.card["online"]["segment_oracle"]
    table = tuple(ds.card["arm_names"].index(a) for a in seg["best_arm_per_segment"].values())
    return Trained(SegmentOraclePolicy(table, ds.layout),
                   {"card_value": seg["mean_return"], "arm_per_segment": seg["best_arm_per_segment"]})


@register("per-player policy", "reference")
def per_player(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    from rllib_fastq.envs import per_player_policy

    layout = ds.layout
    return Trained(lambda obs: per_player_policy(obs, layout),
                   {"card_value": ds.card["online"]["per_player_policy"]["mean_return"]})


# -- the counterfactual bar ------------------------------------------------------------------------

@register("direct-method chooser", "baseline")
def direct_method(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    from benchmarks.harness.simple import DirectMethodChooser
    from rllib_fastq.envs import arm_actions

    dm = DirectMethodChooser(ds.train, num_arms=ds.num_arms, static_dim=ds.layout.static)
    counts = np.zeros(ds.num_arms, np.int64)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:
        k = dm.choose(obs["static"])
        counts[k] += 1
        return arm_actions(obs, num_arms=dm.num_arms)[k]

    return Trained(act, {"episodes_per_arm": dm.episodes},
                   after_eval=lambda: {"chosen_arm_share": (counts / max(1, counts.sum())).round(4).tolist()})


# -- learned methods -------------------------------------------------------------------------------

def _fastq(ds: DatasetHandle, seed: int, budget: dict[str, Any], reference: bool) -> Trained:
    import torch
    from ray.rllib.core.columns import Columns

    from rllib_fastq import FastQConfig
    from rllib_fastq.data import schema

    b = budget["fastq"]
    config = FastQConfig().reference() if reference else FastQConfig()
    training: dict[str, Any] = dict(num_policies=ds.num_arms, gamma=GAMMA, reward_weights=REWARD_WEIGHTS,
                                    reward_component_names=COMPONENTS)
    if b.get("pretrain_steps") is not None:  # only the quick budget overrides the default ("auto")
        training["pretrain_steps"] = b["pretrain_steps"]
    training.update(b.get("training", {}))  # `--fastq-training KEY=VALUE`: options measured beside the defaults
    config = (config.offline_data(input_=[ds.train], dataset_num_iters_per_learner=b["steps_per_iter"])
              .training(**training).debugging(seed=seed))
    t = time.perf_counter()
    algo = config.build_algo()
    build_s = time.perf_counter() - t
    result: dict[str, Any] = {}
    for _ in range(b["iterations"]):
        result = algo.train()
    train_s = time.perf_counter() - t - build_s
    module = algo.get_module()
    counts = np.zeros(ds.num_arms, np.int64)

    def act(obs: dict[str, np.ndarray]) -> np.ndarray:  # a batch of players (Trained.batched)
        with torch.no_grad():
            out = module.forward_inference(
                {Columns.OBS: {k: torch.as_tensor(np.asarray(v, np.float32)) for k, v in obs.items()}})
        counts[:] += np.bincount(out[schema.POLICY_ID].cpu().numpy(), minlength=ds.num_arms)
        return out[Columns.ACTIONS].cpu().numpy()

    from rllib_fastq import _rllib_compat as compat

    learner = compat.local_learner(algo.learner_group)
    extras = {"gradient_steps": int(getattr(learner, "num_gradient_steps", b["iterations"] * b["steps_per_iter"])),
              "pretrain_steps": getattr(learner, "pretrain_steps", config.pretrain_steps),
              "build_s": round(build_s, 2), "train_s": round(train_s, 2), "arm_choice": config.arm_choice,
              "exploration_arm": config.exploration_arm,
              "arm_choice_confirmed": bool(getattr(module, "arm_choice_confirmed", False))}
    learned = result.get("learners", {}).get("default_policy", {})
    if hasattr(module, "arm_value_source"):  # which arm-value model the module chose (arm_value_model)
        extras["arm_value_source"] = ("network", "ridge")[int(module.arm_value_source)]
    for key in ("arm_choice_dr_improvement", "arm_choice_dr_lower_bound"):
        if key in learned:
            extras[key] = round(float(learned[key]), 3)
    return Trained(act, extras, close=algo.stop, batched=True,
                   after_eval=lambda: {"chosen_arm_share": (counts / max(1, counts.sum())).round(4).tolist()})


@register("FAST-Q", "learned", needs_ray=True)
def fastq_defaults(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    return _fastq(ds, seed, budget, reference=False)


@register("FAST-Q (reference)", "learned", needs_ray=True)
def fastq_reference(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    return _fastq(ds, seed, budget, reference=True)


@register("BC", "learned")
def plain_bc(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    from benchmarks.harness.simple import PlainBC

    agent = PlainBC(ds.flat(), hiddens=HIDDENS, seed=seed)
    agent.train(budget["bc_steps"])
    return Trained(flat_policy(agent.policy_fn()), {"gradient_steps": agent.steps})


@register("TD3+BC", "learned")
def td3bc(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
    from benchmarks.baselines import NormalizedTD3BC

    agent = NormalizedTD3BC(ds.flat(), hiddens=HIDDENS, gamma=GAMMA, seed=seed)
    agent.train(budget["td3bc_steps"])
    return Trained(flat_policy(agent.policy_fn()), {"gradient_steps": agent.steps, "alpha": 2.5})


def _rllib_method(name: str) -> Callable:
    def fn(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
        from benchmarks import baselines
        from rllib_fastq import _rllib_compat as compat

        b = budget["rllib_iql" if name == "IQL" else "rllib"]
        t = time.perf_counter()
        algo = baselines.rllib_config(name, ds.train, steps_per_iter=b["steps_per_iter"], gamma=GAMMA, seed=seed,
                                      hiddens=HIDDENS).build_algo()
        build_s = time.perf_counter() - t
        for _ in range(b["iterations"]):
            algo.train()
        module = compat.local_learner(algo.learner_group).module["default_policy"]
        return Trained(flat_policy(baselines.rllib_policy_fn(module, batched=True)),
                       {"gradient_steps": b["iterations"] * b["steps_per_iter"], "build_s": round(build_s, 2)},
                       close=algo.stop, batched=True)

    return fn


# RLlib's CQL is not in this suite: ~1 s per gradient step here (its older numbers stay in BENCHMARKS.md).
for _name in ("BC", "MARWIL", "IQL"):
    register(f"RLlib {_name}", "learned", needs_ray=True)(_rllib_method(_name))


# -- d3rlpy peers (their own venv, benchmarks/peers) ------------------------------------------------

D3RLPY = {"d3rlpy BC": "bc", "d3rlpy TD3+BC": "td3plusbc", "d3rlpy IQL": "iql", "d3rlpy CQL": "cql",
          "d3rlpy AWAC": "awac"}


def _peer_method(algo: str) -> Callable:
    def fn(ds: DatasetHandle, seed: int, budget: dict[str, Any]) -> Trained:
        try:
            from benchmarks.peers.policy import load_peer_policy, train_peer
        except ImportError as err:
            raise RuntimeError(f"d3rlpy peers unavailable: benchmarks.peers.policy cannot be imported ({err})") from err
        b = budget["d3rlpy"]
        out = pathlib.Path(budget["work_dir"]) / "peers" / f"{ds.name}-seed{ds.seed}" / f"{algo}-s{seed}"
        t = time.perf_counter()
        steps = b["cql_steps"] if algo == "cql" else b["steps"]
        path = train_peer(ds.train, algo, steps=steps, seed=seed, gamma=GAMMA, out=out, timeout=b.get("timeout_s"),
                          hidden=b.get("hidden"), batch_size=b.get("batch_size"))
        extras: dict[str, Any] = {"gradient_steps": steps, "train_s": round(time.perf_counter() - t, 2)}
        meta = out / "meta.json"
        if meta.exists():
            m = json.loads(meta.read_text())
            extras["d3rlpy"] = {k: m[k] for k in ("settings", "versions") if k in m}
        return Trained(flat_policy(load_peer_policy(path)), extras, batched=True)

    return fn


for _name, _algo in D3RLPY.items():
    register(_name, "peer")(_peer_method(_algo))
