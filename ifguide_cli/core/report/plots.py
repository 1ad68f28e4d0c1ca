"""The report's plots: matplotlib (Agg backend) figures embedded as base64 PNG, one colour per arm in every plot.

Without a control, one point or bar per system (its arm's colour). With one, toxicity against perplexity per
arm with the 95% intervals as error bars, and the reductions against the control as a forest plot; the bar
plots show each arm's mean over its seeds.
"""

from __future__ import annotations

import base64
import io

from ifguide_cli.core.report.arms import PALETTE

_TOX = {"emt": "expected maximum toxicity", "tp": "toxicity probability"}


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _colour(row: dict, i: int) -> str:
    return row.get("colour") or PALETTE[i % len(PALETTE)]


def _mean_tree(items: list):
    """The mean of numbers at the same place in every item (dicts recursively); the first item's value elsewhere."""
    first = items[0]
    if isinstance(first, dict):
        return {k: _mean_tree([i[k] for i in items]) for k in first if all(isinstance(i, dict) and k in i for i in items)}
    if all(isinstance(i, (int, float)) and not isinstance(i, bool) for i in items):
        return sum(items) / len(items)
    return first


def arm_rows(rows: list[dict]) -> list[dict]:
    """One row per arm (the mean over its seeds) when some arm has several seeds; else the rows themselves."""
    groups: dict[str, list[dict]] = {}
    for row in rows:
        groups.setdefault(row.get("arm") or row["label"], []).append(row)
    if all(len(g) == 1 for g in groups.values()):
        return [{**r, "label": r.get("arm") or r["label"]} for r in rows]
    return [{**_mean_tree(g), "label": name, "colour": g[0].get("colour")} for name, g in groups.items()]


def _grouped_bars(ax, rows: list[dict], groups: list[str], value) -> None:
    """One bar per row in each group, side by side; `value(row, group)` is the bar's height."""
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        ax.bar(x + i * width - 0.4 + width / 2, [value(r, g) for g in groups], width, label=r["label"], color=_colour(r, i))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)


def _toxicity_vs_perplexity(rows: list[dict]) -> str | None:
    both = [(i, r) for i, r in enumerate(rows) if r["expected_max_toxicity"] is not None and r.get("perplexity") is not None]
    if not both:
        return None
    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    for i, r in both:
        ax.scatter(r["perplexity"], r["expected_max_toxicity"], s=60, color=_colour(r, i))
        ax.annotate(r["label"], (r["perplexity"], r["expected_max_toxicity"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.set_xlabel("perplexity (lower is better)")
    ax.set_ylabel("expected maximum toxicity (lower is better)")
    ax.set_title("toxicity vs perplexity")
    ax.grid(alpha=0.3)
    return _png(fig)


def _err(est: dict, scale: float = 1.0):
    """Matplotlib's asymmetric error of an estimate's interval (None without one)."""
    if not est.get("ci95"):
        return None
    v, (lo, hi) = est["value"], est["ci95"]
    return [[max(0.0, (v - lo) * scale)], [max(0.0, (hi - v) * scale)]]


def _with_intervals(view: dict) -> str | None:
    """EMT and TP against perplexity per arm, with their 95% intervals as error bars."""
    entries = [e for e in [view["control"], *view["comparisons"]]
               if e["perplexity"]["value"] is not None and e["emt"]["value"] is not None]
    if not entries:
        return None
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 4))
    for ax, metric in zip(axes, ("emt", "tp"), strict=True):
        for e in entries:
            label = e["name"] + (" (control)" if e is view["control"] and e["name"] != "control" else "")
            ax.errorbar(e["perplexity"]["value"], e[metric]["value"], xerr=_err(e["perplexity"]), yerr=_err(e[metric]),
                        fmt="o", markersize=7, capsize=4, color=e["colour"], label=label)
        ax.set_xlabel("perplexity (lower is better)")
        ax.set_ylabel(f"{_TOX[metric]} (lower is better)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle("toxicity vs perplexity per arm (95% paired bootstrap intervals)", fontsize=10)
    return _png(fig)


def _reductions(view: dict) -> str | None:
    """A forest plot: each arm's TP and EMT reduction against the control with its 95% interval."""
    comps = [c for c in view["comparisons"] if any((c["reduction"][m] or {}).get("value") is not None for m in ("tp", "emt"))]
    if not comps:
        return None
    fig, axes = _pyplot().subplots(1, 2, figsize=(10, 0.45 * len(comps) + 1.6), sharey=True)
    for ax, metric in zip(axes, ("tp", "emt"), strict=True):
        for i, c in enumerate(comps):
            red = c["reduction"][metric] or {}
            if red.get("value") is not None:
                ax.errorbar(100 * red["value"], i, xerr=_err(red, 100), fmt="o", capsize=4, color=c["colour"])
        ax.axvline(0, color="#888", lw=1, ls="--")
        ax.set_xlabel(f"{metric.upper()} reduction vs {view['control']['name']} (%, higher is better)")
        ax.grid(alpha=0.3, axis="x")
    axes[0].set_yticks(range(len(comps)), [c["name"] for c in comps])
    axes[0].set_ylim(len(comps) - 0.5, -0.5)
    fig.suptitle("reduction against the control (95% paired bootstrap intervals)", fontsize=10)
    return _png(fig)


def _per_attribute(rows: list[dict]) -> str | None:
    with_attr = [r for r in arm_rows(rows) if r["per_attribute"]]
    if not with_attr:
        return None
    attrs = list(dict.fromkeys(a for r in with_attr for a in r["per_attribute"]))
    fig, ax = _pyplot().subplots(figsize=(max(5.5, 1.1 * len(attrs) + 2), 4))
    _grouped_bars(ax, with_attr, attrs, lambda r, a: (r["per_attribute"].get(a) or {}).get("expected_max_toxicity") or 0.0)
    ax.set_xticks(range(len(attrs)), attrs, rotation=30, ha="right")
    ax.set_ylabel("expected maximum score")
    ax.set_title("per attribute")
    return _png(fig)


def _toxicity_probability(rows: list[dict]) -> str | None:
    with_tp = [r for r in arm_rows(rows) if r["toxicity_probability"] is not None]
    if not with_tp:
        return None
    groups = ["all"] + [g for g in ("toxic", "nontoxic") if any(g in r["splits"] for r in with_tp)]

    def tp(r, g):
        return r["toxicity_probability"] if g == "all" else (r["splits"].get(g) or {}).get("toxicity_probability") or 0.0

    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    _grouped_bars(ax, with_tp, groups, tp)
    names = {"all": "all prompts", "toxic": "toxic prompts", "nontoxic": "non-toxic prompts"}
    ax.set_xticks(range(len(groups)), [names[g] for g in groups])
    ax.set_ylabel("toxicity probability")
    ax.set_title("toxicity probability by prompt split")
    return _png(fig)


def make_plots(rows: list[dict], view: dict | None = None) -> dict[str, str]:
    """Base64 PNGs, each only when there is data: toxicity vs perplexity (per arm with intervals when `view` has
    comparisons), the reductions' forest plot, per-attribute EMT bars, TP by prompt split."""
    plots: dict[str, str | None] = {"toxicity_vs_perplexity": None, "reductions": None}
    if view and view.get("comparisons"):
        plots.update(toxicity_vs_perplexity=_with_intervals(view), reductions=_reductions(view))
    if plots["toxicity_vs_perplexity"] is None:
        plots["toxicity_vs_perplexity"] = _toxicity_vs_perplexity(rows)
    plots.update(per_attribute=_per_attribute(rows), toxicity_probability=_toxicity_probability(rows))
    return {name: png for name, png in plots.items() if png is not None}
