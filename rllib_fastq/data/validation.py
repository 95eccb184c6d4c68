"""Dataset validation: every reader and the algorithm call this before training.

Errors name the file, the column, what was expected and what was found, so that a user can fix
the data without reading our code.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rllib_fastq.data import schema
from rllib_fastq.data.transitions import Transitions


def _fail(tr: Transitions, column: str, expected: str, found: str) -> None:
    raise ValueError(f"{tr.source}: column '{column}': expected {expected}, found {found}.")


def validate_transitions(
    tr: Transitions,
    *,
    num_policies: int | None = None,
    action_dim: int | None = None,
    obs_dim: int | None = None,
    num_reward_components: int | None = None,
) -> Transitions:
    """Check shapes, finiteness and ranges of ``tr``; return it unchanged or raise ``ValueError``."""
    n = len(tr)
    if n == 0:
        raise ValueError(f"{tr.source}: the dataset is empty (0 rows); write at least one transition.")
    for name, value in tr.columns().items():
        if value.shape[0] != n:
            _fail(tr, name, f"{n} rows", f"{value.shape[0]}")
        if np.issubdtype(value.dtype, np.floating) and not np.isfinite(value).all():
            bad = int((~np.isfinite(value)).reshape(n, -1).any(axis=1).sum())
            _fail(tr, name, "finite numbers", f"NaN or inf in {bad} row(s)")
    if tr.new_obs.shape[1:] != tr.obs.shape[1:]:
        _fail(tr, schema.NEW_OBS, f"width {tr.obs.shape[1]} (as '{schema.OBS}')",
              f"width {tr.new_obs.shape[1]}")
    layout = tr.meta.obs_layout
    if obs_dim is None and layout is not None:
        obs_dim = layout.flat_dim
    if obs_dim is not None and tr.obs.shape[1] != obs_dim:
        _fail(tr, schema.OBS, f"width {obs_dim} (the observation space)", f"width {tr.obs.shape[1]}")
    if action_dim is not None and tr.actions.shape[1] != action_dim:
        _fail(tr, schema.ACTIONS, f"width {action_dim} (the action space)", f"width {tr.actions.shape[1]}")
    pid = tr.policy_id
    if num_policies is not None:
        if pid.min() < 0 or pid.max() >= num_policies:
            bad = np.unique(pid[(pid < 0) | (pid >= num_policies)])[:5].tolist()
            _fail(tr, schema.POLICY_ID, f"integers in [0, {num_policies}) (num_policies={num_policies})",
                  f"{bad}; raise num_policies or relabel the arms")
    elif pid.min() < 0:
        _fail(tr, schema.POLICY_ID, "non-negative integers", f"{int(pid.min())}")
    rc = tr.reward_components
    if num_reward_components is not None:
        if rc is None:
            _fail(tr, schema.REWARD_COMPONENTS, f"{num_reward_components} components per row "
                  "(reward_weights has that many entries)", "no such column")
        elif rc.shape[1] != num_reward_components:
            _fail(tr, schema.REWARD_COMPONENTS, f"width {num_reward_components} (len(reward_weights))",
                  f"width {rc.shape[1]}")
    ea = tr.expert_actions
    if ea is not None:
        if ea.shape[2] != tr.actions.shape[1]:
            _fail(tr, schema.EXPERT_ACTIONS, f"[K, {tr.actions.shape[1]}] per row", f"{list(ea.shape[1:])}")
        if num_policies is not None and ea.shape[1] != num_policies:
            _fail(tr, schema.EXPERT_ACTIONS, f"K={num_policies} rows per transition (num_policies)",
                  f"{ea.shape[1]}")
    prop = tr.policy_propensity
    if prop is not None and ((prop <= 0) | (prop > 1)).any():
        bad = prop[(prop <= 0) | (prop > 1)][:5].tolist()
        _fail(tr, schema.POLICY_PROPENSITY, "the router's probability of the logged arm, in (0, 1]",
              f"{bad}; drop the column if the propensities are unknown")
    mask = tr.expert_actions_mask
    if mask is not None:
        if ea is None:
            _fail(tr, schema.EXPERT_ACTIONS_MASK, f"a companion '{schema.EXPERT_ACTIONS}' column", "none")
        elif mask.shape[1:] != ea.shape[1:2]:
            _fail(tr, schema.EXPERT_ACTIONS_MASK, f"width {ea.shape[1]}", f"width {mask.shape[1]}")
    return tr


def expected_shapes(config: Any) -> dict[str, Any]:
    """What a ``FastQConfig`` expects of the data, as keyword arguments of ``validate_transitions``."""
    out: dict[str, Any] = {"num_policies": config.num_policies}
    if config.reward_weights is not None:
        out["num_reward_components"] = len(config.reward_weights)
    act = config.action_space
    if act is not None and getattr(act, "shape", None):
        out["action_dim"] = int(np.prod(act.shape))
    obs = config.observation_space
    if obs is not None:
        out["obs_dim"] = schema.ObsLayout.from_space(obs).flat_dim
    return out
