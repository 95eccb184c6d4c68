"""Tables and plots of a suite, from the result store only (``python -m benchmarks report``)."""

from __future__ import annotations

import json
import pathlib
from typing import Any

import numpy as np

from benchmarks.harness.registry import REGISTRY
from benchmarks.harness.store import Store

FASTQ_ROWS = ("FAST-Q", "FAST-Q (reference)")
MARGIN_REFS = ("logged routing", "best arm", "direct-method chooser", "per-segment oracle")


def summarize(records: dict[Any, dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """regime → method → {scores: {seed: score}, wall_s: [...], kind}; failed runs under "failed"."""
    from benchmarks.harness.suites import REGIMES

    def order(kv: tuple) -> tuple:
        _, regime, method, seed = kv[0]
        return (REGIMES.index(regime) if regime in REGIMES else len(REGIMES), regime, method, seed)

    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (_, regime, method, seed), r in sorted(records.items(), key=order):
        row = out.setdefault(regime, {}).setdefault(method, {
            "scores": {}, "wall_s": [], "failed": {}, "kind": REGISTRY[method].kind if method in REGISTRY else "?"})
        if r.get("score") is None:
            row["failed"][seed] = (r.get("error") or "").splitlines()[0][:200]
        else:
            row["scores"][seed] = float(r["score"])
            row["wall_s"].append(float(r["wall_s"]))
    return out


def _ms(v: list[float]) -> tuple[float, float]:
    return float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0


def best_arm(rows: dict[str, dict[str, Any]]) -> str | None:
    arms = [m for m in rows if m.startswith("arm ") and rows[m]["scores"]]
    return max(arms, key=lambda m: np.mean(list(rows[m]["scores"].values()))) if arms else None


def margins(rows: dict[str, dict[str, Any]], method: str) -> list[tuple[str, str, str]]:
    """(reference, paired difference mean ± std over common seeds, difference in % of the reference)."""
    out = []
    for ref in MARGIN_REFS:
        name = best_arm(rows) if ref == "best arm" else ref
        if name is None or name not in rows or method not in rows:
            continue
        seeds = sorted(set(rows[method]["scores"]) & set(rows[name]["scores"]))
        if not seeds:
            continue
        d = [rows[method]["scores"][s] - rows[name]["scores"][s] for s in seeds]
        ref_mean = np.mean([rows[name]["scores"][s] for s in seeds])
        m, sd = _ms(d)
        label = f"best arm ({name})" if ref == "best arm" else ref
        out.append((label, f"{m:+.2f} ± {sd:.2f} (n={len(seeds)})", f"{100 * m / abs(ref_mean):+.1f} %"))
    return out


def tables(store: Store, suite: str, budget_detail: dict[str, Any] | None = None) -> str:
    records = store.latest(suite, budget_detail)
    if not records:
        return f"No records of suite {suite!r} at this budget in {store.path}."
    other = len(store.latest(suite)) - len(records)
    s = summarize(records)
    first = next(iter(records.values()))
    b = first.get("budget_detail", {})
    lines = [f"# Suite `{suite}`", "",
             f"Protocol: every method's FINAL policy, scored online on {b.get('episodes')} held-out players "
             f"(seeds {b.get('eval_seed')}..; the same players for every method and regime); return = mean "
             "undiscounted episode return; rows: mean ± std over seeds (one dataset and one training seed each).",
             f"Budget `{first.get('budget')}`: `{json.dumps(b, sort_keys=True)}`."
             + (f" ({other} runs of this suite at other budgets are in the store, not shown.)" if other > 0 else ""),
             ""]
    for regime, rows in s.items():
        lines += [f"## {regime}", "", "| method | kind | n | return | vs logged routing | wall s / run |",
                  "|---|---|---|---|---|---|"]
        routing = rows.get("logged routing", {}).get("scores", {})
        ranked = sorted(rows, key=lambda m: -np.mean(list(rows[m]["scores"].values())) if rows[m]["scores"] else 1e9)
        for m in ranked:
            row = rows[m]
            v = list(row["scores"].values())
            if not v:
                lines.append(f"| {m} | {row['kind']} | 0 | failed | | |")
                continue
            mean, sd = _ms(v)
            common = sorted(set(row["scores"]) & set(routing))
            vs = ""
            if common and m != "logged routing":
                ref = np.mean([routing[x] for x in common])
                vs = f"{100 * (np.mean([row['scores'][x] for x in common]) - ref) / abs(ref):+.1f} %"
            name = f"*{m}*" if row["kind"] == "reference" else f"**{m}**" if m in FASTQ_ROWS else m
            lines.append(f"| {name} | {row['kind']} | {len(v)} | {mean:.2f} ± {sd:.2f} | {vs} "
                         f"| {np.mean(row['wall_s']):.1f} |")
        for fq in FASTQ_ROWS:
            mg = margins(rows, fq)
            if mg and rows.get(fq, {}).get("scores"):
                lines += ["", f"| {fq} minus | paired difference | in % of it |", "|---|---|---|"]
                lines += [f"| {a} | {b_} | {c} |" for a, b_, c in mg]
        failed = [(m, seed, err) for m, row in rows.items() for seed, err in row["failed"].items()]
        if failed:
            lines += ["", "Failed (retried by the next `run`):"]
            lines += [f"- {m}, seed {seed}: {err}" for m, seed, err in failed]
        lines.append("")
    return "\n".join(lines)


def cost(store: Store, suite: str, budget_detail: dict[str, Any] | None = None, cells: int = 25) -> str:
    """Per method: mean wall (and CPU) seconds per run over the store's records, and the projection
    of one (regime, seed) cell and of ``cells`` cells (5 regimes × 5 seeds) from them."""
    runs: dict[str, list[tuple[float, float | None]]] = {}
    for r in store.latest(suite, budget_detail).values():
        if r.get("score") is not None:
            runs.setdefault(r["method"], []).append((r["wall_s"], r["extras"].get("fit_cpu_s")))
    if not runs:
        return ""
    lines = ["## Cost per run", "", "| method | runs | wall s | fit CPU s |", "|---|---|---|---|"]
    total = 0.0
    for m, v in runs.items():
        wall = float(np.mean([w for w, _ in v]))
        cpu = [c for _, c in v if c is not None]
        total += wall
        lines.append(f"| {m} | {len(v)} | {wall:.1f} | {f'{np.mean(cpu):.1f}' if cpu else ''} |")
    hours = cells * (total + 10) / 3600
    lines += ["", f"One (regime, seed) cell of these methods: {total:.0f} s wall (plus ~10 s to generate its dataset); "
              f"{cells} cells: {hours:.2f} h one after another, ~{hours / 2:.2f} h with `--jobs 2` if these wall times "
              "were measured two cells side by side (they depend on what else shared the cores: see each record's "
              "load average).", ""]
    return "\n".join(lines)


def plot(store: Store, suite: str, path: pathlib.Path,
         budget_detail: dict[str, Any] | None = None) -> pathlib.Path | None:
    """One PNG: per regime, every method's mean ± std return (reference rows in grey)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot (pip install matplotlib); the tables are complete.")
        return None
    s = summarize(store.latest(suite, budget_detail))
    if not s:
        return None
    fig, axes = plt.subplots(1, len(s), figsize=(4.2 * len(s), 0.28 * max(len(r) for r in s.values()) + 1.5),
                             squeeze=False)
    colours = {"reference": "0.6", "baseline": "tab:orange", "learned": "tab:blue", "peer": "tab:green", "?": "k"}
    for ax, (regime, rows) in zip(axes[0], s.items()):
        names = sorted((m for m in rows if rows[m]["scores"]), key=lambda m: np.mean(list(rows[m]["scores"].values())))
        stats = [_ms(list(rows[m]["scores"].values())) for m in names]
        ax.barh(range(len(names)), [x[0] for x in stats], xerr=[x[1] for x in stats], capsize=2,
                color=["tab:red" if m in FASTQ_ROWS else colours[rows[m]["kind"]] for m in names])
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_title(regime, fontsize=9)
        ax.set_xlabel("return (held-out players)", fontsize=8)
        lo = min(x[0] - x[1] for x in stats)
        hi = max(x[0] + x[1] for x in stats)
        ax.set_xlim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.05 * (hi - lo + 1e-9))
    fig.suptitle(f"{suite}: final policy, mean ± std over seeds (grey: reference rules, red: FAST-Q)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
