"""Why FAST-Q trails behaviour cloning on the player platform: three diagnostics on logged states.

    python -m benchmarks.player_platform_diagnostics [--seed 0] [--alpha 2.5] [--grl-lambda 0.1]

Trains FAST-Q with the quality benchmark's settings (and TD3+BC beside it), and on the rows of
``offline_data/player_platform/heldout.parquet`` (logged data of other players, data seed 1) prints

1. linear-probe accuracy of the player's observed segment (what decides which arm is right)
   from the raw state, the trunk output, the expert hidden ``h_p`` and the balanced
   representation ``b_p`` of the logged arm, and of the arm ``k`` from ``b_k(s)`` (what the
   adversary is to make impossible), at initialisation and after phase 1;
2. per segment, the mean action of the actor acting as the segment's preferred arm against
   that arm's rule, and their RMSE, after phase 1 and during phase 2 (TD3+BC at the end);
3. per segment, which arm FAST-Q's ``"best"`` choice picks.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from benchmarks import baselines
from benchmarks.player_platform_common import FULL, GAMMA, HIDDENS, ROOT, TRAIN, fastq_config

HELDOUT = str(ROOT / "offline_data/player_platform/heldout.parquet")
SEGMENTS = ("casual", "competitive", "spender")


def probe_accuracy(x_tr: torch.Tensor, y_tr: torch.Tensor, x_te: torch.Tensor, y_te: torch.Tensor,
                   steps: int = 400) -> float:
    """Test accuracy of a multinomial logistic regression (standardised inputs, Adam)."""
    mu, sd = x_tr.mean(0), x_tr.std(0) + 1e-6
    lin = torch.nn.Linear(x_tr.shape[1], int(y_tr.max()) + 1)
    opt = torch.optim.Adam(lin.parameters(), lr=1e-2, weight_decay=1e-4)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(lin((x_tr - mu) / sd), y_tr).backward()
        opt.step()
    with torch.no_grad():
        return float((lin((x_te - mu) / sd).argmax(-1) == y_te).float().mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--alpha", type=float, default=2.5)
    p.add_argument("--grl-lambda", type=float, default=0.1)
    args = p.parse_args()
    torch.set_num_threads(1)
    from rllib_fastq.data.io import read_transitions
    from rllib_fastq.envs.arms import PREFERRED_ARM
    from rllib_fastq.local_ray import init_local_ray

    init_local_ray(num_cpus=2, log_to_driver=False, configure_logging=False)
    tr, te = read_transitions(TRAIN), read_transitions(HELDOUT)
    seg_tr, seg_te = (torch.as_tensor(t.obs[:, -7:-4].argmax(-1)) for t in (tr, te))
    seg = seg_te.numpy()
    rule = te.expert_actions.reshape(len(seg), -1, te.actions.shape[1])  # [N, K, d]: every arm's rule
    print(f"segment shares (heldout rows): {np.round(np.bincount(seg) / len(seg), 3)}; probe from the raw "
          f"state: {probe_accuracy(torch.as_tensor(tr.obs), seg_tr, torch.as_tensor(te.obs), seg_te):.3f}")

    algo = fastq_config(args.seed, FULL, {"alpha": args.alpha, "grl_lambda": args.grl_lambda}).build_algo()
    module = algo.get_module()

    def probes(label: str) -> None:
        out = {}
        for name, t in (("tr", tr), ("te", te)):
            with module.frozen_representations():
                z = module.trunk(module.normalize(torch.as_tensor(t.obs)))
                h = module.experts(z)
                b = module.balancer(h)
            rows, pid = torch.arange(len(t.policy_id)), torch.as_tensor(t.policy_id)
            out[name] = {"trunk": z, "h_p": h[rows, pid], "b_p": b[rows, pid], "b_all": b}
        cells = [f"{k} {probe_accuracy(out['tr'][k], seg_tr, out['te'][k], seg_te):.3f}"
                 for k in ("trunk", "h_p", "b_p")]
        # What the adversary is asked to make impossible: tell k from b_k(s), every arm on the same states.
        arm_x = {n: o["b_all"].reshape(-1, o["b_all"].shape[-1]) for n, o in out.items()}
        arm_y = {n: torch.arange(o["b_all"].shape[1]).repeat(o["b_all"].shape[0]) for n, o in out.items()}
        arm = probe_accuracy(arm_x["tr"], arm_y["tr"], arm_x["te"], arm_y["te"])
        print(f"{label}: segment probe " + ", ".join(cells) + f"; arm k from b_k(s) {arm:.3f} (chance 0.333)",
              flush=True)

    def actions(label: str, act) -> None:
        for s, name in enumerate(SEGMENTS):
            k, m = PREFERRED_ARM[s], seg == s
            a = act(k, te.obs[m])
            rmse = float(np.sqrt(((a - rule[m, k]) ** 2).mean()))
            print(f"{label}: {name} as arm {k}: mean action {np.round(a.mean(0), 2)} vs rule "
                  f"{np.round(rule[m, k].mean(0), 2)}, RMSE {rmse:.3f}", flush=True)

    def fastq_act(k: int, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return module.choose_arms(torch.as_tensor(obs), k)["actions"].numpy()

    probes("at initialisation")
    for i in range(FULL["total"] // FULL["spi"]):
        algo.train()
        step = (i + 1) * FULL["spi"]
        module = algo.get_module()
        if step == FULL["pretrain"]:
            probes(f"after phase 1 ({step} steps)")
        if step >= FULL["pretrain"] and step % 500 == 0:
            actions(f"FAST-Q @ {step}", fastq_act)
            with torch.no_grad():
                arm = module.choose_arms(torch.as_tensor(te.obs), "best")["policy_id"].numpy()
            shares = {n: np.round(np.bincount(arm[seg == s], minlength=3) / (seg == s).sum(), 2).tolist()
                      for s, n in enumerate(SEGMENTS)}
            print(f"FAST-Q @ {step}: 'best' picks arms 0/1/2 with shares {shares}", flush=True)
    algo.stop()

    agent = baselines.NormalizedTD3BC(baselines.load_flat(TRAIN), hiddens=HIDDENS, gamma=GAMMA, seed=args.seed,
                                      alpha=args.alpha)
    agent.train(FULL["total"])

    def td3bc_act(_k: int, obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return agent.algo.pi(agent.norm(torch.as_tensor(obs))).numpy()

    actions(f"TD3+BC @ {FULL['total']}", td3bc_act)


if __name__ == "__main__":
    main()
