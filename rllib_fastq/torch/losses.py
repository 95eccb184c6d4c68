"""FAST-Q's losses (docs/algorithm.md §4), one function each, on plain tensors.

Shapes: B batch, K arms, d action width, D decomposed reward components.
Optional ``weights`` [B] reweight rows (mean 1); None means uniform.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F


def _wmean(x: torch.Tensor, weights: torch.Tensor | None) -> torch.Tensor:
    """Mean of ``x`` [B, ...] with row weights [B]."""
    if weights is None:
        return x.mean()
    w = weights.reshape(-1, *([1] * (x.dim() - 1))).expand_as(x)
    return (x * w).sum() / w.sum()


def expert_loss(a_hat: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
                weights: torch.Tensor | None = None, kind: str = "mse") -> tuple[torch.Tensor, torch.Tensor]:
    """Behaviour cloning of every arm where its action is known.

        L_expert = Σ_k  Σ_i m_ik w_i ||â_k(s_i) − target_ik||² / d  /  Σ_i m_ik w_i     ("mse")

    ``target_ik`` is ``expert_actions[i, k]`` or, for k = policy_id_i, the logged action. ``kind``
    "l1" puts ``||·||_1`` in place of ``||·||²`` (the conditional median, FastQConfig.expert_loss).
    Returns the total and the per-arm terms [K] (zero for an arm with no known row).
    """
    w = mask.float() if weights is None else mask.float() * weights[:, None]
    diff = a_hat - targets
    sq = (diff.abs() if kind == "l1" else diff.pow(2)).mean(-1)  # [B, K]
    per_arm = (sq * w).sum(0) / w.sum(0).clamp_min(1e-8)
    return per_arm.sum(), per_arm


def adversary_loss(logits: torch.Tensor, labels: torch.Tensor,
                   weights: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of the adversary on every expert's balanced representation.

        L_adv = Σ_k  mean_i CE(G(GRL(b_k(s_i))), label_ik)

    ``logits`` [B, K, K] are logits (docs/algorithm.md §6: not a sigmoid). Minimised by the classifier;
    the GRL makes trunk, experts and BR maximise it, scaled by λ. Returns the loss and the
    classifier accuracy.
    """
    b, k, _ = logits.shape
    ce = F.cross_entropy(logits.reshape(b * k, k), labels.reshape(b * k), reduction="none").reshape(b, k)
    acc = (logits.argmax(-1) == labels).float().mean()
    return _wmean(ce, weights) * k, acc


def td_target(rewards: torch.Tensor, terminateds: torch.Tensor, q_next: torch.Tensor,
              gamma: float) -> torch.Tensor:
    """y = r + γ (1 − terminated) · min(Q1', Q2')(s'_b, clip(π'(s'_b) + ε)); ``q_next`` [B, 2]."""
    return rewards + gamma * (1.0 - terminateds) * q_next.min(dim=-1).values


def td_loss(q: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """L_TD = MSE(Q1(s_b, a), y) + MSE(Q2(s_b, a), y); ``q`` [B, 2], ``y`` [B] (no gradient)."""
    return (q - y.detach()[:, None]).pow(2).mean(0).sum()


def decomposition_loss(q: torch.Tensor, w: torch.Tensor, components: torch.Tensor,
                       detach_q: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Each twin's share ``w_i[j] · Q_i`` regresses on reward component ``r_j``.

        L_dec = Σ_i Σ_j MSE(w_i[j] · Q_i, r_j)    over twins i and decomposed components j

    ``q`` [B, 2], ``w`` [B, 2, D + 1] (the last slot is the residual, not regressed),
    ``components`` [B, D]. ``detach_q``: the decomposition explains without shaping Q.
    Returns the total and the per-component terms [D].
    """
    d = components.shape[-1]
    q_ = q.detach() if detach_q else q
    share = w[..., :d] * q_[..., None]  # [B, 2, D]
    per_component = (share - components[:, None, :]).pow(2).mean(0).sum(0)
    return per_component.sum(), per_component


def component_rewards(rewards: torch.Tensor, components: torch.Tensor | None,
                      weights: torch.Tensor, has_rest: bool) -> torch.Tensor:
    """The rewards of the "bellman" critic's heads [B, C]: the decomposed components ``r_j`` [B, D],
    then, with ``has_rest``, the rest of the scalar reward ``r − Σ_j w_j r_j`` (weight 1; the whole
    reward when nothing is decomposed). ``weights`` [D]: the decomposed components' weights."""
    parts = []
    if components is not None and components.shape[-1] > 0:
        parts.append(components)
        if has_rest:
            parts.append((rewards - components @ weights)[:, None])
    elif has_rest:
        parts.append(rewards[:, None])
    return torch.cat(parts, -1)


def component_td_target(rewards: torch.Tensor, terminateds: torch.Tensor, q_next: torch.Tensor,
                        q_next_components: torch.Tensor, gamma: float) -> torch.Tensor:
    """Per-component Bellman targets of the "bellman" critic, ``[B, C]``:

        y_j = r_j + γ (1 − terminated) · Q'_{i*, j}(s'_b, clip(π'(s'_b) + ε)),   i* = argmin_i Σ_j w_j Q'_ij

    ``rewards`` [B, C] (``component_rewards``), ``q_next`` [B, 2] the target twins' scalar values
    ``Σ_j w_j Q'_ij``, ``q_next_components`` [B, 2, C]. One twin for all components, the one whose
    weighted sum is the smaller: then ``Σ_j w_j y_j`` is exactly TD3's clipped double-Q target
    ``r + γ (1 − terminated) min(Q1', Q2')`` (``td_target``), so the scalar Q keeps TD3's
    pessimism. A min per component would not: with weights of both signs (a cost) it mixes the
    twins, and the sum of the per-component minima is neither twin's value nor their minimum.
    """
    twin = q_next.argmin(-1)
    nxt = q_next_components[torch.arange(q_next.shape[0], device=q_next.device), twin]  # [B, C]
    return rewards + gamma * (1.0 - terminateds)[:, None] * nxt


def component_td_loss(q_components: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Each head's TD loss on its own target, summed over twins and heads:

        L_TD,C = Σ_j [ MSE(Q1_j(s_b, a), y_j) + MSE(Q2_j(s_b, a), y_j) ]

    ``q_components`` [B, 2, C], ``y`` [B, C] (no gradient). Returns the total and the per-head terms [C].
    """
    per_head = (q_components - y.detach()[:, None, :]).pow(2).mean(0).sum(0)
    return per_head.sum(), per_head


def actor_loss(q_pi: torch.Tensor, pi: torch.Tensor, target: torch.Tensor,
               alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """TD3+BC's actor loss towards the logged or the counterfactual action.

        λ       = α / mean|Q1(s*, π(s*))|   (detached)
        L_actor = −λ · mean Q1(s*, π(s*)) + MSE(π(s*), target)

    ``q_pi`` [B] must carry gradient to the actor only (critic weights detached).
    Returns the loss and λ.
    """
    lam = alpha / q_pi.abs().mean().detach().clamp_min(1e-8)
    return -lam * q_pi.mean() + F.mse_loss(pi, target), lam


def arm_value_loss(values: torch.Tensor, policy_id: torch.Tensor, returns: torch.Tensor,
                   bootstrap: torch.Tensor | None = None) -> torch.Tensor:
    """Each arm's value regresses on the returns of that arm's own logged players.

        L_V = Σ_e  Σ_i u_ie (V_{e,p_i}(s_i) − G_i)² / Σ_i u_ie

    ``values`` [B, E, K] (ensemble member e, arm k), ``policy_id`` p [B], ``returns`` G [B]
    (Monte-Carlo return from s_i on), ``bootstrap`` u [B, E] (per-member resampling weights;
    None = 1). Only the logged arm's value is trained on a row: arm k's value on another arm's
    players is an extrapolation across slices, which the ensemble's spread measures.

    Per reward component (``arm_value_decomposition``): ``values`` [B, E, K, C] and ``returns``
    [B, C], component j's value regressing on component j's own return-to-go G_ij:

        L_V = Σ_e  Σ_j  Σ_i u_ie (V_{e,p_i,j}(s_i) − G_ij)² / Σ_i u_ie

    (C = 1 is the scalar loss above).
    """
    if values.dim() == 3:  # one value per arm: the C = 1 case
        values, returns = values[..., None], returns[:, None]
    rows = torch.arange(values.shape[0], device=values.device)
    err = (values[rows, :, policy_id] - returns[:, None, :]).pow(2).sum(-1)  # [B, E], summed over components
    if bootstrap is None:
        return err.mean(0).sum()
    return ((err * bootstrap).sum(0) / bootstrap.sum(0).clamp_min(1e-8)).sum()


def propensity_loss(logits: torch.Tensor, policy_id: torch.Tensor,
                    weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of the routing model ``ρ(k | s) = softmax(logits)`` on the logged arm.

    ``weights`` [B] undo a per-arm balanced draw (frequency / draw probability of the row's
    arm), so ``ρ`` estimates the router's probabilities, not the balanced ones.
    """
    return _wmean(F.cross_entropy(logits, policy_id, reduction="none"), weights)
