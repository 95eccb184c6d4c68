"""A PNG per explanation (issue 36, item 4): bars per reward component, the chosen arm's and the
routed arm's side by side.

``module.explain(obs, policy_id)`` decomposes Q of the served (arm, action) into ``components``
(name → [B], summing to ``q``), and with ``arm_value_decomposition`` the arm values into
``arm_value_components`` (then drawn instead: they value the served arm choice).
:func:`explain_arms` asks it twice: for the arm FAST-Q chooses
(``policy_id="best"``) and for the arm the routing model finds likeliest (``argmax_k ρ(k|s)``, "what
the router would have done"). :func:`plot_explanation` draws the two (or one: a Serve ``explain``
answer's ``components``) as grouped bars; matplotlib is an optional extra
(``pip install 'rllib-fastq[plots]'`` or ``pip install matplotlib``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        raise ValueError("writing a PNG needs matplotlib, which is not installed: pip install matplotlib "
                         "(or the 'plots' extra: pip install 'rllib-fastq[plots]')") from None
    return plt


def parse_obs(value: str | Any, layout: Any) -> np.ndarray:
    """One observation [1, d] (or several [B, d]) from JSON text, a JSON file's path, a flat list or
    a ``{"temporal": ..., "static": ...}`` dict."""
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        if os.path.isfile(text):
            with open(text) as f:
                text = f.read()
        try:
            value = json.loads(text)
        except ValueError as e:
            raise ValueError(f"--obs: not JSON nor a JSON file ({e})") from None
    if isinstance(value, Mapping):
        if "obs" in value:
            return parse_obs(value["obs"], layout)
        value = layout.flatten({k: np.asarray(v, np.float32) for k, v in value.items()})
    x = np.asarray(value, np.float32)
    x = x.reshape(1, -1) if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != layout.flat_dim:
        raise ValueError(f"--obs: expected {layout.flat_dim} numbers per observation (the module's flat "
                         f"observation), got shape {tuple(np.asarray(value).shape)}")
    return x


def explain_arms(module: Any, obs: np.ndarray, policy_id: Any = "best") -> dict[str, Any]:
    """The explanation of the chosen arm and of the routing model's likeliest arm, first row."""
    from rllib_fastq.evaluation.ope import _module_obs

    o = _module_obs(module, np.asarray(obs, np.float32)[:1])
    chosen = module.explain(o, policy_id)
    routed_arm = chosen["routing_probabilities"].argmax(-1)
    routed = module.explain(o, routed_arm)

    def row(e: Mapping[str, Any]) -> dict[str, Any]:
        arm = int(e["policy_id"][0])
        out = {"arm": arm, "q": float(e["q"][0]), "components": {n: float(v[0]) for n, v in e["components"].items()}}
        if "arm_value_components" in e:  # arm_value_decomposition: V_{k,j}(s) of this arm, Σ_j w_j V_{k,j} = V_k
            out["arm_value"] = float(e["arm_values"][0, arm])
            out["arm_value_components"] = {n: float(v[0, arm]) for n, v in e["arm_value_components"].items()}
        return out

    return {"chosen": row(chosen), "routed": row(routed),
            "arm_values": chosen["arm_values"][0].tolist(),
            "routing_probabilities": chosen["routing_probabilities"][0].tolist()}


def plot_explanation(bars: Mapping[str, Mapping[str, float]], path: str, *, title: str = "",
                     ylabel: str = "value share (w_j · Q)") -> str:
    """Grouped bars: one group per component, one bar per entry of ``bars`` (label → {component:
    value}), e.g. ``{"chosen arm 1": ..., "routed arm 0": ...}``. Writes ``path`` (PNG)."""
    plt = _pyplot()
    labels = list(bars)
    names = list(dict.fromkeys(n for b in bars.values() for n in b))
    x = np.arange(len(names))
    width = 0.8 / max(1, len(labels))
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 2.5, 3.6))
    for i, label in enumerate(labels):
        vals = [bars[label].get(n, 0.0) for n in names]
        ax.bar(x + (i - (len(labels) - 1) / 2) * width, vals, width, label=label)
    ax.axhline(0.0, color="black", linewidth=0.6)
    ax.set_xticks(x, names)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_explanation_png(module: Any, obs: Any, path: str, *, policy_id: Any = "best",
                          arm_names: Sequence[str] | None = None) -> dict[str, Any]:
    """Explain the first observation of ``obs`` (see :func:`parse_obs`), write the PNG; returns the
    explanation (:func:`explain_arms`) with ``png``."""
    x = parse_obs(obs, module.layout) if not isinstance(obs, np.ndarray) else obs.reshape(-1, module.layout.flat_dim)
    with torch.no_grad():
        ex = explain_arms(module, x, policy_id)

    def name(k: int) -> str:
        return arm_names[k] if arm_names and k < len(arm_names) else f"arm {k}"

    c, r = ex["chosen"], ex["routed"]
    # With arm_value_decomposition, the arm values' components: they value the served choice.
    key, v, ylabel = (("arm_value_components", "arm_value", "arm value per component V_j (V = Σ_j w_j V_j)")
                      if "arm_value_components" in c else ("components", "q", "value share (w_j · Q)"))
    bars = {f"chosen: {name(c['arm'])} ({v} {c[v]:.2f})": c[key]}
    if r["arm"] != c["arm"]:
        bars[f"routed: {name(r['arm'])} ({v} {r[v]:.2f})"] = r[key]
    plot_explanation(bars, path, title="per-component value, chosen vs routed arm"
                     if r["arm"] != c["arm"] else "per-component value (the chosen arm is the routed arm)",
                     ylabel=ylabel)
    return {**ex, "png": path}


def write_answer_png(answer: Mapping[str, Any], path: str, *, row: int = 0,
                     arm_names: Sequence[str] | None = None) -> str:
    """The PNG of row ``row`` of a Serve ``/act`` answer to ``"explain": true`` (``rllib_fastq.serve``),
    on the client side: no module needed. With per-component arm values (``arm_value_decomposition``)
    it draws them for the chosen arm and the routing model's likeliest arm; otherwise the chosen
    arm's ``w_j · Q`` shares. Returns ``path``."""
    missing = [k for k in ("policy_id", "components", "arm_values", "routing_probabilities") if k not in answer]
    if missing:
        raise ValueError(f"answer: missing {missing}; ask Serve with \"explain\": true")
    if not isinstance(answer["policy_id"], list):  # a one-observation request: unwrapped fields
        answer, row = {k: [v] for k, v in answer.items()}, 0

    def name(k: int) -> str:
        return arm_names[k] if arm_names and k < len(arm_names) else f"arm {k}"

    arm = int(answer["policy_id"][row])
    values = list(answer["arm_values"][row])
    routed = int(np.argmax(answer["routing_probabilities"][row]))
    if "arm_value_components" in answer:
        comps = answer["arm_value_components"][row]
        bars = {f"chosen: {name(arm)} (value {values[arm]:.2f})": {n: v[arm] for n, v in comps.items()}}
        if routed != arm:
            bars[f"routed: {name(routed)} (value {values[routed]:.2f})"] = {n: v[routed] for n, v in comps.items()}
        return plot_explanation(bars, path, title="per-component arm value, chosen vs routed arm",
                                ylabel="arm value per component V_j (V = Σ_j w_j V_j)")
    bars = {f"chosen: {name(arm)} (Q {answer['q'][row]:.2f})": answer["components"][row]}
    return plot_explanation(bars, path, title=f"value shares of the chosen arm (routed: {name(routed)})")
