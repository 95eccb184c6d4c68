"""The ``mujoco`` suite's table and learning-curve plot, from the result store only.

One row per dataset (``<env>/<kind>``), one column per method with records: the D4RL normalised
score of the final policy, mean ± std (population, ddof 0) over training seeds, the count in
brackets; "behaviour" is the normalised return of the policy behind a single-policy file (its
card); the last column gives published D4RL v2 numbers for context (other data, 200× the budget).
"""

from __future__ import annotations

import json
import pathlib
from collections import Counter
from typing import Any

import numpy as np

from benchmarks.harness import mujoco
from benchmarks.harness.store import Store

#: Column order (methods not listed come after, in name order).
COLUMNS = ("FAST-Q", "FAST-Q (best logged arm)", "FAST-Q (K=1)", "TD3+BC", "BC", "RLlib BC", "RLlib IQL",
           "RLlib CQL", "RLlib CQL (BC actor)")
#: Not in the main table by default: a configuration kept only for the history (BENCHMARKS.md reading).
SIDE_COLUMNS = ("RLlib CQL (BC actor)",)
CURVES = {"FAST-Q": "tab:red", "FAST-Q (K=1)": "tab:blue", "TD3+BC": "tab:green"}  # method: colour
# Published D4RL v2 normalised scores at 1M gradient steps (Kostrikov et al., "Offline RL with
# Implicit Q-Learning", ICLR 2022, Table 1; CQL as re-run there). Other data: D4RL's behaviour
# policies, and their "medium-expert" mixes an expert where our "medium-high" has our best SAC policy.
PUBLISHED = {
    ("HalfCheetah-v5", "medium"): {"BC": 42.6, "TD3+BC": 48.3, "CQL": 44.0, "IQL": 47.4},
    ("Hopper-v5", "medium"): {"BC": 52.9, "TD3+BC": 59.3, "CQL": 58.5, "IQL": 66.3},
    ("Walker2d-v5", "medium"): {"BC": 75.3, "TD3+BC": 83.7, "CQL": 72.5, "IQL": 78.3},
    ("HalfCheetah-v5", "medium-replay"): {"BC": 36.6, "TD3+BC": 44.6, "CQL": 45.5, "IQL": 44.2},
    ("Hopper-v5", "medium-replay"): {"BC": 18.1, "TD3+BC": 60.9, "CQL": 95.0, "IQL": 94.7},
    ("Walker2d-v5", "medium-replay"): {"BC": 26.0, "TD3+BC": 81.8, "CQL": 77.2, "IQL": 73.9},
    ("HalfCheetah-v5", "medium-high"): {"BC": 55.2, "TD3+BC": 90.7, "CQL": 91.6, "IQL": 86.7},
    ("Hopper-v5", "medium-high"): {"BC": 52.5, "TD3+BC": 98.0, "CQL": 105.4, "IQL": 91.5},
    ("Walker2d-v5", "medium-high"): {"BC": 107.5, "TD3+BC": 110.1, "CQL": 108.8, "IQL": 109.6},
}


def behaviour_score(dataset: str, data: pathlib.Path = mujoco.DATA) -> str:
    """The normalised return of the policy behind a single-policy file (its card); "mixed" otherwise."""
    env, kind = dataset.split("/")
    card = data / env / "card.json"
    if kind not in ("medium", "high") or not card.exists():
        return "mixed"
    return f"{json.loads(card.read_text())['policies'][kind]['normalized']:.1f}"


def _cell(vals: list[float]) -> str:
    if not vals:
        return ""
    if len(vals) == 1:
        return f"{vals[0]:.1f} (1)"
    return f"{np.mean(vals):.1f} ± {np.std(vals):.1f} ({len(vals)})"


def table(records: dict[Any, dict[str, Any]], side: bool = False) -> str:
    """The markdown table of these (latest) records; ``side``: the history-only columns as well."""
    ok = [r for r in records.values() if r.get("score") is not None]
    present = {r["method"] for r in ok}
    cols = [m for m in COLUMNS if m in present and (side or m not in SIDE_COLUMNS)]
    cols += sorted(present - set(COLUMNS))
    datasets = sorted({r["dataset"] for r in records.values()})
    lines = ["| dataset | K | behaviour | " + " | ".join(cols) + " | published D4RL v2 (BC / TD3+BC / CQL / IQL) |",
             "|---|---|---|" + "---|" * len(cols) + "---|"]
    for ds in datasets:
        env, kind = ds.split("/")
        rows = [r for r in ok if r["dataset"] == ds]
        k = next((r["extras"].get("k") for r in rows if r["extras"].get("k") is not None), "")
        cells = [_cell([r["score"] for r in sorted(rows, key=lambda r: r["seed"]) if r["method"] == m]) for m in cols]
        pub = PUBLISHED.get((env, kind))
        pub_s = " / ".join(f"{pub[n]:.1f}" for n in ("BC", "TD3+BC", "CQL", "IQL")) if pub else "n/a"
        lines.append(f"| {env.split('-')[0]} {kind} | {k} | {behaviour_score(ds)} | " + " | ".join(cells)
                     + f" | {pub_s} |")
    return "\n".join(lines)


def tables(store: Store, suite: str, budget_detail: dict[str, Any] | None = None) -> str:
    records = store.latest(suite, budget_detail)
    if not records:
        return f"No records of suite {suite!r} at this budget in {store.path}."
    b = next(iter(records.values())).get("budget_detail", {})
    other = len(store.latest(suite)) - len(records)
    ok = [r for r in records.values() if r.get("score") is not None]
    imported = Counter(r["method"] for r in ok if r.get("imported_from"))
    run_here = Counter(r["method"] for r in ok if not r.get("imported_from"))
    lines = [f"# Suite `{suite}`", "",
             f"Budget: {b.get('steps')} gradient steps of batch 256 per method (FAST-Q: {b.get('pretrain')} of them "
             f"phase 1), MLPs {b.get('hidden')}; the FINAL policy's D4RL normalised score over {b.get('episodes')} "
             f"episodes seeded {b.get('eval_seed')}..; mean ± std (ddof 0) over training seeds (count in brackets). "
             f"`{json.dumps(b, sort_keys=True)}`"
             + (f" ({other} records of this suite at other budgets are in the store, not shown.)" if other > 0 else ""),
             "", table(records), ""]
    side = [m for m in SIDE_COLUMNS if m in {r["method"] for r in ok}]
    if side:
        lines += [f"Also in the store, not in the table: {', '.join(side)} "
                  f"(`{next(iter(SIDE_COLUMNS))}`: RLlib CQL at its default `bc_iters`, runs of 2026-12-02):", ""]
        for m in side:
            for ds in sorted({r["dataset"] for r in ok if r["method"] == m}):
                vals = [r["score"] for r in ok if r["method"] == m and r["dataset"] == ds]
                lines.append(f"- {m}, {ds}: {_cell(vals)}")
        lines.append("")
    lines.append("Records: " + "; ".join(
        f"{m} {imported[m]} imported" + (f" + {run_here[m]} run by the harness" if run_here[m] else "")
        if imported[m] else f"{m} {run_here[m]} run by the harness"
        for m in sorted(set(imported) | set(run_here))) + "." + (
        " Imported records come from the old `benchmarks/mujoco_quality.py` (FAST-Q defaults before 2026-12-07; "
        "see each record's `imported_from`)." if imported else ""))
    failed = [r for r in records.values() if r.get("score") is None]
    if failed:
        lines += ["", "Failed (retried by the next `run`):"]
        lines += [f"- {r['dataset']} {r['method']} seed {r['seed']}: {(r.get('error') or '').splitlines()[0][:200]}"
                  for r in failed]
    return "\n".join(lines) + "\n"


def plot(store: Store, suite: str, path: pathlib.Path, budget_detail: dict[str, Any] | None = None
         ) -> pathlib.Path | None:
    """Learning curves (normalised score vs gradient steps, mean ± std over seeds) per dataset."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib); the table is complete.")
        return None
    recs = [r for r in store.latest(suite, budget_detail).values()
            if r.get("score") is not None and r["method"] in CURVES and r["extras"].get("curve")]
    if not recs:
        return None
    envs = sorted({r["dataset"].split("/")[0] for r in recs})
    kinds = [k for k in mujoco.KINDS if any(r["dataset"].endswith("/" + k) for r in recs)]
    fig, axes = plt.subplots(len(envs), len(kinds), figsize=(4.2 * len(kinds), 3.2 * len(envs)), squeeze=False)
    for i, env in enumerate(envs):
        for j, kind in enumerate(kinds):
            ax = axes[i][j]
            ax.set_title(f"{env}/{kind}", fontsize=9)
            for m, colour in CURVES.items():
                curves = [r["extras"]["curve"] for r in recs if r["dataset"] == f"{env}/{kind}" and r["method"] == m]
                if not curves:
                    continue
                n = min(len(c) for c in curves)
                arr = np.array([c[:n] for c in curves], dtype=float)
                x, y = arr[0, :, 0], arr[:, :, 1]
                ax.plot(x, y.mean(0), label=f"{m} ({len(curves)})", color=colour)
                ax.fill_between(x, y.mean(0) - y.std(0), y.mean(0) + y.std(0), alpha=0.2, color=colour)
            ax.set_xlabel("gradient steps", fontsize=8)
            ax.set_ylabel("normalised score", fontsize=8)
            ax.legend(fontsize=6)
    fig.suptitle(f"{suite}: learning curves (few evaluation episodes per point), mean ± std over seeds", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
