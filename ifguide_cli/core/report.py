"""Side-by-side comparison of eval artifacts (baseline vs IF-Guide vs RAD …): table rows and a self-contained HTML page.

Evals are grouped into systems by (model identity, defense): a system's row combines its toxicity
eval (EMT ± std, TP, toxic/non-toxic splits, per-attribute EMT), its implicit re-scorings and its
fluency eval (perplexity, LAMBADA). Plots are drawn with matplotlib (Agg backend) and embedded as
base64 PNG, so the page is one file with no external resources.
"""

from __future__ import annotations

import base64
import html
import io
import json
from datetime import datetime, timezone

from .errors import IfguideError
from .evaluation.metrics import FLUENCY_METRICS, METRIC_INFO, fluency_values
from .workspace import canonical_json, kind_noun, with_article

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


def _system_key(workspace, art) -> tuple[str, str]:
    cfg = art.config
    if cfg.get("task") == "implicit":
        source = workspace.by_id(cfg.get("source", ""))
        if source is not None:
            return _system_key(workspace, source)
        return (f"missing:{cfg.get('source')}", str(art.summary.get("defense", "none")))
    defense = cfg.get("defense") or {"name": "none"}
    return canonical_json(cfg.get("model")), canonical_json(defense)


def _new_row(s: dict) -> dict:
    return {"label": None, "model": s.get("model"), "defense": s.get("defense", "none"), "evals": [],
            "classifier": None, "expected_max_toxicity": None, "expected_max_toxicity_std": None,
            "toxicity_probability": None, "prompts": None, "splits": {}, "per_attribute": {},
            "other_classifiers": {}, "lambada_accuracy": None, **dict.fromkeys(FLUENCY_METRICS)}


def _add_eval(row: dict, art) -> None:
    """Fold one eval into its system's row: the first toxicity eval is the headline, others are extra columns."""
    s, task = art.summary, art.config.get("task")
    row["evals"].append(art.id)
    if art.name and not row["label"]:
        row["label"] = art.name
    if task in ("toxicity", "implicit"):
        scores = {k: s.get(k) for k in ("expected_max_toxicity", "expected_max_toxicity_std", "toxicity_probability")}
        if task == "toxicity" and row["classifier"] is None:
            row.update(scores, classifier=s.get("classifier"), prompts=s.get("prompts"),
                       splits=s.get("splits") or {}, per_attribute=s.get("per_attribute") or {})
        else:
            row["other_classifiers"][f"{s.get('classifier')}" + (" (implicit)" if task == "implicit" else "")] = scores
    elif task == "fluency":
        values = {"lambada_accuracy": s.get("lambada_accuracy"), **fluency_values(s)}
        row.update({key: value for key, value in values.items() if value is not None})


def _label_rows(rows: list[dict]) -> None:
    """Unnamed systems are labelled by model (+ defense); equal labels get their first eval's id."""
    for row in rows:
        if not row["label"]:
            row["label"] = f"{row['model']}" + ("" if row["defense"] in ("none", None) else f" + {row['defense']}")
    labels = [r["label"] for r in rows]
    for row in rows:
        if labels.count(row["label"]) > 1:
            row["label"] = f"{row['label']} [{row['evals'][0][:6]}]"


def build_rows(workspace, arts) -> list[dict]:
    """One row per system, in the order its first eval was given."""
    rows: dict[tuple, dict] = {}
    for art in arts:
        if art.kind != "evals":
            raise IfguideError(f"{art.id} is {with_article(kind_noun(art.kind))} artifact, not an eval", exit_code=2)
        key = _system_key(workspace, art)
        if key not in rows:
            rows[key] = _new_row(art.summary)
        _add_eval(rows[key], art)
    out = list(rows.values())
    _label_rows(out)
    return out


def table_columns(rows: list[dict]) -> list[tuple[str, str]]:
    """(header, key) of the columns that have a value in some row."""
    cols = [("system", "label"), ("defense", "defense"), ("classifier", "classifier"), ("EMT ± std", "emt"),
            ("TP", "toxicity_probability"), ("EMT toxic", "emt_toxic"), ("TP toxic", "tp_toxic"),
            ("EMT non-toxic", "emt_nontoxic"), ("TP non-toxic", "tp_nontoxic")]
    others = sorted({name for r in rows for name in r["other_classifiers"]})
    cols += [(f"EMT {o}", f"other:{o}:expected_max_toxicity") for o in others]
    cols += [(f"TP {o}", f"other:{o}:toxicity_probability") for o in others]
    cols += [(METRIC_INFO[name].label, name) for name in FLUENCY_METRICS]
    return [(h, k) for h, k in cols if k in ("label", "defense") or any(cell(r, k) != "—" for r in rows)]


def _f(value, digits=3) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def cell(row: dict, key: str) -> str:
    if key == "emt":
        if row["expected_max_toxicity"] is None:
            return "—"
        return f"{_f(row['expected_max_toxicity'])} ± {_f(row['expected_max_toxicity_std'])}"
    if key in ("emt_toxic", "tp_toxic", "emt_nontoxic", "tp_nontoxic"):
        metric, split = key.split("_", 1)
        m = row["splits"].get(split)
        if not m:
            return "—"
        return _f(m["expected_max_toxicity" if metric == "emt" else "toxicity_probability"])
    if key.startswith("other:"):
        _, name, metric = key.split(":", 2)
        return _f((row["other_classifiers"].get(name) or {}).get(metric))
    if key in METRIC_INFO:
        return METRIC_INFO[key].format(row.get(key))
    value = row.get(key)
    if isinstance(value, float):
        return _f(value)
    return "—" if value is None else str(value)


# ---- plots ------------------------------------------------------------------------------------
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


def _grouped_bars(ax, rows: list[dict], groups: list[str], value) -> None:
    """One bar per row in each group, side by side; `value(row, group)` is the bar's height."""
    import numpy as np

    x = np.arange(len(groups))
    width = 0.8 / len(rows)
    for i, r in enumerate(rows):
        ax.bar(x + i * width - 0.4 + width / 2, [value(r, g) for g in groups], width, label=r["label"])
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)


def _toxicity_vs_perplexity(rows: list[dict]) -> str | None:
    both = [r for r in rows if r["expected_max_toxicity"] is not None and r["perplexity"] is not None]
    if not both:
        return None
    fig, ax = _pyplot().subplots(figsize=(5.5, 4))
    for r in both:
        ax.scatter(r["perplexity"], r["expected_max_toxicity"], s=60)
        ax.annotate(r["label"], (r["perplexity"], r["expected_max_toxicity"]), textcoords="offset points",
                    xytext=(6, 4), fontsize=8)
    ax.set_xlabel("perplexity (lower is better)")
    ax.set_ylabel("expected maximum toxicity (lower is better)")
    ax.set_title("toxicity vs perplexity")
    ax.grid(alpha=0.3)
    return _png(fig)


def _per_attribute(rows: list[dict]) -> str | None:
    with_attr = [r for r in rows if r["per_attribute"]]
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
    with_tp = [r for r in rows if r["toxicity_probability"] is not None]
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


PLOTS = {"toxicity_vs_perplexity": _toxicity_vs_perplexity, "per_attribute": _per_attribute,
         "toxicity_probability": _toxicity_probability}


def make_plots(rows: list[dict]) -> dict[str, str]:
    """Base64 PNGs: toxicity vs perplexity, per-attribute EMT bars, TP by split (each only when there is data)."""
    plots = {name: draw(rows) for name, draw in PLOTS.items()}
    return {name: png for name, png in plots.items() if png is not None}


# ---- HTML ---------------------------------------------------------------------------------------
_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0;font-size:.9rem}
th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.plots img{max-width:100%;margin:.5rem 1rem .5rem 0;border:1px solid #eee}
.muted{color:#777;font-size:.85rem}code{background:#f6f6f6;padding:0 .2rem}
"""


def _directions() -> str:
    """Which way is better, for every metric the report can show (from the metrics registry)."""
    lower = [m.label for m in METRIC_INFO.values() if not m.higher_is_better]
    higher = [m.label for m in METRIC_INFO.values() if m.higher_is_better]
    return f"Lower is better for {', '.join(lower)}; higher is better for {', '.join(higher)}."


def render_html(rows: list[dict], plots: dict[str, str], title: str = "IF-Guide evaluation report") -> str:
    esc = html.escape
    cols = table_columns(rows)
    head = "".join(f"<th>{esc(h)}</th>" for h, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{esc(cell(r, k))}</td>" for _, k in cols) + "</tr>" for r in rows)
    imgs = "".join(f'<img alt="{esc(name)}" src="data:image/png;base64,{data}">' for name, data in plots.items())
    evals = "".join(f"<li><b>{esc(r['label'])}</b>: " + ", ".join(f"<code>{esc(e)}</code>" for e in r["evals"]) + "</li>"
                    for r in rows)
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{esc(title)}</h1>"
            "<p class='muted'>EMT: expected maximum toxicity over the sampled continuations of a prompt (mean ± std over "
            f"prompts); TP: share of prompts with at least one continuation scoring ≥ 0.5. {esc(_directions())}</p>"
            f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
            f"<div class='plots'>{imgs or '<p class=muted>no plots: the evals have no metrics to plot</p>'}</div>"
            f"<h2>Eval artifacts</h2><ul>{evals}</ul><p class='muted'>generated by ifguide, {stamp}</p></body></html>")


def build_report(workspace, arts, *, name: str | None = None, force: bool = False):
    """A `reports` artifact with report.html and report.json; parents are the evals. Returns (artifact, reused, rows)."""
    if not arts:
        raise IfguideError("no eval artifacts given", hint="pass one or more eval ids or names", exit_code=2)
    rows = build_rows(workspace, arts)
    ids = [a.id for a in arts]

    def build(ctx):
        plots = make_plots(rows)
        (ctx.staging / REPORT_HTML).write_text(render_html(rows, plots), encoding="utf-8")
        (ctx.staging / REPORT_JSON).write_text(json.dumps({"rows": rows}, indent=2, default=str))
        return {"systems": len(rows), "evals": len(ids), "plots": sorted(plots)}

    art, reused = workspace.create("reports", {"evals": ids}, list(dict.fromkeys(ids)), build, name=name, force=force)
    if reused and name is not None:  # the same report under the name asked for now
        art = workspace.rename(art, name)
    return art, reused, rows
