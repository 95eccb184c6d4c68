"""FAST-Q's torch learner: the two phases' losses, one optimizer per part, per-step targets.

Why this module is long: both phases' losses, the in-memory update loop and the all-reduce share
the learner's state (phase counter, sampler, optimizers), as RLlib's own learners keep theirs.

Gradient isolation makes one backward pass of the summed loss correct:
- phase 1: the adversary minimises L_adv while the GRL hands trunk, experts and BR −λ·∂L_adv;
- phase 2: experts and BR are frozen (no graph), the TD target carries no gradient, and the
  actor's Q1(s*, π(s*)) uses detached critic weights, so L_critic only reaches the critic and
  L_actor only the actor.
With several learners, gradients are averaged with one all-reduce per step (see
``_allreduce_gradients``), which is DDP's arithmetic without its per-forward bookkeeping
that FAST-Q's phase-dependent unused parameters would otherwise need.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from ray.rllib.core import DEFAULT_MODULE_ID
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.torch.torch_learner import TorchLearner

from rllib_fastq import _rllib_compat as compat
from rllib_fastq.data import schema
from rllib_fastq.data.schema import BOOTSTRAP_WEIGHTS, COMPONENT_RETURNS_TO_GO, RETURNS_TO_GO
from rllib_fastq.fastq_learner import EXPLORATION_PROB, PHASE, FastQLearner
from rllib_fastq.torch import arm_value_fits, losses
from rllib_fastq.torch.fastq_torch_rl_module import (
    ADVERSARY_LOGITS,
    ARM_VALUE_BATCH,
    ARM_VALUE_COMPONENTS,
    ARM_VALUES,
    BR_NEXT_OBS,
    BR_OBS,
    EXPERT_ACTION_PREDS,
    ROUTING_LOGITS,
)
from rllib_fastq.torch.sampling import InMemorySampler

# Phase-2 cache column: the arm the arm values choose for each row (guided exploration).
EXPLORATION_ARM = "exploration_arm"
# Rows per forward pass when building the phase-2 cache.
_CACHE_CHUNK = 8192


class FastQTorchLearner(TorchLearner, FastQLearner):
    """Losses of docs/algorithm.md §4 on :class:`FastQTorchRLModule`; optimizers experts/balancer/critic/actor."""

    def build(self) -> None:
        cpus = self.config.num_cpus_per_learner
        threads = self.config.torch_num_threads or (int(cpus) if isinstance(cpus, (int, float)) and cpus >= 1 else 1)
        torch.set_num_threads(threads)
        super().build()
        self.sampler: InMemorySampler | None = None
        self._metric_sums: dict[str, torch.Tensor] = {}
        self._metric_counts: dict[str, int] = {}
        self._adversary_hist = np.full(self.config.num_policies, 1.0 / self.config.num_policies)
        # The arm values changed since the last check (in phase 1; in any phase).
        self._phase1_since_check = self._arm_values_stale = False
        if self._world_size() > 1:
            # Every learner starts from rank 0's weights, as DDP would.
            for t in self.module[DEFAULT_MODULE_ID].state_dict().values():
                dist.broadcast(t, src=0)

    def _make_modules_ddp_if_necessary(self) -> None:
        """No DDP wrapper: gradients are all-reduced in ``_allreduce_gradients``."""

    def configure_optimizers_for_module(self, module_id: str, config: Any = None) -> None:
        module = self._module[module_id]
        parts = {
            "experts": ([module.trunk, module.experts, module.expert_action_head], config.expert_lr),
            "balancer": ([module.balancer, module.adversary], config.balancer_lr),
            "critic": ([module.critic], config.critic_lr),
            "actor": ([module.actor], config.actor_lr),
            "arm_values": ([module.arm_values, module.routing_model], config.arm_value_lr),
        }
        # Fused Adam: one kernel per optimizer step instead of a loop over parameters (a third
        # of the single-tensor step's time here); CPU and CUDA have it.
        fused = self.device.type in ("cpu", "cuda")
        for name, (nets, lr) in parts.items():
            params = [p for net in nets for p in self.get_parameters(net)]
            optim = torch.optim.Adam(params, weight_decay=config.weight_decay, fused=fused)
            self.register_optimizer(module_id=module_id, optimizer_name=name, optimizer=optim,
                                    params=params, lr_or_lr_schedule=lr)

    # -- data ----------------------------------------------------------------------------------

    def setup_data(self, *, obs_mean, obs_std, arm_freqs, arrays, pretrain_steps) -> None:
        super().setup_data(obs_mean=obs_mean, obs_std=obs_std, arm_freqs=arm_freqs, arrays=arrays,
                           pretrain_steps=pretrain_steps)
        self.module[DEFAULT_MODULE_ID].unwrapped().set_normalization(obs_mean, obs_std)
        if arrays is not None:
            seed = (self.config.seed or 0) * 1000 + self._rank()
            self.sampler = InMemorySampler(arrays, self.config.num_policies, device=self.device, seed=seed)

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        if self.sampler is not None:
            self.sampler.drop_cache()  # weights changed: cached representations are stale

    def update_from_memory(self, *, num_steps: int, timesteps: dict[str, Any]) -> dict[str, Any]:
        """``num_steps`` gradient steps on batches drawn from the in-memory dataset."""
        if self.sampler is None:
            raise RuntimeError("update_from_memory: no in-memory data; set in_memory_data=True.")
        bsz = self.config.train_batch_size_per_learner
        self.before_gradient_based_update(timesteps=timesteps)
        for _ in range(num_steps):
            if self.phase == 1:
                probs = self.phase1_arm_probabilities(self._adversary_hist)
                batch = self.sampler.sample_phase1(bsz, probs)
                self._arm_values_stale = self._phase1_since_check = True
            else:
                if self._phase1_since_check:  # phase 2 begins: check before the cache reads the choice
                    self._arm_values_changed()
                if self.config.cache_representations and not self.sampler.has_cache:
                    self._build_phase2_cache()
                batch = self.sampler.sample_phase2(bsz)
                if self._arm_values_train_in_phase2():
                    batch[ARM_VALUE_BATCH] = self.sampler.sample_arm_value_rows(
                        bsz, self.phase1_arm_probabilities(self._adversary_hist))
                    self._arm_values_stale = True
            self._update({DEFAULT_MODULE_ID: batch})
        if self._arm_values_stale:
            self._arm_values_changed()
        self.log_rows_trained(num_steps * bsz)
        self.after_gradient_based_update(timesteps=timesteps)
        return self.metrics.reduce()

    def _arm_values_train_in_phase2(self) -> bool:
        """``arm_values_train_in_phase2`` where something reads them (``arm_value_fits.arm_values_read``)."""
        return bool(self.config.arm_values_train_in_phase2) and arm_value_fits.arm_values_read(self.config)

    @torch.no_grad()
    def _arm_values_changed(self) -> None:
        """Refit the ridge arm values and keep the better model (``arm_value_fits.select_arm_value_model``),
        re-check the arm choice (``arm_value_fits.check_arm_choice``), log their metrics, and refresh
        the exploration arms cached for phase 2 (once per iteration, and when phase 2 begins:
        checking every step would cost a pass over the logs)."""
        self._phase1_since_check = self._arm_values_stale = False
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        fits = arm_value_fits.fits_to_run(self.config)
        arrivals = arm_value_fits.Arrivals.from_columns(module, self.sampler.columns) if fits else None
        for fit in fits:
            for key, value in fit(module, arrivals, self.config).items():
                self.metrics.log_value((DEFAULT_MODULE_ID, key), value, window=1)
        if self.sampler.has_cache and self.config.exploration_arm == "value":
            self.sampler.cache_per_row(EXPLORATION_ARM, module.value_guided_arms, chunk=_CACHE_CHUNK)

    @torch.no_grad()
    def _build_phase2_cache(self) -> None:
        """b_k(s), b_p(s') and â_k(s) of every row, computed once: experts and BR are frozen."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        with module.frozen_representations():
            self.sampler.build_cache(
                lambda obs: module.representations(obs), chunk=_CACHE_CHUNK,
            )
            if self.config.exploration_arm == "value":  # refreshed when the arm values change
                self.sampler.cache_per_row(EXPLORATION_ARM, module.value_guided_arms, chunk=_CACHE_CHUNK)

    # -- one gradient step ---------------------------------------------------------------------

    def _update(self, batch: dict[str, Any], **kwargs: Any) -> tuple[Any, Any, Any]:
        phase, actor_step = self.phase, self.is_actor_step()
        module = self.module[DEFAULT_MODULE_ID]
        batch = {DEFAULT_MODULE_ID: self._prepare_batch(batch[DEFAULT_MODULE_ID])}
        fwd_out = {DEFAULT_MODULE_ID: module.forward_train(batch[DEFAULT_MODULE_ID], phase=phase)}
        loss_per_module = self.compute_losses(fwd_out=fwd_out, batch=batch)
        gradients = self.compute_gradients(loss_per_module)
        self._allreduce_gradients(gradients)
        self.apply_gradients(self.postprocess_gradients(gradients))
        if phase == 1:
            self._average_batchnorm_statistics()
        if actor_step:
            self._polyak_update(module.unwrapped())
        self.count_gradient_step(actor_step)
        return fwd_out, loss_per_module, {}

    @torch.no_grad()
    def _polyak_update(self, module: Any) -> None:
        """target ← (1 − τ) target + τ main, for the actor and the critic, in place."""
        for main, target in module.get_target_network_pairs():
            torch._foreach_lerp_(list(target.parameters()), list(main.parameters()), self.config.tau)

    def apply_gradients(self, gradients_dict: dict) -> None:
        """Step every optimizer; one finiteness check over all gradients instead of RLlib's
        per-parameter ones.

        A non-finite entry makes its tensor's norm non-finite (so does a finite norm overflowing
        float32, which only costs the exact check); then RLlib's handling (zeroed or skipped, with
        a warning) takes over.
        """
        grads = list(gradients_dict.values())
        if grads and not bool(torch.stack(torch._foreach_norm(grads)).isfinite().all()):
            return super().apply_gradients(gradients_dict)
        for pid, grad in gradients_dict.items():
            self._params[pid].grad = grad
        for optim in compat.optimizers(self):
            optim.step()

    def _prepare_batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        """Raw dataset columns → what the losses read (docs/algorithm.md §2).

        ``rewards`` becomes ``reward_weights · reward_components`` when weights are set, and
        ``reward_components`` keeps only the decomposed ones. ``expert_actions`` [B, K, d] and
        ``expert_actions_mask`` [B, K] gain the logged arm's slot (its logged action is known).
        """
        cfg = self.config
        out = dict(batch)
        actions = batch[Columns.ACTIONS]
        pid = batch.get(schema.POLICY_ID, actions.new_zeros(len(actions))).long().reshape(-1)  # episodes: arm 0
        bsz, d = actions.shape
        if cfg.reward_weights is not None:
            rc = batch[schema.REWARD_COMPONENTS].float()
            out[Columns.REWARDS] = rc @ torch.as_tensor(cfg.reward_weights, dtype=rc.dtype, device=rc.device)
            out[schema.REWARD_COMPONENTS] = rc[:, cfg.decomposed_indices()]
        else:
            out.pop(schema.REWARD_COMPONENTS, None)
        out[schema.POLICY_ID] = pid
        if self.phase == 2:  # expert targets are phase-1 business
            return out
        k = cfg.num_policies
        if schema.EXPERT_ACTIONS in batch:
            targets = batch[schema.EXPERT_ACTIONS].reshape(bsz, k, d).clone()
            mask = batch.get(schema.EXPERT_ACTIONS_MASK)
            mask = torch.zeros(bsz, k, dtype=torch.bool, device=actions.device) if mask is None \
                else mask.reshape(bsz, k).bool().clone()
        else:
            targets = actions.new_zeros(bsz, k, d)
            mask = torch.zeros(bsz, k, dtype=torch.bool, device=actions.device)
        rows = torch.arange(bsz, device=actions.device)
        targets[rows, pid] = actions
        mask[rows, pid] = True
        out[schema.EXPERT_ACTIONS], out[schema.EXPERT_ACTIONS_MASK] = targets, mask
        return out

    def _allreduce_gradients(self, gradients: dict[Any, torch.Tensor]) -> None:
        world = self._world_size()
        if world == 1 or not gradients:
            return
        grads = [g for g in gradients.values() if g is not None]
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat)
        flat /= world
        offset = 0
        for g in grads:
            g.copy_(flat[offset: offset + g.numel()].view_as(g))
            offset += g.numel()

    def _average_batchnorm_statistics(self) -> None:
        """Learners see different batches: average BatchNorm running statistics so all keep
        identical state (DDP broadcasts rank 0's buffers for the same reason)."""
        if self._world_size() == 1:
            return
        buffers = [b for name, b in self.module[DEFAULT_MODULE_ID].unwrapped().named_buffers()
                   if name.endswith(("running_mean", "running_var"))]
        flat = torch.cat([b.reshape(-1) for b in buffers])
        dist.all_reduce(flat)
        flat /= self._world_size()
        offset = 0
        for b in buffers:
            b.copy_(flat[offset: offset + b.numel()].view_as(b))
            offset += b.numel()

    def compute_gradients(self, loss_per_module: dict[str, torch.Tensor], **kwargs: Any) -> dict:
        for optim in compat.optimizers(self):
            optim.zero_grad(set_to_none=True)
        total = sum(loss_per_module.values())
        total.backward()
        # Parts without a gradient this step (frozen experts in phase 2, the actor between its
        # steps) keep None, so their optimizers skip them (no weight-decay drift either).
        return {pid: p.grad for pid, p in self._params.items() if p.grad is not None}

    # -- losses --------------------------------------------------------------------------------

    def compute_loss_for_module(self, *, module_id: str, config: Any, batch: dict[str, Any],
                                fwd_out: dict[str, Any]) -> torch.Tensor:
        if self.phase == 1:
            loss = self._phase1_loss(config, batch, fwd_out)
        else:
            loss = self._phase2_loss(config, batch, fwd_out)
        self._log_mean(PHASE, torch.tensor(float(self.phase)))
        return loss

    def _phase1_loss(self, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]) -> torch.Tensor:
        """L_1 = L_expert + L_adv (L_adv only with K > 1: one arm has nothing to balance)."""
        weights = self._phase1_row_weights(batch)
        k = config.num_policies
        l_exp, per_arm = losses.expert_loss(fwd_out[EXPERT_ACTION_PREDS], batch[schema.EXPERT_ACTIONS],
                                            batch[schema.EXPERT_ACTIONS_MASK], weights, kind=config.expert_loss)
        for arm in range(k):
            self._log_mean(f"expert_loss_{arm}", per_arm[arm])
        self._log_mean("expert_loss", l_exp)
        l_exp = l_exp + self._arm_value_loss(batch, fwd_out)
        if k == 1:
            return l_exp
        logits = fwd_out[ADVERSARY_LOGITS]
        pid = batch[schema.POLICY_ID].long()
        if config.adversary_target == "expert_index":
            labels = torch.arange(k, device=logits.device).expand(pid.shape[0], k)
        else:
            labels = pid[:, None].expand(-1, k)
        l_adv, acc = losses.adversary_loss(logits, labels, weights)
        self._log_mean("adversary_loss", l_adv)
        self._log_mean("adversary_accuracy", acc)
        if config.policy_sampling == "prediction_histogram":
            hist = torch.bincount(logits.argmax(-1).reshape(-1), minlength=k).float()
            self._adversary_hist = 0.99 * self._adversary_hist + 0.01 * (hist / hist.sum()).cpu().numpy()
        return l_exp + l_adv

    def _arm_value_loss(self, batch: dict[str, Any], fwd_out: dict[str, Any]) -> torch.Tensor:
        """L_V (each arm's value on its own players' returns) + the routing model's cross-entropy."""
        pid = batch[schema.POLICY_ID].long()
        loss = fwd_out[ARM_VALUES].new_zeros(())
        if RETURNS_TO_GO in batch:  # the in-memory path derives it from the episodes
            per_c = ARM_VALUE_COMPONENTS in fwd_out  # arm_value_decomposition: [B, E, K, C] on [B, C]
            l_v = losses.arm_value_loss(fwd_out[ARM_VALUE_COMPONENTS if per_c else ARM_VALUES], pid,
                                        batch[COMPONENT_RETURNS_TO_GO if per_c else RETURNS_TO_GO],
                                        batch.get(BOOTSTRAP_WEIGHTS))
            self._log_mean("arm_value_loss", l_v)
            loss = loss + l_v
        if self.config.num_policies > 1:
            # Rows were drawn with probability probs[arm] instead of the data's frequency.
            probs = self.phase1_arm_probabilities(self._adversary_hist) if self.sampler is not None \
                else self.arm_freqs
            ratio = torch.as_tensor(self.arm_freqs / np.maximum(probs, 1e-12), dtype=torch.float32,
                                    device=pid.device)
            l_rho = losses.propensity_loss(fwd_out[ROUTING_LOGITS], pid, ratio[pid])
            self._log_mean("routing_model_loss", l_rho)
            loss = loss + l_rho
        return loss

    def _phase1_row_weights(self, batch: dict[str, Any]) -> torch.Tensor | None:
        """Streamed batches cannot be drawn per arm; reweight rows to the same expectation."""
        if self.sampler is not None or self.config.policy_sampling == "uniform":
            return None
        probs = self.phase1_arm_probabilities(self._adversary_hist)
        ratio = torch.as_tensor(probs / np.maximum(self.arm_freqs, 1e-12), dtype=torch.float32,
                                device=self.device)
        return ratio[batch[schema.POLICY_ID].long()]

    def _phase2_loss(self, config: Any, batch: dict[str, Any], fwd_out: dict[str, Any]) -> torch.Tensor:
        """L_critic (``critic_decomposition``: "softmax" td_weight · L_TD + decomposition_weight ·
        L_dec / D; "bellman" td_weight · Σ_j L_TD,j), plus L_actor on actor steps."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        pid = batch[schema.POLICY_ID].long()
        rows = torch.arange(pid.shape[0], device=pid.device)
        b_all = fwd_out[BR_OBS]  # [B, K, br]
        s_b = b_all[rows, pid]
        actions = batch[Columns.ACTIONS]
        with torch.no_grad():
            target = module.forward_target({BR_NEXT_OBS: fwd_out[BR_NEXT_OBS]}, noise=self._target_noise)
            y = losses.td_target(batch[Columns.REWARDS], batch[Columns.TERMINATEDS].float(),
                                 target["q"], config.gamma)
        components = batch.get(schema.REWARD_COMPONENTS)
        decompose = components is not None and components.shape[-1] > 0
        if module.critic_decomposition == "bellman":
            loss = self._bellman_critic_loss(config, module, batch, components, target, y,
                                             torch.cat([s_b, actions], -1))
        else:
            loss = self._softmax_critic_loss(config, module, components, decompose, y,
                                             torch.cat([s_b, actions], -1))
        if self.is_actor_step():
            loss = loss + self._actor_loss(config, module, batch, b_all, s_b, actions, fwd_out)
        if ARM_VALUE_BATCH in fwd_out:
            loss = loss + self._arm_value_loss(batch[ARM_VALUE_BATCH], fwd_out[ARM_VALUE_BATCH])
        return loss

    def _bellman_critic_loss(self, config, module, batch, components, target, y, x) -> torch.Tensor:
        """``critic_decomposition="bellman"``: L_critic = td_weight · Σ_j L_TD,j, each head Q_j on
        its own target y_j (``losses.component_td_target``); Σ_j w_j y_j = y, the scalar target.
        The scalar ``td_loss`` is logged for comparison with the softmax critic (not optimised)."""
        hw = module.critic.head_weights
        d = hw.shape[0] - int(module.critic_has_rest)
        with torch.no_grad():
            r = losses.component_rewards(batch[Columns.REWARDS], components, hw[:d], module.critic_has_rest)
            y_c = losses.component_td_target(r, batch[Columns.TERMINATEDS].float(), target["q"],
                                             target["q_components"], config.gamma)
        q, qc = module.critic(x, with_weights=True)
        l_comp, per_head = losses.component_td_loss(qc, y_c)
        names = module.decomposed_names + (["rest"] if module.critic_has_rest else [])
        for name, value in zip(names, per_head):
            self._log_mean(f"component_td_loss_{name}", value)
        self._log_mean("component_td_loss", l_comp)
        self._log_mean("td_loss", losses.td_loss(q.detach(), y))
        self._log_mean("q_mean", q[:, 0].mean())
        return config.td_weight * l_comp

    def _softmax_critic_loss(self, config, module, components, decompose, y, x) -> torch.Tensor:
        """``critic_decomposition="softmax"`` (reference): td_weight · L_TD + decomposition_weight · L_dec / D."""
        q, w = module.critic(x, with_weights=decompose)
        l_td = losses.td_loss(q, y)
        loss = config.td_weight * l_td
        self._log_mean("td_loss", l_td)
        self._log_mean("q_mean", q[:, 0].mean())
        if decompose:
            l_dec, per_comp = losses.decomposition_loss(q, w, components, config.decomposition_detach_q)
            loss = loss + config.decomposition_weight * l_dec / components.shape[-1]
            for name, value in zip(module.decomposed_names, per_comp):
                self._log_mean(f"decomposition_loss_{name}", value)
            self._log_mean("decomposition_loss", l_dec)
        return loss

    def _actor_loss(self, config, module, batch, b_all, s_b, actions, fwd_out) -> torch.Tensor:
        """Exploit (s_b, logged action) w.p. 1 − ε_t; explore (b_k(s), â_k(s)) w.p. ε_t, with k the
        arm the arm values choose for this state ("value": fast-track) or k ~ U{0..K−1} ("uniform")."""
        bsz, k, _ = b_all.shape
        eps = self.exploration_probability()
        explore = torch.rand(bsz, device=s_b.device) < eps
        if config.exploration_arm == "uniform":
            arm = torch.randint(k, (bsz,), device=s_b.device)
        elif EXPLORATION_ARM in batch:
            arm = batch[EXPLORATION_ARM].long()
        else:
            with torch.no_grad():
                arm = module.value_guided_arms(batch[Columns.OBS])
        rows = torch.arange(bsz, device=s_b.device)
        s_star = torch.where(explore[:, None], b_all[rows, arm], s_b)
        a_hat = fwd_out[EXPERT_ACTION_PREDS]
        target = torch.where(explore[:, None], a_hat[rows, arm], actions)
        pi = module.actor(s_star)
        q_pi = module.critic.q1(torch.cat([s_star, pi], -1), detach_params=True)
        l_actor, lam = losses.actor_loss(q_pi, pi, target, config.alpha)
        self._log_mean("actor_loss", l_actor)
        self._log_mean("actor_lambda", lam)
        self._log_mean(EXPLORATION_PROB, torch.tensor(eps))
        self._log_mean("explore_fraction", explore.float().mean())
        return l_actor

    def _target_noise(self, action: torch.Tensor) -> torch.Tensor:
        """Target-policy smoothing: clip(π'(s') + clip(N(0, σ), −c, c)) in units of the action bound."""
        module = self.module[DEFAULT_MODULE_ID].unwrapped()
        scale = (module.action_high - module.action_low) / 2 if hasattr(module, "action_low") else 1.0
        noise = (torch.randn_like(action) * self.config.policy_noise).clamp(
            -self.config.noise_clip, self.config.noise_clip) * scale
        out = action + noise
        if hasattr(module, "action_low"):
            out = torch.max(torch.min(out, module.action_high), module.action_low)
        return out

    # -- metrics -------------------------------------------------------------------------------

    def _log_mean(self, key: str, value: torch.Tensor) -> None:
        """Accumulate a per-step value; its mean over the update() call is logged once."""
        v = value.detach()
        if key in self._metric_sums:
            self._metric_sums[key] = self._metric_sums[key] + v
            self._metric_counts[key] += 1
        else:
            self._metric_sums[key], self._metric_counts[key] = v, 1

    def after_gradient_based_update(self, *, timesteps: dict[str, Any]) -> None:
        super().after_gradient_based_update(timesteps=timesteps)
        for key, total in self._metric_sums.items():
            self.metrics.log_value((DEFAULT_MODULE_ID, key), (total / self._metric_counts[key]).item(),
                                   window=1)
        self.metrics.log_value((DEFAULT_MODULE_ID, "num_gradient_steps"), self.num_gradient_steps,
                               reduce="max", window=1)
        self._metric_sums, self._metric_counts = {}, {}

    # -- distributed ---------------------------------------------------------------------------

    @staticmethod
    def _world_size() -> int:
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @staticmethod
    def _rank() -> int:
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0
