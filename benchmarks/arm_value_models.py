"""Which model of "a player's return on arm k" chooses arms best, fitted on the logs alone?

    python -m benchmarks.arm_value_models --regimes low-overlap uniform misaligned --seeds 0 1

Each model is fitted on the suite's training logs (episode level: a logged player's arrival
features, the arm that served them, their undiscounted return) and chooses, for each of the
suite's 200 held-out players, the arm with the highest predicted return; the choice is scored with
the arms' exact rules (``benchmarks.arm_choice_rules.arm_returns``). No RLlib, no module: this
isolates the regression from everything else FAST-Q does. Models:

- ``ridge λ=1``: the direct-method chooser (``benchmarks.harness.simple.DirectMethodChooser``);
- ``ridge cv``: per-arm ridge with the penalty chosen by 5-fold cross-validation;
- ``mlp``: an ensemble of 5 MLPs (128, 128; the module's arm-value network), K outputs, each
  member on a Poisson bootstrap of the players, trained ``--steps`` Adam steps on the logged arm's
  output only (the module's ``arm_value_loss`` at episode level), greedy on the ensemble mean;
- ``mlp wd``: the same with weight decay 1e-3 (AdamW);
- ``linear+mlp``: per-arm linear model plus the MLP (a residual), one loss.
"""

from __future__ import annotations

import argparse
import os

import numpy as np

os.environ.setdefault("OMP_NUM_THREADS", "1")

K = 3


def episodes(train_parquet: str, static_dim: int) -> tuple[np.ndarray, ...]:
    """Arrival static features [n, F_s], logged arm [n], undiscounted return [n] and the router's
    propensity of the logged arm [n] per logged player."""
    import pandas as pd

    df = pd.read_parquet(train_parquet, columns=["obs", "rewards", "eps_id", "t", "policy_id", "policy_propensity"])
    ret = df.groupby("eps_id", sort=False)["rewards"].sum()
    first = df.sort_values("t").groupby("eps_id", sort=False).head(1).set_index("eps_id").loc[ret.index]
    x = np.stack(first["obs"].values)[:, -static_dim:].astype(np.float64)
    return (x, first["policy_id"].to_numpy(np.int64), ret.to_numpy(np.float64),
            first["policy_propensity"].to_numpy(np.float64))


def importance_weighted_cv(fit, x: np.ndarray, arm: np.ndarray, y: np.ndarray, mu: np.ndarray, *,
                           folds: int = 5, seed: int = 0) -> float:
    """Out-of-fold squared error of the logged arm's prediction, each player weighted by
    1 / μ(p_i | s_i) and normalised per arm: an estimate of each arm's error over ALL players
    (Sugiyama et al. 2007), not only over the arm's own slice; summed over arms."""
    fold = np.random.default_rng(seed).permutation(len(x)) % folds
    err = np.zeros(len(x))
    for f in range(folds):
        out = fold == f
        pred = fit(x[~out], arm[~out], y[~out])(x[out])
        err[out] = (pred[np.arange(out.sum()), arm[out]] - y[out]) ** 2
    w = 1.0 / np.clip(mu, 1e-3, 1.0)
    return float(sum((w[arm == k] * err[arm == k]).sum() / w[arm == k].sum() for k in range(K)))


def fit_mlp(x: np.ndarray, arm: np.ndarray, y: np.ndarray, *, steps: int, seed: int, weight_decay: float = 0.0,
            linear: bool = False, members: int = 5) -> np.ndarray:
    """The ensemble's [members] predictions as a function; returns ``predict(x_new) -> [n, E, K]``."""
    import torch

    torch.manual_seed(seed)
    mean, std = x.mean(0), x.std(0) + 1e-6
    xs = torch.as_tensor((x - mean) / std, dtype=torch.float32)
    ys = torch.as_tensor((y - y.mean()) / y.std(), dtype=torch.float32)
    arms = torch.as_tensor(arm)
    gen = torch.Generator().manual_seed(seed)
    boot = torch.poisson(torch.ones(len(x), members), generator=gen)
    nets = []
    for e in range(members):
        net = torch.nn.Sequential(torch.nn.Linear(xs.shape[1], 128), torch.nn.ReLU(), torch.nn.Linear(128, 128),
                                  torch.nn.ReLU(), torch.nn.Linear(128, K))
        lin = torch.nn.Linear(xs.shape[1], K) if linear else None
        params = list(net.parameters()) + (list(lin.parameters()) if lin is not None else [])
        opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=weight_decay)
        w = boot[:, e]
        for _ in range(steps):
            idx = torch.randint(len(xs), (256,), generator=gen)
            out = net(xs[idx]) + (lin(xs[idx]) if lin is not None else 0.0)
            pred = out.gather(1, arms[idx, None])[:, 0]
            loss = (w[idx] * (pred - ys[idx]) ** 2).sum() / w[idx].sum().clamp_min(1.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
        nets.append((net, lin))

    def predict(x_new: np.ndarray) -> np.ndarray:
        z = torch.as_tensor((x_new - mean) / std, dtype=torch.float32)
        with torch.no_grad():
            outs = [net(z) + (lin(z) if lin is not None else 0.0) for net, lin in nets]
        return torch.stack(outs, 1).numpy() * y.std() + y.mean()

    return predict


def score_models(regime: str, seed: int, truth: np.ndarray, arrivals: list[dict[str, np.ndarray]],
                 steps: int) -> dict:
    from benchmarks.harness.simple import DirectMethodChooser
    from benchmarks.harness.suites import FULL, player_platform_dataset
    from rllib_fastq.evaluation import ope

    ds = player_platform_dataset(regime, seed, FULL)
    x, arm, y, mu = episodes(ds.train, ds.layout.static)
    held = np.stack([a["static"] for a in arrivals]).astype(np.float64)
    rows = np.arange(len(truth))

    def score(choice: np.ndarray) -> float:
        return round(float(truth[rows, choice].mean()), 3)

    dm = DirectMethodChooser(ds.train, num_arms=K, static_dim=ds.layout.static)
    _, lam = ope.cross_fit_ridge_arm_values(x, arm, y, K, seed=seed)
    out = {"regime": regime, "seed": seed, "per-player best arm": score(truth.argmax(1)),
           "ridge λ=1": score(np.array([dm.choose(s) for s in held])),
           "ridge cv": score(ope.fit_ridge_arm_values(x, arm, y, K, lam=lam)(held).argmax(1)), "cv λ": lam}
    fits = {"ridge cv": lambda a, b, c: ope.fit_ridge_arm_values(a, b, c, K, lam=lam),
            "mlp": lambda a, b, c: _mean(fit_mlp(a, b, c, steps=steps, seed=seed)),
            "mlp 300": lambda a, b, c: _mean(fit_mlp(a, b, c, steps=300, seed=seed)),
            "mlp wd": lambda a, b, c: _mean(fit_mlp(a, b, c, steps=steps, seed=seed, weight_decay=1e-3)),
            "linear+mlp": lambda a, b, c: _mean(fit_mlp(a, b, c, steps=steps, seed=seed, linear=True))}
    iwcv = {}
    for name, fit in fits.items():
        if name != "ridge cv":
            out[name] = score(fit(x, arm, y)(held).argmax(1))
        iwcv[name] = round(importance_weighted_cv(fit, x, arm, y, mu, seed=seed), 2)
    out["iwcv"] = iwcv
    out["iwcv pick"] = min(iwcv, key=iwcv.get)
    return out


def _mean(predict):
    return lambda z: predict(z).mean(1)


def main(argv: list[str] | None = None) -> int:
    from benchmarks.arm_choice_rules import PLAYERS, arm_returns, print_table, score_cells
    from benchmarks.harness.suites import EVAL_SEED, REGIMES

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--steps", type=int, default=3000, help="Adam steps per ensemble member")
    args = p.parse_args(argv)
    truth, arrivals = arm_returns(PLAYERS, EVAL_SEED)
    rows = score_cells(args.regimes, args.seeds, lambda r, s: score_models(r, s, truth, arrivals, args.steps))
    print_table(rows, raw=("iwcv", "iwcv pick"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
