"""What the learner decides about the arm values from the whole logs, between gradient steps.

Both read every logged player's arrival (first row; :class:`Arrivals`, gathered once per check):
``select_arm_value_model`` fits the ridge arm values and keeps the better model
(``arm_value_model``, rllib_fastq.counterfactual.ridge_values);
``check_arm_choice`` asks whether the choice without per-player pessimism beats the pessimistic
one (``arm_choice_check``, rllib_fastq.counterfactual.policy_check). Each writes its verdict into
the module's buffers (saved with the weights) and returns the metrics to log.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from rllib_fastq.counterfactual import policy_check, ridge_values
from rllib_fastq.data import schema
from rllib_fastq.data.schema import BOOTSTRAP_WEIGHTS, COMPONENT_RETURNS_TO_GO, RETURNS_TO_GO


def arm_values_read(config: Any) -> bool:
    """Whether anything reads the arm values: several arms, and the arm choice or the exploration
    uses them (not the reference's critic choice with uniform exploration)."""
    return config.num_policies > 1 and (config.arm_choice != "critic" or config.exploration_arm == "value")


def fits_to_run(config: Any) -> list[Callable[[Any, Arrivals, Any], dict[str, float]]]:
    """The fits this configuration asks for, in order (the model first: the check reads its values)."""
    fits: list[Callable[[Any, Arrivals, Any], dict[str, float]]] = []
    if config.arm_value_model != "network" and config.arm_choice_at == "arrival" and arm_values_read(config):
        fits.append(select_arm_value_model)
    if config.arm_choice_check and config.arm_choice == "safe" and config.num_policies > 1:
        fits.append(check_arm_choice)
    return fits


@dataclasses.dataclass
class Arrivals:
    """Every logged player's first row, as both fits read it: the normalised choice observation
    ``x`` [n, d] (what the arm values see), the logged arm [n], the return [n] and per component
    [n, C] (``None`` without ``arm_value_decomposition``), the bootstrap weights [n, E], and the
    router's probability of the logged arm [n] (numpy)."""

    x: torch.Tensor
    arm: torch.Tensor
    returns: torch.Tensor
    component_returns: torch.Tensor | None
    bootstrap: torch.Tensor
    propensity: np.ndarray

    @classmethod
    def from_columns(cls, module: Any, columns: dict[str, torch.Tensor]) -> Arrivals:
        """The logged ``policy_propensity`` where the logs have it, else the routing model's."""
        first = columns[schema.EPISODE_START].bool()
        x = module.normalize(module.choice_observation(columns[schema.OBS][first]))
        arm = columns[schema.POLICY_ID][first].long()
        if schema.POLICY_PROPENSITY in columns:
            propensity = columns[schema.POLICY_PROPENSITY][first]
        else:
            propensity = torch.softmax(module.routing_model(x), -1)[torch.arange(arm.shape[0], device=arm.device), arm]
        components = columns[COMPONENT_RETURNS_TO_GO][first] if module.arm_value_decomposition else None
        return cls(x, arm, columns[RETURNS_TO_GO][first], components, columns[BOOTSTRAP_WEIGHTS][first],
                   propensity.double().cpu().numpy())


@torch.no_grad()
def select_arm_value_model(module: Any, arrivals: Arrivals, config: Any) -> dict[str, float]:
    """``arm_value_model``: fit the ridge arm values on the logged players' arrival observations
    (the penalty with the least importance-weighted out-of-bag error) and, with "auto", keep the
    model, ridge or network, whose error is smaller (``module.arm_value_source``). Not run where
    the arm values are not read, with "network", or with a choice at every step (the ridge knows
    arrival states only): :func:`fits_to_run`."""
    a = arrivals
    target = a.component_returns if a.component_returns is not None else a.returns[:, None]
    arm_np, returns_np, boot_np = a.arm.cpu().numpy(), a.returns.cpu().numpy(), a.bootstrap.cpu().numpy()

    def error(raw: torch.Tensor) -> float:
        values = module.scalar_arm_values(raw).cpu().numpy()
        q_oob = policy_check.out_of_bag_values(values, boot_np)
        return ridge_values.importance_weighted_error(q_oob, arm_np, returns_np, a.propensity)

    best = None
    for penalty in ridge_values.RIDGE_PENALTIES:
        fit = ridge_values.fit_ridge(a.x, a.arm, target, a.bootstrap, config.num_policies, penalty)
        err = error(ridge_values.ridge_values(a.x, *fit))
        if best is None or err < best[0]:
            best = (err, penalty, fit)
    ridge_error, penalty, (mean, inv_scale, coef) = best
    network_error = error(module.arm_values(a.x))
    module.ridge_mean.copy_(mean)
    module.ridge_inv_scale.copy_(inv_scale)
    module.ridge_coef.copy_(coef)
    use_ridge = config.arm_value_model == "ridge" or ridge_error < network_error
    module.arm_value_source.fill_(ridge_values.RIDGE if use_ridge else ridge_values.NETWORK)
    return {"arm_value_iw_error_ridge": ridge_error, "arm_value_iw_error_network": network_error,
            "arm_value_ridge_penalty": penalty, "arm_value_source_ridge": float(use_ridge)}


@torch.no_grad()
def check_arm_choice(module: Any, arrivals: Arrivals, config: Any) -> dict[str, float]:
    """``arm_choice_check``: the doubly-robust improvement of the relaxed choice (β = 0) over the
    pessimistic one (β = ``arm_choice_pessimism``), paired per logged player on their arrival
    states; a lower confidence bound above zero drops the pessimism (``module.arm_choice_confirmed``).
    Run only with the option on, the "safe" choice and several arms: :func:`fits_to_run`."""
    a = arrivals
    values, routing = module.arm_value_estimates_at(a.x)
    relaxed, pessimistic = (module.arm_choice_from_values(values, routing, pessimism=beta).cpu().numpy()
                            for beta in (0.0, config.arm_choice_pessimism))
    q_hat = policy_check.out_of_bag_values(values.cpu().numpy(), a.bootstrap.cpu().numpy())
    res = policy_check.improvement(q_hat, a.arm.cpu().numpy(), a.returns.cpu().numpy(),
                                   np.clip(a.propensity, 1e-3, 1.0), relaxed, pessimistic,
                                   confidence=config.arm_choice_check_confidence)
    confirmed = res["lower_bound"] > 0.0
    module.arm_choice_confirmed.fill_(confirmed)
    return {"arm_choice_dr_improvement": res["improvement"], "arm_choice_dr_lower_bound": res["lower_bound"],
            "arm_choice_dr_players_changed": res["players_changed"], "arm_choice_confirmed": float(confirmed)}
