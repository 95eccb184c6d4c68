"""What the learner decides about the arm values from the whole logs, between gradient steps.

Both read every logged player's arrival (first row): ``select_arm_value_model`` fits the ridge arm
values and keeps the better model (``arm_value_model``, rllib_fastq.counterfactual.ridge_values);
``check_arm_choice`` asks whether the choice without per-player pessimism beats the pessimistic
one (``arm_choice_check``, rllib_fastq.counterfactual.policy_check). Each writes its verdict into
the module's buffers (saved with the weights) and returns the metrics to log.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from rllib_fastq.counterfactual import policy_check, ridge_values
from rllib_fastq.data import schema
from rllib_fastq.data.schema import BOOTSTRAP_WEIGHTS, COMPONENT_RETURNS_TO_GO, RETURNS_TO_GO


def arrivals(module: Any, columns: dict[str, torch.Tensor]) -> tuple[torch.Tensor, np.ndarray]:
    """The logged players' first rows (mask [N]) and the router's probability of each one's logged
    arm: the logged ``policy_propensity`` where the logs have it, else the routing model's."""
    first = columns[schema.EPISODE_START].bool()
    if schema.POLICY_PROPENSITY in columns:
        return first, columns[schema.POLICY_PROPENSITY][first].double().cpu().numpy()
    arm = columns[schema.POLICY_ID][first].long()
    x = module.normalize(module.choice_observation(columns[schema.OBS][first]))
    routing = torch.softmax(module.routing_model(x), -1)
    return first, routing[torch.arange(arm.shape[0], device=arm.device), arm].double().cpu().numpy()


@torch.no_grad()
def select_arm_value_model(module: Any, columns: dict[str, torch.Tensor], config: Any) -> dict[str, float]:
    """``arm_value_model``: fit the ridge arm values on the logged players' arrival observations
    (the penalty with the least importance-weighted out-of-bag error) and, with "auto", keep the
    model, ridge or network, whose error is smaller (``module.arm_value_source``). Nothing where
    the arm values are not read, with one arm, with "network", or with a choice at every step
    (the ridge knows arrival states only)."""
    if config.arm_value_model == "network" or config.num_policies < 2 or config.arm_choice_at != "arrival" or \
            (config.arm_choice == "critic" and config.exploration_arm != "value"):
        return {}
    first, propensity = arrivals(module, columns)
    x = module.normalize(module.choice_observation(columns[schema.OBS][first]))
    arm = columns[schema.POLICY_ID][first].long()
    returns = columns[RETURNS_TO_GO][first]
    target = columns[COMPONENT_RETURNS_TO_GO][first] if module.arm_value_decomposition else returns[:, None]
    boot = columns[BOOTSTRAP_WEIGHTS][first]
    arm_np, returns_np, boot_np = arm.cpu().numpy(), returns.cpu().numpy(), boot.cpu().numpy()

    def error(raw: torch.Tensor) -> float:
        values = module.scalar_arm_values(raw).cpu().numpy()
        q_oob = policy_check.out_of_bag_values(values, boot_np)
        return ridge_values.importance_weighted_error(q_oob, arm_np, returns_np, propensity)

    best = None
    for penalty in ridge_values.RIDGE_PENALTIES:
        fit = ridge_values.fit_ridge(x, arm, target, boot, config.num_policies, penalty)
        err = error(ridge_values.ridge_values(x, *fit))
        if best is None or err < best[0]:
            best = (err, penalty, fit)
    ridge_error, penalty, (mean, inv_scale, coef) = best
    network_error = error(module.arm_values(x))
    module.ridge_mean.copy_(mean)
    module.ridge_inv_scale.copy_(inv_scale)
    module.ridge_coef.copy_(coef)
    use_ridge = config.arm_value_model == "ridge" or ridge_error < network_error
    module.arm_value_source.fill_(ridge_values.RIDGE if use_ridge else ridge_values.NETWORK)
    return {"arm_value_iw_error_ridge": ridge_error, "arm_value_iw_error_network": network_error,
            "arm_value_ridge_penalty": penalty, "arm_value_source_ridge": float(use_ridge)}


@torch.no_grad()
def check_arm_choice(module: Any, columns: dict[str, torch.Tensor], config: Any) -> dict[str, float]:
    """``arm_choice_check``: the doubly-robust improvement of the relaxed choice (β = 0) over the
    pessimistic one (β = ``arm_choice_pessimism``), paired per logged player on their arrival
    states; a lower confidence bound above zero drops the pessimism (``module.arm_choice_confirmed``).
    Nothing unless the option is on with the "safe" choice and several arms."""
    if not config.arm_choice_check or config.arm_choice != "safe" or config.num_policies < 2:
        return {}
    first, propensity = arrivals(module, columns)
    values, routing = module.arm_value_estimates(module.choice_observation(columns[schema.OBS][first]))
    arm = columns[schema.POLICY_ID][first].long()
    relaxed, pessimistic = (module.arm_choice_from_values(values, routing, pessimism=beta).cpu().numpy()
                            for beta in (0.0, config.arm_choice_pessimism))
    q_hat = policy_check.out_of_bag_values(values.cpu().numpy(), columns[BOOTSTRAP_WEIGHTS][first].cpu().numpy())
    res = policy_check.improvement(q_hat, arm.cpu().numpy(), columns[RETURNS_TO_GO][first].cpu().numpy(),
                                   np.clip(propensity, 1e-3, 1.0), relaxed, pessimistic,
                                   confidence=config.arm_choice_check_confidence)
    confirmed = res["lower_bound"] > 0.0
    module.arm_choice_confirmed.fill_(confirmed)
    return {"arm_choice_dr_improvement": res["improvement"], "arm_choice_dr_lower_bound": res["lower_bound"],
            "arm_choice_dr_players_changed": res["players_changed"], "arm_choice_confirmed": float(confirmed)}
