"""Off-policy evaluation from logs alone (issue 36): what a policy would score, with a confidence
interval, before it is deployed, and what the logged routing scores now.

Why this module is long: the estimators share one episode table (first states, returns, logged arms,
propensities) and one bootstrap; split it by estimator when one of them grows.

The quantity is the one ``fastq evaluate --env`` measures online: the mean **undiscounted episode
return** from the logs' initial states. The estimators (numpy/torch, no Ray):

- :func:`logged_value`: the logged routing's own value, the mean return of the logged episodes
  ("what you run now"), with a bootstrap-over-episodes 95 % interval.
- :func:`arm_choice_dr`: the doubly-robust value of an **arm-choice** policy. A player's arm is
  drawn once, on arrival, so at the arm level the logs are a contextual bandit with context
  ``s_i`` (the episode's first state), action ``p_i`` (the logged arm), reward ``G_i`` (the return)::

      DR_i = Σ_k π(k|s_i) q̂(s_i, k)  +  π(p_i|s_i) / μ(p_i|s_i) · (G_i − q̂(s_i, p_i))

  ``μ`` is the router's propensity of the logged arm (the logs' ``policy_propensity`` column when
  present, else the module's routing model ρ), ``q̂`` the arm values at the first state (FAST-Q's
  ensemble mean, or a per-arm ridge regression, :func:`fit_ridge_arm_values`). The estimate is the
  mean of ``DR_i``; the direct-method (first sum) and IPW (``q̂ = 0``) parts are reported too. It
  values the arm choice followed by **the arm's logged behaviour** within the episode: FAST-Q's
  served policy when ``serve_action="expert"`` (the chosen arm's cloned action), and "arm k as a
  policy" for a constant target (logged with the arm's exploration noise).
- :func:`balanced_dr`: the same with Kallus, Saito & Uehara's (ICML 2021) balanced weights for logs
  pooled from several loggers ``r`` (each with its own router ``μ_r`` and ``n_r`` episodes):
  ``π(p_i|s_i) / Σ_r (n_r/n) μ_r(p_i|s_i)``. It needs every logger's propensity of every logged
  arm; with one logger it is :func:`arm_choice_dr`. (The player-platform logs come from one router,
  so :func:`estimate_policy_value` reports the one-logger DR and the per-arm values.)
- :func:`fqe`: fitted Q evaluation (Le et al., 2019) of a continuous policy ``policy_fn(flat obs)
  -> actions`` on the logged transitions, for a served action that is not the logged behaviour
  (``serve_action="actor"``). A small MLP ``Q(s, a)`` (one output per target: the reward and each
  reward component) is trained by TD with the policy's next actions and a slowly tracking target
  network. Episode ends (terminated or truncated) stop the bootstrap: the value of the *episode*.
  With ``gamma == 1`` ``mean Q(s_0, π(s_0))`` estimates the undiscounted episode return (each row's
  step ``t`` is then one more input: on logs cut at a time limit the rest of the episode depends on
  the steps left); with ``gamma < 1`` it is the **discounted** value (``result["discounted"] =
  True``), comparable with the logs' mean discounted return (reported beside it), not with the
  undiscounted one. :func:`estimate_policy_value` (what ``fastq evaluate --data`` runs) uses
  ``gamma = 1`` unless asked for ``discounted=True``: the checkpoint's training ``gamma`` (0.9 in
  the suite) would report under half the episode return here. FQE extrapolates ``Q`` to the policy's
  actions: where they are off the logged ones (``action_shift``) it can be far off (measured in
  ``benchmarks/results/ope_validation.md``); ``ensemble`` > 1 bootstraps the fit into the interval.

Every interval is a percentile bootstrap over episodes with the fitted ``q̂`` (or FQE's Q) held
fixed: it leaves out the model's fitting noise, so it is too narrow where ``q̂`` is poor and the
IPW correction is small (few episodes on the target arm).
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from rllib_fastq.data.transitions import Transitions
from rllib_fastq.torch.networks import EnsembleMLP

# -- episodes -----------------------------------------------------------------------------------


@dataclasses.dataclass
class EpisodeTable:
    """One row per logged episode (its first logged row gives the state, arm and propensity)."""

    first_obs: np.ndarray  # [n, d] flat
    arm: np.ndarray  # [n] logged arm
    propensity: np.ndarray | None  # [n] μ(arm | first state), None if the logs have no column
    returns: np.ndarray  # [n] undiscounted return (reward_weights applied when given)
    components: np.ndarray | None  # [n, C] per-component undiscounted returns
    component_names: list[str]
    first_row: np.ndarray  # [n] index of the first row in the transitions
    episode_of_row: np.ndarray  # [N] episode index of each transition row

    def __len__(self) -> int:
        return int(self.returns.shape[0])


def scalar_rewards(tr: Transitions, reward_weights: Sequence[float] | None = None) -> np.ndarray:
    """The per-row reward: the logged one, or ``Σ_j w_j r_j`` over the reward components."""
    if reward_weights is None:
        return np.asarray(tr.rewards, np.float64)
    if tr.reward_components is None:
        raise ValueError("reward_weights: the logs have no reward_components column to weight")
    w = np.asarray(reward_weights, np.float64)
    if w.shape != (tr.reward_components.shape[1],):
        raise ValueError(f"reward_weights: expected {tr.reward_components.shape[1]} weights (one per "
                         f"reward component), got {w.shape[0] if w.ndim == 1 else w.shape}")
    return tr.reward_components.astype(np.float64) @ w


def component_names(tr: Transitions) -> list[str]:
    c = tr.num_reward_components or 0
    names = list(tr.meta.reward_component_names or [])
    return names if len(names) == c else [f"component_{j}" for j in range(c)]


def episodes_from_transitions(tr: Transitions, reward_weights: Sequence[float] | None = None) -> EpisodeTable:
    """Group the transitions by ``eps_id``: first state (smallest ``t``), arm, propensity, returns."""
    if len(tr) == 0:
        raise ValueError("logs: no transitions")
    _, ep = np.unique(tr.eps_id, return_inverse=True)
    n = int(ep.max()) + 1
    order = np.lexsort((np.asarray(tr.t), ep))  # by episode, then time
    first = order[np.r_[0, np.flatnonzero(np.diff(ep[order])) + 1]]
    first = first[np.argsort(ep[first])]  # first[i] is episode i's first row
    r = scalar_rewards(tr, reward_weights)
    comps = None
    if tr.reward_components is not None:
        rc = tr.reward_components.astype(np.float64)
        comps = np.stack([np.bincount(ep, weights=rc[:, j], minlength=n) for j in range(rc.shape[1])], 1)
    prop = None
    if tr.policy_propensity is not None:
        prop = np.asarray(tr.policy_propensity, np.float64)[first]
        if not np.all(np.isfinite(prop) & (prop > 0)):
            prop = None  # a partial or broken column: estimate instead
    return EpisodeTable(first_obs=np.asarray(tr.obs, np.float32)[first], arm=np.asarray(tr.policy_id)[first],
                        propensity=prop, returns=np.bincount(ep, weights=r, minlength=n), components=comps,
                        component_names=component_names(tr), first_row=first, episode_of_row=ep)


# -- bootstrap ----------------------------------------------------------------------------------


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` [n] (resampling episodes)."""
    v = np.asarray(values, np.float64)
    if v.size == 0:
        return [float("nan"), float("nan")]
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for lo in range(0, n_boot, 200):  # chunks keep memory at 200·n
        idx = rng.integers(0, v.size, size=(min(200, n_boot - lo), v.size))
        means[lo:lo + idx.shape[0]] = v[idx].mean(1)
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


def logged_value(returns: np.ndarray, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The logged routing's value: mean episode return with its bootstrap interval."""
    r = np.asarray(returns, np.float64)
    return {"estimate": float(r.mean()), "ci": bootstrap_ci(r, n_boot=n_boot, seed=seed), "episodes": int(r.size)}


# -- arm-level doubly robust --------------------------------------------------------------------


def target_probabilities(target: Any, n: int, num_arms: int) -> np.ndarray:
    """``π(k | s_i)`` [n, K] from an arm index, arms [n] or probabilities [n, K]."""
    t = np.asarray(target)
    if t.ndim == 2:
        if t.shape != (n, num_arms):
            raise ValueError(f"target probabilities: expected shape {(n, num_arms)}, got {t.shape}")
        return t.astype(np.float64)
    arms = np.broadcast_to(t.astype(np.int64), (n,))
    if arms.min() < 0 or arms.max() >= num_arms:
        raise ValueError(f"target arm: expected arms in [0, {num_arms}), got {int(arms.min())}..{int(arms.max())}")
    return np.eye(num_arms)[arms]


def dr_terms(q_hat: np.ndarray, arm: np.ndarray, returns: np.ndarray, propensity: np.ndarray,
             target: Any) -> dict[str, np.ndarray]:
    """Per-episode terms: ``dm`` (Σ_k π q̂), ``ipw`` (π/μ · G), ``dr`` (dm + π/μ · (G − q̂(s, p)))."""
    q_hat = np.asarray(q_hat, np.float64)
    n, k = q_hat.shape
    pi = target_probabilities(target, n, k)
    rows = np.arange(n)
    arm = np.asarray(arm, np.int64)
    w = pi[rows, arm] / np.asarray(propensity, np.float64)
    g = np.asarray(returns, np.float64)
    dm = (pi * q_hat).sum(1)
    return {"dm": dm, "ipw": w * g, "dr": dm + w * (g - q_hat[rows, arm]), "weights": w}


def arm_choice_dr(q_hat: np.ndarray, arm: np.ndarray, returns: np.ndarray, propensity: np.ndarray,
                  target: Any, *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Doubly-robust value of the arm choice ``target`` (arm, arms [n] or probabilities [n, K]),
    with its bootstrap interval and the direct-method and IPW parts."""
    t = dr_terms(q_hat, arm, returns, propensity, target)
    return {"estimate": float(t["dr"].mean()), "ci": bootstrap_ci(t["dr"], n_boot=n_boot, seed=seed),
            "direct_method": float(t["dm"].mean()), "ipw": float(t["ipw"].mean()),
            "correction": float((t["dr"] - t["dm"]).mean()),
            "matched_episodes": int((t["weights"] > 0).sum()), "max_weight": float(t["weights"].max())}


def balanced_dr(q_hat: np.ndarray, arm: np.ndarray, returns: np.ndarray, target: Any,
                logger_probs: np.ndarray, logger_counts: Sequence[int], *, n_boot: int = 1000,
                seed: int = 0) -> dict[str, Any]:
    """DR with Kallus et al.'s balanced weights for logs pooled from R loggers:
    ``w_i = π(p_i|s_i) / Σ_r (n_r/n) μ_r(p_i|s_i)``, ``logger_probs`` [R, n, K] every logger's
    arm probabilities at every episode's first state, ``logger_counts`` [R] their episode counts."""
    q_hat = np.asarray(q_hat, np.float64)
    n, k = q_hat.shape
    mu = np.asarray(logger_probs, np.float64)
    share = np.asarray(logger_counts, np.float64) / float(np.sum(logger_counts))
    rows, arm = np.arange(n), np.asarray(arm, np.int64)
    pooled = np.einsum("r,rn->n", share, mu[:, rows, arm])  # the mixture's propensity of the logged arm
    return arm_choice_dr(q_hat, arm, returns, pooled, target, n_boot=n_boot, seed=seed)


# -- direct-method model without a module ------------------------------------------------------


def fit_ridge_arm_values(x: np.ndarray, arm: np.ndarray, y: np.ndarray, num_arms: int,
                         lam: float = 1.0) -> Callable[[np.ndarray], np.ndarray]:
    """Per-arm ridge regression of ``y`` [n] or [n, M] on standardised ``x`` [n, d] (with a bias):
    returns ``predict(x) -> [n, K]`` (or [n, K, M]). An arm without episodes predicts the mean."""
    x = np.asarray(x, np.float64)
    y2 = np.asarray(y, np.float64).reshape(len(x), -1)
    mean, std = x.mean(0), x.std(0) + 1e-6

    def feats(z: np.ndarray) -> np.ndarray:
        z = (np.asarray(z, np.float64) - mean) / std
        return np.concatenate([z, np.ones((len(z), 1))], 1)

    f = feats(x)
    reg = lam * np.eye(f.shape[1])
    reg[-1, -1] = 0.0  # no penalty on the bias
    coefs = []
    for k in range(num_arms):
        sel = np.asarray(arm) == k
        if sel.sum() < 2:
            c = np.zeros((f.shape[1], y2.shape[1]))
            c[-1] = y2.mean(0)
        else:
            c = np.linalg.solve(f[sel].T @ f[sel] + reg, f[sel].T @ y2[sel])
        coefs.append(c)
    w = np.stack(coefs, 1)  # [d+1, K, M]
    squeeze = np.asarray(y).ndim == 1

    def predict(z: np.ndarray) -> np.ndarray:
        out = np.einsum("nd,dkm->nkm", feats(z), w)
        return out[..., 0] if squeeze else out

    return predict


RIDGE_LAMBDAS = (1.0, 10.0, 100.0, 1000.0, 10000.0)


def cross_fit_ridge_arm_values(x: np.ndarray, arm: np.ndarray, y: np.ndarray, num_arms: int, *,
                               folds: int = 5, lambdas: Sequence[float] = RIDGE_LAMBDAS,
                               seed: int = 0) -> tuple[np.ndarray, float]:
    """Out-of-fold predictions of :func:`fit_ridge_arm_values` at ``x`` ([n, K] or [n, K, M]) and
    the ridge penalty used (the one of ``lambdas`` with the least out-of-fold squared error on the
    logged arms). Cross-fitting keeps an episode's own return out of its ``q̂``: an in-sample fit
    (with many features and few episodes per arm) absorbs the noise of ``G_i``, shrinking the DR
    correction towards zero and the interval with it."""
    n = len(x)
    fold = np.random.default_rng(seed).permutation(n) % folds
    rows, arm = np.arange(n), np.asarray(arm, np.int64)
    best = None
    for lam in lambdas:
        pred = None
        for f in range(folds):
            out = fold == f
            p = fit_ridge_arm_values(x[~out], arm[~out], np.asarray(y)[~out], num_arms, lam=lam)(x[out])
            pred = np.zeros((n, *p.shape[1:])) if pred is None else pred
            pred[out] = p
        err = float(((pred[rows, arm] - np.asarray(y)) ** 2).mean())
        if best is None or err < best[0]:
            best = (err, lam, pred)
    return best[2], best[1]


# -- fitted Q evaluation ------------------------------------------------------------------------

#: :func:`estimate_policy_value`'s FQE gradient steps: with ``gamma = 1`` the value has to travel
#: back over the whole episode (up to 50 steps on the player platform) through a slowly tracking
#: target network, which 2000 steps did not do (the arms' values came out ~40 % low).
FQE_STEPS = 10000


def fqe(obs: np.ndarray, actions: np.ndarray, rewards: np.ndarray, new_obs: np.ndarray, dones: np.ndarray,
        first_obs: np.ndarray, policy_fn: Callable[[np.ndarray], np.ndarray], *, gamma: float,
        steps: int = 2000, hidden: int = 64, lr: float = 1e-3, batch_size: int = 256, tau: float = 0.01,
        seed: int = 0, n_boot: int = 1000, t: np.ndarray | None = None, first_t: np.ndarray | None = None,
        horizon: float | None = None, ensemble: int = 1, groups: np.ndarray | None = None) -> dict[str, Any]:
    """Fitted Q evaluation of ``policy_fn`` (flat obs [B, d] → actions [B, d_a], deterministic).

    ``rewards`` [N] or [N, M] (several targets, e.g. reward and components: one net, one output
    each; TD is linear in the reward). Returns ``values`` [M] = mean over first states of
    ``Q(s_0, π(s_0))``, their bootstrap intervals, ``gamma`` and ``discounted`` (gamma < 1).

    ``t`` [N] (each row's step in its episode; ``first_t`` [n] the first states', default 0):
    ``Q(s, t, a)`` reads ``t / horizon`` as one more input (``horizon``: default ``max t + 1``), the
    next state's being ``t + 1``. With ``gamma == 1`` on logs truncated at a time limit the value of
    the rest of the episode depends on the steps left, which the observation may not show (a
    rolling window of history does not); without ``t`` FQE averages over them.

    ``ensemble`` > 1: that many Q-networks, each trained on its own bootstrap resample of the
    episodes (``groups`` [N]: each row's episode index); the value is their mean and the interval
    (:func:`_ensemble_bootstrap_ci`) holds the fit's noise too, which a single network's interval
    over first states leaves out: where the policy's actions are off the logged ones, the members'
    extrapolations disagree and the interval widens. ``action_shift``: the policy's distance from the
    logged actions at the logged states (RMS, in the logged actions' standard deviations).
    """
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    r = torch.as_tensor(np.asarray(rewards, np.float32).reshape(len(obs), -1))
    m = r.shape[1]
    s = torch.as_tensor(np.asarray(obs, np.float32))
    s2 = torch.as_tensor(np.asarray(new_obs, np.float32))
    a = torch.as_tensor(np.asarray(actions, np.float32)).reshape(len(obs), -1)
    d = torch.as_tensor(np.asarray(dones, np.float32)).reshape(-1, 1)
    s0 = torch.as_tensor(np.asarray(first_obs, np.float32))
    time_feature = t is not None
    if time_feature:
        tt = np.asarray(t, np.float64).reshape(-1)
        h = float(horizon if horizon is not None else tt.max() + 1.0)
        f = torch.as_tensor((tt / h).astype(np.float32))[:, None]
        f2 = torch.as_tensor(((tt + 1.0) / h).astype(np.float32))[:, None]
        f0 = torch.as_tensor((np.zeros(len(s0)) if first_t is None else
                              np.asarray(first_t, np.float64).reshape(-1) / h).astype(np.float32))[:, None]

    def act(x: torch.Tensor) -> torch.Tensor:  # the policy's actions, computed once
        return torch.cat([torch.as_tensor(np.asarray(policy_fn(x[i:i + 4096].numpy()), np.float32))
                          .reshape(len(x[i:i + 4096]), -1) for i in range(0, len(x), 4096)])

    a2, a0 = act(s2), act(s0)
    mu, sd = s.mean(0), s.std(0) + 1e-6
    if time_feature:  # the step as one more (unnormalised, in [0, 1]) state feature
        s, s2, s0 = torch.cat([s, f], 1), torch.cat([s2, f2], 1), torch.cat([s0, f0], 1)
        mu, sd = torch.cat([mu, torch.zeros(1)]), torch.cat([sd, torch.ones(1)])
    r_scale = r.abs().mean(0).clamp(min=1e-6)  # rewards of order 1 for the net; undone at the end
    e = int(ensemble)
    if e < 1:
        raise ValueError(f"ensemble: expected >= 1, got {ensemble}")
    if e > 1:  # each member: its own bootstrap resample of the episodes (rows drawn in proportion)
        if groups is None:
            raise ValueError("ensemble > 1 needs groups (each row's episode index) to resample episodes")
        grp = np.asarray(groups, np.int64)
        n_g = int(grp.max()) + 1
        counts = np.random.default_rng(seed).multinomial(n_g, np.full(n_g, 1.0 / n_g), size=e)  # [E, n_g]
        w = counts[:, grp].astype(np.float64)
    else:
        w = np.ones((1, len(s)))
    cdf = torch.as_tensor(np.cumsum(w / w.sum(1, keepdims=True), 1))
    cdf[:, -1] = 1.0
    net = EnsembleMLP(s.shape[1] + a.shape[1], [hidden, hidden], m, e)
    target_net = copy.deepcopy(net)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def q(model: torch.nn.Module, x: torch.Tensor, u: torch.Tensor) -> torch.Tensor:  # [E, B, ·] → [E, B, M]
        # EnsembleMLP reads a per-member input as [B, E, ·]
        return model(torch.cat([(x - mu) / sd, u], -1).transpose(0, 1)).transpose(0, 1)

    losses = []
    for _ in range(steps):
        i = torch.searchsorted(cdf, torch.rand(e, batch_size, generator=g, dtype=torch.float64)).clamp(max=len(s) - 1)
        with torch.no_grad():
            y = r[i] / r_scale + gamma * (1 - d[i]) * q(target_net, s2[i], a2[i])
        loss = (q(net, s[i], a[i]) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
        with torch.no_grad():
            for p, tp in zip(net.parameters(), target_net.parameters()):
                tp.mul_(1 - tau).add_(tau * p)
    with torch.no_grad():
        v0 = (q(net, s0.expand(e, -1, -1), a0.expand(e, -1, -1)) * r_scale).numpy().astype(np.float64)  # [E, n, M]
    # How far the policy's actions are from the logged ones, in the logged actions' standard deviations
    # (RMS over dimensions, mean over up to 4096 logged states): FQE extrapolates Q to the policy's
    # actions, which the logs support less the larger this is.
    sub = torch.as_tensor(np.random.default_rng(seed).choice(len(a), size=min(len(a), 4096), replace=False))
    a_pi = act(torch.as_tensor(np.asarray(obs, np.float32))[sub])
    shift = (((a_pi - a[sub]) / (a.std(0) + 1e-6)).pow(2).mean(1).sqrt()).mean()
    return {"values": v0.mean((0, 1)).tolist(),
            "cis": [_ensemble_bootstrap_ci(v0[..., j], n_boot=n_boot, seed=seed) for j in range(m)],
            "member_values": v0[..., 0].mean(1).tolist(), "ensemble": e,
            "gamma": float(gamma), "discounted": bool(gamma < 1.0), "steps": int(steps),
            "time_feature": time_feature, "final_td_loss": float(np.mean(losses[-100:])),
            "action_shift": float(shift)}


def _ensemble_bootstrap_ci(values: np.ndarray, *, n_boot: int = 1000, alpha: float = 0.05,
                           seed: int = 0) -> list[float]:
    """Percentile interval of the mean of ``values`` [E, n] (E ensemble members, n first states): each
    replicate draws one member and resamples the first states, so the interval holds the members'
    spread (the fit's noise, when each was trained on its own bootstrap of the episodes) as well as
    the states'. With E = 1 it is :func:`bootstrap_ci`."""
    v = np.asarray(values, np.float64)
    if v.shape[0] == 1:
        return bootstrap_ci(v[0], n_boot=n_boot, alpha=alpha, seed=seed)
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for lo in range(0, n_boot, 200):
        k = min(200, n_boot - lo)
        members = rng.integers(0, v.shape[0], size=k)
        idx = rng.integers(0, v.shape[1], size=(k, v.shape[1]))
        means[lo:lo + k] = v[members[:, None], idx].mean(1)
    return [float(np.quantile(means, alpha / 2)), float(np.quantile(means, 1 - alpha / 2))]


def fqe_from_logs(tr: Transitions, policy_fn: Callable[[np.ndarray], np.ndarray], *, gamma: float = 1.0,
                  reward_weights: Sequence[float] | None = None, ep: EpisodeTable | None = None,
                  components: bool = True, time_feature: bool | None = None, **kw: Any) -> dict[str, Any]:
    """:func:`fqe` of ``policy_fn`` (flat obs → actions) on logged transitions ``tr``: the reward
    (``reward_weights`` applied when given) and, with ``components``, each reward component.

    ``gamma == 1`` (the default) estimates the mean **undiscounted** episode return from the logs'
    first states, the quantity ``fastq evaluate --env`` measures online; every episode end
    (terminated or truncated) stops the bootstrap. ``time_feature`` (default: ``gamma == 1``) gives
    FQE each row's step ``t`` (see :func:`fqe`). Other keywords go to :func:`fqe`. Adds
    ``logged_return`` (the logs' own mean return at this ``gamma``, the behaviour's value) and its
    interval."""
    ep = ep if ep is not None else episodes_from_transitions(tr, reward_weights)
    r = scalar_rewards(tr, reward_weights)
    targets = r[:, None] if (tr.reward_components is None or not components) else \
        np.column_stack([r, tr.reward_components])
    time_feature = gamma >= 1.0 if time_feature is None else time_feature
    t = np.asarray(tr.t, np.float64)
    res = fqe(tr.obs, tr.actions, targets, tr.new_obs, np.asarray(tr.terminateds) | np.asarray(tr.truncateds),
              ep.first_obs, policy_fn, gamma=gamma, t=t if time_feature else None,
              first_t=t[ep.first_row] if time_feature else None, groups=ep.episode_of_row, **kw)
    logged = discounted_returns(tr, ep, targets, gamma)[:, 0]
    res["logged_return"] = float(logged.mean())
    res["logged_return_ci"] = bootstrap_ci(logged, n_boot=kw.get("n_boot", 1000), seed=kw.get("seed", 0))
    return res


def discounted_returns(tr: Transitions, ep: EpisodeTable, rewards: np.ndarray, gamma: float) -> np.ndarray:
    """Per-episode discounted return ``Σ_t γ^(t − t_0) r_t`` [n] or [n, M]."""
    t = np.asarray(tr.t, np.float64)
    t0 = t[ep.first_row][ep.episode_of_row]
    disc = gamma ** (t - t0)
    r = np.asarray(rewards, np.float64).reshape(len(tr), -1) * disc[:, None]
    out = np.stack([np.bincount(ep.episode_of_row, weights=r[:, j], minlength=len(ep)) for j in range(r.shape[1])], 1)
    return out[:, 0] if np.asarray(rewards).ndim == 1 else out


# -- the module's side ---------------------------------------------------------------------------


def _module_obs(module: Any, x: np.ndarray) -> Any:
    layout = module.layout
    if layout.temporal is None:
        return torch.as_tensor(x, dtype=torch.float32)
    return {k: torch.as_tensor(v) for k, v in layout.unflatten(x).items()}


def module_arm_values(module: Any, first_obs: np.ndarray, policy_id: Any = "best") -> dict[str, np.ndarray]:
    """The module at the first states: ``q_hat`` [n, K] (ensemble mean), ``routing`` ρ [n, K] and
    the arm ``chosen`` [n] by ``choose_arms(obs, policy_id)``."""
    with torch.no_grad():
        obs = _module_obs(module, first_obs)
        values, rho = module.arm_value_estimates(obs)
        chosen = module.choose_arms(obs, policy_id)["policy_id"]
    return {"q_hat": values.mean(1).double().numpy(), "routing": rho.double().numpy(),
            "chosen": chosen.long().numpy()}


def module_policy_fn(module: Any, policy_id: Any = "best") -> Callable[[np.ndarray], np.ndarray]:
    """Flat obs → the module's served actions (``forward_inference``)."""
    def act(x: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            out = module.forward_inference({"obs": _module_obs(module, x),
                                            **({} if policy_id == "best" or policy_id is None else
                                               {"policy_id": torch.full((len(x),), int(policy_id))})})
        return out["actions"].numpy()
    return act


def _load(module_or_checkpoint: Any) -> tuple[Any, dict[str, Any]]:
    if not isinstance(module_or_checkpoint, (str, bytes)) and not hasattr(module_or_checkpoint, "__fspath__"):
        return module_or_checkpoint, {}
    from rllib_fastq.checkpoints import load_module, run_info

    ck = str(module_or_checkpoint)
    return load_module(ck), run_info(ck)


def _read_logs(logs: Any) -> Transitions:
    if isinstance(logs, Transitions):
        return logs
    from rllib_fastq.data.io import read_transitions

    return read_transitions(logs)


# -- the public function --------------------------------------------------------------------------


def estimate_policy_value(module_or_checkpoint: Any, logs: Any, *, reward_weights: Sequence[float] | None = None,
                          policy_id: Any = "best", method: str = "auto", gamma: float | None = None,
                          discounted: bool = False, fqe_steps: int = FQE_STEPS, fqe_ensemble: int = 1,
                          n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Off-policy value of a FAST-Q module's served policy from ``logs`` (paths or Transitions).

    ``method``: ``"dr"`` the arm choice's doubly-robust value (the served policy when
    ``serve_action="expert"``), ``"fqe"`` fitted Q evaluation of the served actions, ``"auto"`` (DR
    for ``serve_action="expert"``, else FQE). ``policy_id``: ``"best"`` (the module's arm choice) or
    an arm. The value is the mean **undiscounted** episode return from the logs' first states (what
    ``fastq evaluate --env`` measures online): FQE runs with ``gamma = 1`` and each row's step as an
    input. ``discounted=True`` asks for the discounted value instead (FQE with ``gamma``, default the
    checkpoint's; the DR arm choice stays undiscounted); without it ``gamma`` is not used.
    ``fqe_ensemble``: FQE's bootstrap ensemble (:func:`fqe`), for an interval that holds the fit's noise.
    ``reward_weights``: value of ``Σ_j w_j r_j`` instead of the logged reward (then ``q̂`` is
    the ridge model, as the module's arm values were fitted to the logged reward). The per-component
    values use a cross-fitted per-arm ridge ``q̂`` (:func:`cross_fit_ridge_arm_values`); the module's
    arm values are fitted on the logs they are evaluated on (not cross-fitted).

    Returns ``estimate``, ``ci``, ``logged_routing``, ``logged_routing_ci``, ``components`` (name →
    value), ``method``, ``propensities`` (``"logged"`` or ``"estimated"``: the module's routing
    model), and the details: ``dr`` (direct-method part, IPW, correction), ``per_arm`` (each arm
    as a policy, DR), ``chosen_arm_share``, ``fqe`` when run.
    """
    if method not in ("auto", "dr", "fqe"):
        raise ValueError(f"method: expected 'auto', 'dr' or 'fqe', got {method!r}")
    module, info = _load(module_or_checkpoint)
    tr = _read_logs(logs)
    ep = episodes_from_transitions(tr, reward_weights)
    k = int(module.num_policies)
    if int(ep.arm.max()) >= k:
        raise ValueError(f"logs: arm {int(ep.arm.max())} in policy_id, the module has {k} arms")
    mv = module_arm_values(module, ep.first_obs, policy_id)
    if ep.propensity is not None:
        prop, prop_src = ep.propensity, "logged"
    else:
        prop, prop_src = mv["routing"][np.arange(len(ep)), ep.arm], "estimated"
    names = ep.component_names
    ridge_targets = ep.returns[:, None] if ep.components is None else np.column_stack([ep.returns, ep.components])
    ridge, lam = cross_fit_ridge_arm_values(ep.first_obs, ep.arm, ridge_targets, k, seed=seed)  # [n, K, M]
    q_hat = mv["q_hat"] if reward_weights is None else ridge[..., 0]
    target = mv["chosen"]
    dr = arm_choice_dr(q_hat, ep.arm, ep.returns, prop, target, n_boot=n_boot, seed=seed)
    arm_names = list(tr.meta.extra.get("arm_names") or [])[:k]
    arm_names = arm_names if len(arm_names) == k else [str(j) for j in range(k)]
    per_arm = {arm_names[j]: arm_choice_dr(q_hat, ep.arm, ep.returns, prop, j, n_boot=n_boot, seed=seed)
               for j in range(k)}
    comps = {n: arm_choice_dr(ridge[..., 1 + j], ep.arm, ep.components[:, j], prop, target,
                              n_boot=n_boot, seed=seed)["estimate"] for j, n in enumerate(names)}
    logged = logged_value(ep.returns, n_boot=n_boot, seed=seed)
    serve_action = getattr(module, "serve_action", "expert")
    use = method if method != "auto" else ("dr" if serve_action == "expert" else "fqe")
    out: dict[str, Any] = {
        "estimate": dr["estimate"], "ci": dr["ci"],
        "logged_routing": logged["estimate"], "logged_routing_ci": logged["ci"],
        "components": comps, "method": "dr-arm-choice", "propensities": prop_src,
        "episodes": len(ep), "policy_id": policy_id, "ridge_lambda": lam, "serve_action": serve_action, "dr": dr,
        "per_arm": per_arm,
        "chosen_arm_share": {arm_names[j]: float((target == j).mean()) for j in range(k)},
        "logged_arm_share": {arm_names[j]: float((ep.arm == j).mean()) for j in range(k)},
        "logged_routing_components": {n: float(ep.components[:, j].mean()) for j, n in enumerate(names)},
    }
    if use == "fqe":
        if discounted:
            gamma = float(info.get("gamma", 0.99)) if gamma is None else float(gamma)
        else:
            gamma = 1.0
        res = fqe_from_logs(tr, module_policy_fn(module, policy_id), gamma=gamma, reward_weights=reward_weights,
                            ep=ep, steps=fqe_steps, ensemble=fqe_ensemble, seed=seed, n_boot=n_boot)
        if res["discounted"]:
            res["logged_discounted"], res["logged_discounted_ci"] = res["logged_return"], res["logged_return_ci"]
        out["fqe"] = res
        out["extrapolation_warning"] = bool(res["action_shift"] > ACTION_SHIFT_WARNING)
        out.update(estimate=res["values"][0], ci=res["cis"][0], method="fqe",
                   components={n: res["values"][1 + j] for j, n in enumerate(names)})
        if res["discounted"]:
            # Discounted values: compare with the logs' discounted return, not the undiscounted one.
            out["method"] = f"fqe (discounted, gamma {gamma:g}; compare with fqe.logged_discounted)"
    return out


#: FQE's estimate is flagged as an extrapolation when the policy acts more than this many logged-action
#: standard deviations (RMS) from the logged actions at the logged states. Measured on the suite
#: (BENCHMARKS.md, "Off-policy evaluation"): BC at 0.25–0.30 was estimated within 1–13 %, the
#: reference preset's actor at 1.24–1.79 with errors of 20–140 %.
ACTION_SHIFT_WARNING = 1.0


def format_report(res: Mapping[str, Any]) -> str:
    """The lines ``fastq evaluate CHECKPOINT --data LOGS`` prints."""
    lo, hi = res["ci"]
    llo, lhi = res["logged_routing_ci"]
    lines = [f"off-policy estimate ({res['method']}, {res['propensities']} propensities, {res['episodes']} "
             f"episodes): {res['estimate']:.3f} [95 % CI {lo:.3f}, {hi:.3f}]",
             f"  logged routing (what you run now): {res['logged_routing']:.3f} [95 % CI {llo:.3f}, {lhi:.3f}]"]
    if "fqe" in res and res["fqe"]["discounted"]:
        f = res["fqe"]
        lines.append(f"  logged routing, discounted (gamma {f['gamma']:g}): {f['logged_discounted']:.3f}")
    if res.get("components"):
        lines.append("  per component: " + ", ".join(f"{n} {v:.3f}" for n, v in res["components"].items()))
    if res.get("per_arm"):
        lines.append("  each arm as a policy (DR): " + ", ".join(
            f"{n} {v['estimate']:.3f}" for n, v in res["per_arm"].items()))
    shift = res.get("fqe", {}).get("action_shift")
    if shift is not None and shift > ACTION_SHIFT_WARNING:
        lines.append(f"  warning: the policy acts {shift:.2f} standard deviations of the logged actions away from "
                     f"them at the logged states (> {ACTION_SHIFT_WARNING:g}): FQE extrapolates its Q there and the "
                     "estimate can be far off, whatever its interval says (BENCHMARKS.md, 'Off-policy evaluation')")
    return "\n".join(lines)
