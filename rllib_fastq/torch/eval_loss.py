"""FAST-Q's loss for RLlib's offline evaluation (``evaluation(offline_evaluation_type="eval_loss")``).

RLlib's ``OfflineEvaluationRunner`` computes ``config.offline_loss_for_module_fn`` (default: the
learner's ``compute_loss_for_module``, bound to the runner) on held-out batches. FAST-Q's training
loss depends on learner state a runner has not got (the phase counter, sampling frequencies), so
``FastQConfig`` sets this function instead: a phase-independent score of the module on the data,

    eval_expert_loss  MSE of the logged arm's cloned action â_p(s) against the logged action;
    eval_td_loss      the twin critic's TD error at (b_p(s), a) against
                      r + γ (1 − terminated) · min Q'(b_p(s'), π'(b_p(s'))) (no target noise);

``total_eval_loss`` (RLlib's key) is their sum. Both are logged per module on the runner.
"""

from __future__ import annotations

from typing import Any

import torch
from ray.rllib.core.columns import Columns

from rllib_fastq.data import schema
from rllib_fastq.torch import losses


@torch.no_grad()
def offline_eval_loss(runner: Any, *, module_id: str, config: Any, batch: dict[str, Any],
                      fwd_out: dict[str, Any]) -> torch.Tensor:
    """The signature RLlib's ``offline_loss_for_module_fn`` has (``runner`` is the evaluation runner)."""
    module = runner.module[module_id].unwrapped()
    actions = batch[Columns.ACTIONS].float()
    n = actions.shape[0]
    rows = torch.arange(n, device=actions.device)
    pid = batch.get(schema.POLICY_ID)
    pid = torch.zeros(n, dtype=torch.long, device=actions.device) if pid is None else pid.long().reshape(-1)
    with module.frozen_representations():
        b, a_hat = module.representations(batch[Columns.OBS])
        b_next, _ = module.representations(batch[Columns.NEXT_OBS])
    s_b, s2_b = b[rows, pid], b_next[rows, pid]
    expert = (a_hat[rows, pid] - actions).pow(2).mean()
    if config.reward_weights is not None and schema.REWARD_COMPONENTS in batch:
        rc = batch[schema.REWARD_COMPONENTS].float()
        rewards = rc @ torch.as_tensor(config.reward_weights, dtype=rc.dtype, device=rc.device)
    else:
        rewards = batch[Columns.REWARDS].float().reshape(-1)
    actor = getattr(module, "target_actor", module.actor)  # inference-only modules have no targets
    critic = getattr(module, "target_critic", module.critic)
    q_next, _ = critic(torch.cat([s2_b, actor(s2_b)], -1), with_weights=False)
    y = losses.td_target(rewards, batch[Columns.TERMINATEDS].float().reshape(-1), q_next, config.gamma)
    q, _ = module.critic(torch.cat([s_b, actions], -1), with_weights=False)
    td = losses.td_loss(q, y)
    runner.metrics.log_value((module_id, "eval_expert_loss"), expert.item(), window=1)
    runner.metrics.log_value((module_id, "eval_td_loss"), td.item(), window=1)
    return expert + td
