"""Ridge arm values, and the importance-weighted out-of-bag error that picks between them and the
network's (``arm_value_model``).

Where the arm choice is made on arrival, "the return of a player who stays on arm k" is an
episode-level regression: arm k's own players' arrival features → their episode returns, then an
extrapolation to the other arms' players. The ensemble of MLPs extrapolates freely; a per-arm
ridge regression extrapolates linearly. Neither wins everywhere (docs/algorithm.md §8 (m)): on
the suite's logs the direct-method chooser (a ridge) beat FAST-Q's network on uniform and on some
low-overlap seeds, and lost on others. So both are fitted and the logs pick one, by the error
that matters for the choice: arm k's error over *all* players, not only over its own slice,

    err = Σ_k  Σ_{i: p_i = k} w_i (q̂_oob(s_i, k) − G_i)²  /  Σ_{i: p_i = k} w_i,     w_i = 1 / μ_i

(importance-weighted validation, Sugiyama, Krauledat & Müller 2007: weighting arm k's players by
the inverse of the router's probability of sending them to k makes its own slice stand in for
the whole population). ``q̂_oob`` is the out-of-bag prediction: both models are ensembles on the
same Poisson bootstrap of the players (``BOOTSTRAP_WEIGHTS``), so the members that never drew a
player predict it out of sample, and the ridge's members give the "safe" choice its spread.
"""

from __future__ import annotations

import numpy as np
import torch

#: The ridge penalties tried (on standardised features, in units of players): the one with the
#: least importance-weighted out-of-bag error is kept.
RIDGE_PENALTIES = (0.1, 1.0, 10.0, 100.0, 1000.0)
#: ``arm_value_model``: "network" (the ensemble MLP), "ridge" (per-arm ridge on the arrival
#: observation), "auto" (the one with the smaller importance-weighted out-of-bag error).
ARM_VALUE_MODELS = ("auto", "network", "ridge")
#: ``arm_value_source`` buffer values: which model the module's arm values come from.
NETWORK, RIDGE = 0, 1


def fit_ridge(x: torch.Tensor, arm: torch.Tensor, y: torch.Tensor, bootstrap: torch.Tensor, num_arms: int,
              penalty: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-member, per-arm ridge regressions of ``y`` [n, C] on ``x`` [n, d] (with a bias).

    Member ``e`` fits arm ``k`` on the rows with ``arm == k``, weighted by ``bootstrap[:, e]``.
    Features are standardised; columns constant over the rows (at arrival, the empty history) get
    a zero coefficient. Returns ``mean`` [d], ``inv_scale`` [d] and ``coef`` [E, d + 1, K·C] (arm
    major, the arm-value network's output layout), for :func:`ridge_values`.
    """
    x, y, w = x.double(), y.double().reshape(x.shape[0], -1), bootstrap.double()
    mean, std = x.mean(0), x.std(0, unbiased=False)
    keep = std > 1e-6 * (1.0 + mean.abs())
    inv_scale = torch.where(keep, 1.0 / std.clamp_min(1e-12), torch.zeros_like(std))
    f = torch.cat([(x[:, keep] - mean[keep]) * inv_scale[keep], torch.ones_like(x[:, :1])], 1)
    reg = penalty * torch.eye(f.shape[1], dtype=f.dtype, device=f.device)
    reg[-1, -1] = 0.0  # the bias is not shrunk
    members, c = w.shape[1], y.shape[1]
    coef = torch.zeros(members, x.shape[1] + 1, num_arms * c, dtype=f.dtype, device=f.device)
    rows = torch.cat([keep.nonzero()[:, 0], torch.tensor([x.shape[1]], device=x.device)])
    for k in range(num_arms):
        for e in range(members):
            wk = w[:, e] * (arm == k)
            if wk.sum() < 1.0:  # no player of this arm in the resample: predict the mean return
                coef[e, -1, k * c:(k + 1) * c] = y.mean(0)
                continue
            a = f.T @ (f * wk[:, None]) + reg
            sol = torch.linalg.solve(a + 1e-9 * torch.eye(a.shape[0], dtype=a.dtype, device=a.device),
                                     f.T @ (y * wk[:, None]))
            coef[e, rows, k * c:(k + 1) * c] = sol
    return mean.float(), inv_scale.float(), coef.float()


def ridge_values(x: torch.Tensor, mean: torch.Tensor, inv_scale: torch.Tensor, coef: torch.Tensor) -> torch.Tensor:
    """Every member's prediction ``[B, E, K·C]`` at ``x`` [B, d] (:func:`fit_ridge`'s output)."""
    f = torch.cat([(x - mean) * inv_scale, torch.ones_like(x[:, :1])], 1)
    return torch.einsum("bd,edo->beo", f, coef)


def importance_weighted_error(q_oob: np.ndarray, arm: np.ndarray, returns: np.ndarray,
                              propensity: np.ndarray) -> float:
    """The module doc's ``err``: per arm, the ``1 / μ``-weighted mean squared out-of-bag error of
    its value on its own players (``q_oob`` [n, K], ``propensity`` μ of the logged arm [n]),
    summed over the arms that have players."""
    rows = np.arange(len(arm))
    sq = (np.asarray(q_oob, np.float64)[rows, arm] - np.asarray(returns, np.float64)) ** 2
    w = 1.0 / np.clip(np.asarray(propensity, np.float64), 1e-3, 1.0)
    total = 0.0
    for k in np.unique(arm):
        sel = arm == k
        total += float((w[sel] * sq[sel]).sum() / w[sel].sum())
    return total
