"""FAST-Q's RLModule: the networks of docs/algorithm.md §3 and the inference/explanation paths of §5.

Why this module is long: the arm choice (values, routing model, arrival observation, the check's
verdict) and the explanation read the same networks as inference; RLlib serves, restores and
syncs one RLModule, so they stay in one class rather than behind a second object.
"""

from __future__ import annotations

import contextlib
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import InferenceOnlyAPI, TargetNetworkAPI
from ray.rllib.core.rl_module.torch import TorchRLModule
from torch import nn

from rllib_fastq.counterfactual import resolve_serve_action, ridge_values, safe_arm_choice
from rllib_fastq.data import schema
from rllib_fastq.defaults import DERIVED_MODEL_DEFAULTS, MODEL_DEFAULTS
from rllib_fastq.torch.distributions import FastQDeterministic
from rllib_fastq.torch.networks import (
    Actor,
    BalancingRepresentation,
    BatchedLinear,
    EnsembleMLP,
    ExpertHeads,
    Trunk,
    TwinCritic,
    grad_reverse,
    mlp,
)

# Keys of the forward-train output.
BR_OBS = "br_obs"  # b_k(s) for every arm, [B, K, br]
BR_NEXT_OBS = "br_next_obs"  # b_p(s') of the logged arm p, [B, br]
EXPERT_ACTION_PREDS = "expert_action_preds"  # â_k(s), [B, K, d_a]
ADVERSARY_LOGITS = "adversary_logits"  # G(GRL(b_k(s))), [B, K, K]
ARM_VALUES = "arm_values"  # V_{e,k}(s) of every ensemble member e and arm k, [B, E, K]
ARM_VALUE_COMPONENTS = "arm_value_components"  # V_{e,k,j}(s) per reward component j, [B, E, K, C]
ROUTING_LOGITS = "routing_logits"  # logits of the routing model ρ(k | s), [B, K]
# Phase 2: a sub-batch (rows drawn as in phase 1) on which the arm values and ρ keep training.
ARM_VALUE_BATCH = "arm_value_batch"

DEFAULTS: dict[str, Any] = {**MODEL_DEFAULTS, **DERIVED_MODEL_DEFAULTS}
#: Buffers newer than some saved checkpoints (arm_choice_check's verdict; arm_value_model's ridge
#: and its choice): a state without them restores with their initial values (zeros: no verdict,
#: the network's arm values).
BUFFERS_ADDED_LATER = ("arm_choice_confirmed", "ridge_mean", "ridge_inv_scale", "ridge_coef", "arm_value_source")


def resolve_br_dim(br_dim: int | None, observation_space: gym.Space) -> int:
    """``br_dim``, with None ("auto") = ``min(256, 2 × the state width)`` for flat observations
    (the reference's single-policy variant uses 2 × the state width; a 256-wide BR on a 3-d state
    made phase 2 slower than plain TD3+BC) and 256 for dict (temporal + static) observations."""
    if br_dim is not None:
        return int(br_dim)
    if isinstance(observation_space, gym.spaces.Box):
        return int(min(256, 2 * int(np.prod(observation_space.shape))))
    return 256


class FastQTorchRLModule(TorchRLModule, TargetNetworkAPI, InferenceOnlyAPI):
    """Trunk → K expert heads → shared BR → (GRL → adversary) | actor | twin critic.

    Observations are normalised inside the module (``obs_mean``/``obs_std`` buffers set from
    the dataset), so Serve and evaluation feed raw observations. Flat observations and
    ``{"temporal", "static"}`` dicts are both accepted.
    """

    def setup(self) -> None:
        cfg = {**DEFAULTS, **(self.model_config or {})}
        self.fastq_config = cfg
        self.num_policies = int(cfg["num_policies"])
        self.layout = schema.ObsLayout.from_space(self.observation_space)
        if not isinstance(self.action_space, gym.spaces.Box):
            raise ValueError(f"action_space: FAST-Q needs a continuous Box, got {self.action_space}.")
        self.action_dim = int(np.prod(self.action_space.shape))
        low, high = self.action_space.low.ravel(), self.action_space.high.ravel()
        bounded = bool(np.all(np.isfinite(low)) and np.all(np.isfinite(high)))
        low_t = torch.as_tensor(low, dtype=torch.float32) if bounded else None
        high_t = torch.as_tensor(high, dtype=torch.float32) if bounded else None
        # With one arm the adversary has nothing to balance; behaviour cloning through the BR
        # is then what trains it (docs/algorithm.md §6: the reference left it a frozen random map).
        through_br = cfg["bc_through_balancer"]
        self.bc_through_balancer = self.num_policies == 1 if through_br is None else bool(through_br)
        self.default_policy = cfg["default_policy"]
        self.grl_lambda = float(cfg["grl_lambda"])
        self.decomposed_names = list(cfg["decomposed_names"])

        self.register_buffer("obs_mean", torch.zeros(self.layout.flat_dim))
        self.register_buffer("obs_std", torch.ones(self.layout.flat_dim))
        self.trunk = Trunk(self.layout, hiddens=cfg["trunk_hiddens"], lstm_hidden=cfg["lstm_hidden"],
                           static_hidden=cfg["static_hidden"], dropout=cfg["lstm_dropout"])
        self.experts = ExpertHeads(self.num_policies, self.trunk.out_dim, cfg["expert_hiddens"])
        cfg["br_dim"] = br_dim = resolve_br_dim(cfg["br_dim"], self.observation_space)
        self.balancer = BalancingRepresentation(self.experts.out_dim, br_dim)
        head_in = self.balancer.out_dim if self.bc_through_balancer else self.experts.out_dim
        self.expert_action_head = BatchedLinear(self.num_policies, head_in, self.action_dim)
        self.adversary = mlp(br_dim, cfg["adversary_hiddens"], self.num_policies)
        self.actor = Actor(br_dim, cfg["actor_hiddens"], self.action_dim, low_t, high_t)
        # critic_decomposition="bellman": one Q_j per decomposed component, weight reward_weights[j],
        # then one for the rest of the reward (weight 1) when some of it is not decomposed (or
        # there are no components: then the rest is the reward, and Q = Q_rest).
        self.critic_decomposition = cfg["critic_decomposition"]
        all_weights = [float(w) for w in cfg["reward_weights"] or []]
        indices = cfg["decomposed_indices"]
        indices = list(range(int(cfg["num_decomposed"]))) if indices is None else [int(j) for j in indices]
        self.critic_has_rest = sorted(indices) != list(range(len(all_weights))) or not all_weights
        head_weights = [all_weights[j] for j in indices] + ([1.0] if self.critic_has_rest else [])
        self.critic = TwinCritic(br_dim + self.action_dim, cfg["critic_hiddens"],
                                 int(cfg["num_decomposed"]), decomposition=self.critic_decomposition,
                                 head_weights=head_weights)
        # Counterfactual arm values and the routing model (rllib_fastq.counterfactual): on the
        # normalised state itself, apart from the balanced representation, so the arm choice
        # does not depend on what balancing removes from b_k(s).
        self.arm_choice = cfg["arm_choice"]
        self.arm_choice_pessimism = float(cfg["arm_choice_pessimism"])
        self.arm_choice_min_propensity = float(cfg["arm_choice_min_propensity"])
        self.arm_choice_at = cfg["arm_choice_at"]
        self.serve_action = resolve_serve_action(cfg["serve_action"], self.num_policies)
        # arm_value_decomposition: C values per arm, V_{e,k} = Σ_j w_j V_{e,k,j} (C = 1, w = 1: the reward).
        self.arm_value_decomposition = bool(cfg["arm_value_decomposition"])
        weights = list(cfg["reward_weights"] or []) or [1.0]
        self.arm_value_component_names = list(cfg["component_names"] or []) or ["reward"]
        # Not persistent: from the config, so checkpoints without it still load.
        self.register_buffer("arm_value_weights", torch.tensor(weights, dtype=torch.float32), persistent=False)
        width = self.num_policies * (len(weights) if self.arm_value_decomposition else 1)
        self.arm_values = EnsembleMLP(self.layout.flat_dim, cfg["arm_value_hiddens"], width,
                                      int(cfg["arm_value_ensemble"]))
        self.routing_model = mlp(self.layout.flat_dim, cfg["arm_value_hiddens"][:1], self.num_policies)
        # Set by the learner's arm_choice_check (True: the logs confirm that the relaxed choice
        # beats the pessimistic one); saved with the weights, so a restored or served module keeps it.
        self.register_buffer("arm_choice_confirmed", torch.tensor(False))
        # The ridge arm values and which model the arm values come from (arm_value_model,
        # rllib_fastq.counterfactual.ridge_values), fitted and chosen by the learner; saved.
        members = int(cfg["arm_value_ensemble"])
        self.register_buffer("ridge_mean", torch.zeros(self.layout.flat_dim))
        self.register_buffer("ridge_inv_scale", torch.zeros(self.layout.flat_dim))
        self.register_buffer("ridge_coef", torch.zeros(members, self.layout.flat_dim + 1, width))
        self.register_buffer("arm_value_source", torch.tensor(ridge_values.NETWORK))
        if bounded:
            self.register_buffer("action_low", low_t.clone())
            self.register_buffer("action_high", high_t.clone())
        if not self.inference_only:
            self.make_target_networks()

    def set_state(self, state: dict[str, Any]) -> None:
        """RLlib's restore, accepting checkpoints written before a buffer existed: the buffers in
        ``BUFFERS_ADDED_LATER`` keep their initial values (the network's arm values, no verdict)
        where ``state`` lacks them, instead of RLlib's missing-keys error for inference-only
        (served) modules."""
        state = dict(state)
        for name in BUFFERS_ADDED_LATER:
            state.setdefault(name, torch.zeros_like(getattr(self, name)))  # every one starts at zero
        super().set_state(state)

    # -- TargetNetworkAPI / InferenceOnlyAPI -------------------------------------------------

    def make_target_networks(self) -> None:
        self.target_actor = make_target_network(self.actor)
        self.target_critic = make_target_network(self.critic)

    def get_target_network_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.actor, self.target_actor), (self.critic, self.target_critic)]

    def forward_target(self, batch: dict[str, Any], noise: Any = None) -> dict[str, Any]:
        """Target-actor action (through ``noise`` when given) and target twin Q [B, 2] at
        ``batch[BR_NEXT_OBS]`` ([B, br]); with ``critic_decomposition="bellman"`` also
        ``q_components`` [B, 2, C]."""
        b = batch[BR_NEXT_OBS]
        a = self.target_actor(b)
        if noise is not None:
            a = noise(a)
        bellman = self.critic_decomposition == "bellman"
        q, qc = self.target_critic(torch.cat([b, a], -1), with_weights=bellman)
        # "bellman": also the target twins' per-component values Q'_j [B, 2, C].
        return {Columns.ACTIONS: a, "q": q, **({"q_components": qc} if bellman else {})}

    def get_non_inference_attributes(self) -> list[str]:
        # The critic stays: it picks the "best" arm and explains recommendations (docs/algorithm.md §5).
        return ["adversary", "target_actor", "target_critic"]

    # -- the parts ----------------------------------------------------------------------------

    def normalize(self, obs: Any) -> torch.Tensor:
        """Raw (flat or dict) observations → the normalised flat vector the trunk reads."""
        if isinstance(obs, dict):
            t = obs["temporal"]
            obs = torch.cat([t.reshape(t.shape[0], -1), obs["static"]], dim=-1)
        return (obs.float() - self.obs_mean) / self.obs_std

    def set_normalization(self, mean: np.ndarray, std: np.ndarray) -> None:
        self.obs_mean.copy_(torch.tensor(np.asarray(mean), dtype=torch.float32))
        self.obs_std.copy_(torch.tensor(np.asarray(std), dtype=torch.float32))

    def representations(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """``b_k(s)`` [B, K, br] and ``â_k(s)`` [B, K, d_a] for every arm k."""
        h = self.experts(self.trunk(self.normalize(obs)))
        b = self.balancer(h)
        a_hat = self.expert_action_head(b if self.bc_through_balancer else h)
        if hasattr(self, "action_low"):
            center = (self.action_high + self.action_low) / 2
            a_hat = center + (self.action_high - self.action_low) / 2 * torch.tanh(a_hat)
        return b, a_hat

    @contextlib.contextmanager
    def frozen_representations(self):
        """Experts and BR in eval mode, without gradients (phase 2 and inference)."""
        parts = (self.trunk, self.experts, self.balancer, self.expert_action_head)
        modes = [p.training for p in parts]
        for p in parts:
            p.eval()
        try:
            with torch.no_grad():
                yield
        finally:
            for p, m in zip(parts, modes):
                p.train(m)

    def arm_value_estimates(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Every ensemble member's value of every arm ``[B, E, K]`` and the routing model's
        probabilities ``ρ(k | s)`` ``[B, K]``."""
        return self.arm_value_estimates_at(self.normalize(obs))

    def arm_value_estimates_at(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """:meth:`arm_value_estimates` at already normalised states ``x`` [B, d]."""
        return self.scalar_arm_values(self._raw_arm_values(x)), torch.softmax(self.routing_model(x), -1)

    def _raw_arm_values(self, x: torch.Tensor) -> torch.Tensor:
        """The arm-value model's output [B, E, K·C] at the normalised state: the network's, or the
        ridge's where the learner chose it (``arm_value_source``)."""
        if int(self.arm_value_source) == ridge_values.RIDGE:
            return ridge_values.ridge_values(x, self.ridge_mean, self.ridge_inv_scale, self.ridge_coef)
        return self.arm_values(x)

    def arm_value_component_estimates(self, obs: Any) -> torch.Tensor:
        """Per-component arm values ``V_{e,k,j}(s)`` ``[B, E, K, C]`` (``arm_value_decomposition``);
        ``Σ_j w_j V_{e,k,j}`` is :meth:`arm_value_estimates`' value."""
        if not self.arm_value_decomposition:
            raise ValueError("arm_value_component_estimates: the module was built with "
                             "arm_value_decomposition=False; it has one value per arm.")
        return self._component_arm_values(self._raw_arm_values(self.normalize(obs)))

    def _component_arm_values(self, raw: torch.Tensor) -> torch.Tensor:
        return raw.reshape(*raw.shape[:2], self.num_policies, -1)  # [B, E, K*C] → [B, E, K, C]

    def scalar_arm_values(self, raw: torch.Tensor) -> torch.Tensor:
        """An arm-value model's output [B, E, K·C] → the values [B, E, K] (Σ_j w_j V_{e,k,j} with
        ``arm_value_decomposition``, else as it is)."""
        if not self.arm_value_decomposition:
            return raw
        return self._component_arm_values(raw) @ self.arm_value_weights  # Σ_j w_j V_{e,k,j}

    def adversary_logits(self, b: torch.Tensor) -> torch.Tensor:
        """``G(GRL(b))``: logits [B, K, K] of which arm each ``b_k`` came from."""
        return self.adversary(grad_reverse(b, self.grl_lambda))

    # -- forwards -----------------------------------------------------------------------------

    def forward_train(self, batch: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        # RLlib calls self.train() on every step; walking the module tree each time costs ~2 ms.
        if not self.training:
            self.train()
        return self._forward_train(batch, **kwargs)

    def _forward_train(self, batch: dict[str, Any], phase: int = 1, **kwargs) -> dict[str, Any]:
        if phase == 1:
            b, a_hat = self.representations(batch[Columns.OBS])
            out = {BR_OBS: b, EXPERT_ACTION_PREDS: a_hat, **self._arm_value_outputs(batch[Columns.OBS])}
            if self.num_policies > 1:
                out[ADVERSARY_LOGITS] = self.adversary_logits(b)
            return out
        extra = {ARM_VALUE_BATCH: self._arm_value_outputs(batch[ARM_VALUE_BATCH][Columns.OBS])} \
            if ARM_VALUE_BATCH in batch else {}
        if BR_OBS in batch:  # phase-2 cache (see FastQTorchLearner.build_phase2_cache)
            return {**{k: batch[k] for k in (BR_OBS, BR_NEXT_OBS, EXPERT_ACTION_PREDS)}, **extra}
        with self.frozen_representations():
            b, a_hat = self.representations(batch[Columns.OBS])
            b_next, _ = self.representations(batch[Columns.NEXT_OBS])
        rows = torch.arange(b_next.shape[0], device=b_next.device)
        b_next = b_next[rows, batch[schema.POLICY_ID].long()]
        return {BR_OBS: b, BR_NEXT_OBS: b_next, EXPERT_ACTION_PREDS: a_hat, **extra}

    def _arm_value_outputs(self, obs: Any) -> dict[str, torch.Tensor]:
        """What the arm values' and the routing model's losses read, for raw observations."""
        x = self.normalize(obs)
        raw = self.arm_values(x)
        out = {ARM_VALUES: self.scalar_arm_values(raw), ROUTING_LOGITS: self.routing_model(x)}
        if self.arm_value_decomposition:
            out[ARM_VALUE_COMPONENTS] = self._component_arm_values(raw)
        return out

    def _arm_actions(self, obs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Every arm's action [B, K, d_a] and ``b_k(s)``. ``serve_action``: "actor" ``π(b_k(s))``;
        "expert" the arm's cloned action ``â_k(s)``; "supported" the actor for the arm the logs'
        router would most likely have used here (the actor was trained on that arm's players)
        and the cloned action for the other arms (the actor never learnt to act for them here)."""
        with self.frozen_representations():
            b, a_hat = self.representations(obs)
        if self.serve_action == "expert":
            return a_hat, b
        pi = self.actor(b)
        if self.serve_action == "actor":
            return pi, b
        routed = self.routing_model(self.normalize(obs)).argmax(-1)  # argmax of the logits = of ρ
        is_routed = torch.nn.functional.one_hot(routed, self.num_policies).bool()[..., None]
        return torch.where(is_routed, pi, a_hat), b

    def value_guided_arms(self, obs: Any, pessimism: float | None = None) -> torch.Tensor:
        """The "safe" arm choice from the arm values [B] (also the fast-track exploration's arm):
        per-player pessimism ``arm_choice_pessimism`` until the learner's ``arm_choice_check``
        confirms from the logs that the choice without it beats the pessimistic one
        (``arm_choice_confirmed``), none after; ``pessimism``: this β instead (the check compares
        β = 0 with ``arm_choice_pessimism``)."""
        return self.arm_choice_from_values(*self.arm_value_estimates(obs), pessimism=pessimism)

    def arm_choice_from_values(self, values: torch.Tensor, propensity: torch.Tensor,
                               pessimism: float | None = None) -> torch.Tensor:
        """:meth:`value_guided_arms` from :meth:`arm_value_estimates`' output, for callers that
        already have it (the learner's check reads the values too)."""
        if pessimism is None:
            pessimism = 0.0 if bool(self.arm_choice_confirmed) else self.arm_choice_pessimism
        return safe_arm_choice(values, propensity, pessimism=pessimism,
                               min_propensity=self.arm_choice_min_propensity)

    def arrival_observation(self, obs: Any) -> Any:
        """The observation the player had on arrival: the same static features (constant over a
        stay, by the schema's definition of "static"), an empty history (all padding zeros).
        Flat observations (no temporal part) are returned as they are."""
        if self.layout.temporal is None:
            return obs
        if isinstance(obs, dict):
            return {"temporal": torch.zeros_like(obs["temporal"]), "static": obs["static"]}
        n = self.layout.temporal[0] * self.layout.temporal[1]
        return torch.cat([torch.zeros_like(obs[:, :n]), obs[:, n:]], -1)

    def choice_observation(self, obs: Any) -> Any:
        """The observation the ``"best"`` arm is chosen on: the arrival observation with
        ``arm_choice_at="arrival"`` (:meth:`best_arms`), else ``obs`` itself. :meth:`explain`
        reports the arm values on it, so the evidence shown is the evidence used."""
        if self.arm_choice_at == "arrival":
            return self.arrival_observation(obs)
        return obs

    def q_all_arms(self, obs: Any) -> torch.Tensor:
        """Q1 of every arm's served action on its representation, [B, K] (the reference's choice)."""
        return self._q1_per_arm(*self._arm_actions(obs))

    def _q1_per_arm(self, actions: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Q1(b_k, a_k) for every arm: actions [B, K, d_a], b [B, K, br] → [B, K]."""
        bsz, k, _ = actions.shape
        return self.critic.q1(torch.cat([b, actions], -1).reshape(bsz * k, -1)).reshape(bsz, k)

    def best_arms(self, obs: Any, q_all: torch.Tensor | None = None) -> torch.Tensor:
        """The ``"best"`` arm per row [B] by ``arm_choice`` and ``arm_choice_at``
        (rllib_fastq.counterfactual). ``q_all``: :meth:`q_all_arms` of ``obs`` when already known.

        ``arm_choice_at="arrival"`` chooses on the player's arrival observation. Players are
        assigned to an arm for their whole stay (in the logs and in experiment platforms) and the
        arm values rank "follow arm k from here"; choosing afresh at every step let extrapolated
        values move players to another arm mid-stay, which the logs never show (misaligned logs,
        seed 1: 25 of 200 players switched, 9.51 against 10.06). The arrival observation gives the
        same arm at every step of a stay without keeping state (Serve and RLlib's env runners call
        the module statelessly). Reading the serving arm back from the history with the routing
        model instead failed where the router's prior is strong: with 5 % randomised players it
        sent players the values had moved back to the routed arm.
        """
        if self.arm_choice_at == "arrival" and self.layout.temporal is not None:
            obs, q_all = self.choice_observation(obs), None
        if self.arm_choice == "critic":
            return (self.q_all_arms(obs) if q_all is None else q_all).argmax(-1)
        if self.arm_choice == "greedy":
            return self.arm_value_estimates(obs)[0].mean(1).argmax(-1)
        return self.value_guided_arms(obs)

    def choose_arms(self, obs: Any, policy_id: Any = None) -> dict[str, torch.Tensor]:
        """Spec §5: act as the named arm, the configured default arm, or the ``"best"`` arm.

        ``policy_id``: None (use ``default_policy``), an int, ``"best"``, or a tensor [B] whose
        entries are arm ids or -1 for "best". Returns actions [B, d_a], the chosen arm [B],
        the chosen representation [B, br] and every arm's Q1 [B, K].
        """
        actions, b = self._arm_actions(obs)
        bsz, k, _ = actions.shape
        q_all = self._q1_per_arm(actions, b)
        if policy_id is None:
            policy_id = self.default_policy
        if isinstance(policy_id, str):
            if policy_id != "best":
                raise ValueError(f"policy_id: expected an arm in [0, {k}) or 'best', got {policy_id!r}.")
            arm = self.best_arms(obs, q_all)
        else:
            arm = torch.as_tensor(policy_id, device=q_all.device).long().reshape(-1).expand(bsz).clone()
            bad = (arm >= k) | (arm < -1)
            if bad.any():
                raise ValueError(f"policy_id: expected an arm in [0, {k}) or 'best', got "
                                 f"{arm[bad][0].item()}.")
            best = arm == -1
            if best.any():
                arm[best] = self.best_arms(obs, q_all)[best]
        idx = torch.arange(bsz, device=arm.device)
        return {Columns.ACTIONS: actions[idx, arm], schema.POLICY_ID: arm, BR_OBS: b[idx, arm],
                "q_all_arms": q_all}

    def _forward_inference(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        with torch.no_grad():
            out = self.choose_arms(batch[Columns.OBS], batch.get(schema.POLICY_ID))
        # ACTION_DIST_INPUTS: RLlib's inference recipe (get_inference_action_dist_cls) reads them.
        return {Columns.ACTIONS: out[Columns.ACTIONS], Columns.ACTION_DIST_INPUTS: out[Columns.ACTIONS],
                schema.POLICY_ID: out[schema.POLICY_ID]}

    def get_inference_action_dist_cls(self) -> type:
        """Deterministic: ``action_dist_inputs`` are the actions (RLlib's inference recipe)."""
        return FastQDeterministic

    def _forward_exploration(self, batch: dict[str, Any], **kwargs) -> dict[str, Any]:
        # Offline algorithm: env runners only evaluate, so exploration acts greedily too.
        return self._forward_inference(batch, **kwargs)

    def explain(self, obs: Any, policy_id: Any = None) -> dict[str, torch.Tensor]:
        """Q and its decomposition per named reward component (docs/algorithm.md §5).

        Returns ``actions``, ``policy_id``, ``q`` [B] (twin 1), ``components``: a dict
        name → [B], one per decomposed component plus ``"residual"`` (they sum to ``q``): with
        ``critic_decomposition="softmax"`` (reference) ``w_j · Q`` of the softmax head; with
        ``"bellman"`` ``w_j · Q_j``, ``w_j`` the component's reward weight and ``Q_j`` its own
        value, and ``"residual"`` the value of the reward's undecomposed rest (kept, as zeros, when
        every component is decomposed, so the keys do not depend on the option), and
        the arm choice's evidence: ``arm_values`` [B, K] (ensemble mean), ``arm_value_std``
        [B, K] and ``routing_probabilities`` [B, K]. With ``arm_value_decomposition``, also
        ``arm_value_components``: a dict component name → [B, K] (ensemble mean of ``V_{k,j}``),
        with ``Σ_j w_j · arm_value_components[j] = arm_values``: the value of the served arm's
        choice by component (``components`` explain the critic's Q of TD3+BC's actor instead).
        The arm values and routing probabilities are those of :meth:`choice_observation` (the
        arrival observation by default): what the arm choice read, at every step of a stay.
        """
        with torch.no_grad():
            out = self.choose_arms(obs, policy_id)
            q, w = self.critic(torch.cat([out[BR_OBS], out[Columns.ACTIONS]], -1))
            x = self.normalize(self.choice_observation(obs))
            raw, propensity = self._raw_arm_values(x), torch.softmax(self.routing_model(x), -1)
            values = self.scalar_arm_values(raw)  # = arm_value_estimates(obs), from one pass
            parts = self._component_arm_values(raw).mean(1) if self.arm_value_decomposition else None
        q1 = q[:, 0]
        if self.critic_decomposition == "bellman":  # w = reward weights, Q_j the per-component values
            hw, qc1 = self.critic.head_weights, w[:, 0]
            d = len(self.decomposed_names)
            components = {n: hw[j] * qc1[:, j] for j, n in enumerate(self.decomposed_names)}
            components["residual"] = qc1[:, d] if self.critic_has_rest else torch.zeros_like(q1)
        else:
            w1 = w[:, 0]
            components = {n: w1[:, j] * q1 for j, n in enumerate(self.decomposed_names + ["residual"])}
        extra = {} if parts is None else {
            "arm_value_components": {n: parts[..., j] for j, n in enumerate(self.arm_value_component_names)}}
        return {
            "actions": out[Columns.ACTIONS],
            "policy_id": out[schema.POLICY_ID],
            "q": q1,
            "components": components,
            "arm_values": values.mean(1),
            "arm_value_std": values.std(1, unbiased=False),
            "routing_probabilities": propensity,
            **extra,
        }
