"""The report as one self-contained HTML page: the headline first, then the comparison with intervals, the plots,
each arm's mask, the configuration, every system's metrics and the eval artifacts. No external resources."""

from __future__ import annotations

import html
from datetime import datetime, timezone

from ifguide_cli.core.evaluation.metrics import METRIC_INFO
from ifguide_cli.core.report.stats import fmt_ci, fmt_p
from ifguide_cli.core.report.table import cell, table_columns

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem;color:#222;max-width:1200px}
table{border-collapse:collapse;margin:1rem 0;font-size:.85rem}
th,td{border:1px solid #ccc;padding:.35rem .6rem;text-align:right}
td{white-space:nowrap}.kv td,.kv th{text-align:left;white-space:normal}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
.plots img{max-width:100%;margin:.5rem 1rem .5rem 0;border:1px solid #eee}
.muted{color:#777;font-size:.85rem}code{background:#f6f6f6;padding:0 .2rem}
.headline{font-size:1.1rem;background:#f4f8fc;border-left:4px solid #1f77b4;padding:.8rem 1rem;margin:1rem 0}
.swatch{display:inline-block;width:.8rem;height:.8rem;border-radius:2px;margin-right:.4rem;vertical-align:middle}
"""
esc = html.escape


def _directions() -> str:
    """Which way is better, for every metric the report can show (from the metrics registry)."""
    lower = [m.label for m in METRIC_INFO.values() if not m.higher_is_better]
    higher = [m.label for m in METRIC_INFO.values() if m.higher_is_better]
    return f"Lower is better for {', '.join(lower)}; higher is better for {', '.join(higher)}."


def _table(headers: list[str], rows: list[list[str]], css: str = "") -> str:
    """A table of already-escaped cells."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table class='{css}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _arm_cell(entry: dict, control: bool = False) -> str:
    return (f"<span class='swatch' style='background:{esc(entry['colour'])}'></span>{esc(entry['name'])}"
            + (" <span class='muted'>(control)</span>" if control and entry["name"] != "control" else ""))


def _spread(s: dict, digits: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "—"
    if s["n"] == 1:
        return f"{s['mean']:.{digits}f}"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f})"


def _reduction(entry: dict, metric: str, control: bool) -> str:
    """The reduction with its interval, and the p-value under it."""
    if control:
        return "<span class='muted'>control</span>"
    red = entry["reduction"][metric]
    if not red:
        return "—"
    holm = red.get("p_holm")
    corrected = f", Holm {fmt_p(holm)}" if holm is not None and holm != red.get("p_value") else ""
    return f"{esc(fmt_ci(red, pct=True))}<br><span class='muted'>{esc(fmt_p(red.get('p_value')) + corrected)}</span>"


def _seeds(entry: dict) -> str:
    """How many seeds the arm was trained with (their values are in the configuration table)."""
    return str(len(entry["seeds"]))


def comparison_table(view: dict) -> str:
    """Each arm (control first): TP, EMT, their reductions with p-values, perplexity and its cost."""
    rows = []
    for e in [view["control"], *view["comparisons"]]:
        control = e is view["control"]
        cost = "—" if control else esc(fmt_ci(e["perplexity_cost"], pct=True, signed=True))
        rows.append([_arm_cell(e, control), _seeds(e), esc(fmt_ci(e["tp"])), esc(fmt_ci(e["emt"])),
                     _reduction(e, "tp", control), _reduction(e, "emt", control), esc(fmt_ci(e["perplexity"], digits=2)), cost,
                     "" if control else esc(e["verdict"].split(" (")[0])])
    return _table(["arm", "seeds", "TP [95% CI]", "EMT [95% CI]", "TP reduction [95% CI]", "EMT reduction [95% CI]",
                   "perplexity [95% CI]", "perplexity cost [95% CI]", "verdict"], rows)


def seeds_table(view: dict) -> str:
    """Mean ± std (min–max) over seeds of each arm's TP, EMT and perplexity: how much the seed moves them."""
    entries = [view["control"], *view["comparisons"]]
    rows = [[_arm_cell(e, e is view["control"]), _seeds(e),
             *(esc(_spread(e["per_seed"][m])) for m in ("tp", "emt", "perplexity"))]
            for e in entries]
    return _table(["arm", "seeds", "TP", "EMT", "perplexity"], rows)


def _num(value, fmt: str) -> str:
    return "—" if value is None else esc(format(value, fmt) if not isinstance(value, str) else value)


def mask_table(view: dict) -> str:
    """Per arm: where its mask came from, how it was applied, what it selected and how it ranks labelled documents."""
    entries = [view["control"], *view["comparisons"]]
    rows = [[_arm_cell(e, e is view["control"]), _num(m.get("source"), ""), _num(m.get("suppression"), ""),
             _num(m.get("lambda"), "g"), _num(m.get("budget"), ",d"), _num(m.get("tokens"), ",d"),
             _num(m.get("documents"), ",d"), _num(m.get("source_documents"), ",d"), _num(m.get("precision_at_k"), ".3f"),
             _num(m.get("auc"), ".3f"), _num(m.get("base_rate"), ".3f")]
            for e in entries for m in [e["mask"]]]
    return _table(["arm", "mask source", "suppression", "λ", "budget (tokens)", "masked tokens", "rows", "source documents",
                   "label precision@k", "label AUC", "label base rate"], rows)


def _config_value(value) -> str:
    if isinstance(value, dict):
        return "; ".join(f"{k}: {_config_value(v)}" for k, v in value.items()) or "—"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "—"
    return "—" if value is None else str(value)


def config_table(configuration: dict) -> str:
    names = {"prompts": "prompts", "samples": "samples per prompt", "max_new_tokens": "new tokens per sample",
             "classifier": "classifier", "perplexity_documents": "held-out documents (perplexity)", "seeds": "seeds",
             "lambda": "λ", "budget": "token budget", "bootstrap": "bootstrap resamples", "seed": "resampling seed",
             "level": "interval level", "test": "p-value",
             "significance": "significant when"}
    return _table(["setting", "value"], [[esc(names.get(k, k)), esc(_config_value(v))] for k, v in configuration.items()],
                  css="kv")


def _comparison_sections(view: dict) -> tuple[str, str, str]:
    """(the comparison with the control, the masks, the configuration) sections of the page."""
    n, docs = view["control"].get("prompts"), view["control"].get("documents")
    how = (f"Against the control <b>{esc(view['control']['name'])}</b>. Intervals: 95% paired bootstrap percentile "
           f"intervals over {n or '—'} prompts" + (f" and {docs} held-out documents" if docs else "")
           + f" ({view['configuration']['bootstrap']} resamples); with several seeds a prompt's value is the mean over "
           "seeds. Reduction = 1 − arm / control; p: " + esc(view["configuration"]["test"]) + ".")
    entries = [view["control"], *view["comparisons"]]
    masks = mask_table(view) if any(e["mask"]["mask"] for e in entries) else ""
    seeds = ("<h3>Over seeds</h3><p class='muted'>mean ± standard deviation (min–max) of the seeds' figures</p>"
             + seeds_table(view)) if any(len(e["seeds"]) > 1 for e in entries) else ""
    return (f"<h2>Comparison with the control</h2><p class='muted'>{how}</p>{comparison_table(view)}{seeds}",
            f"<h2>Masks</h2>{masks}" if masks else "",
            f"<h2>Configuration</h2>{config_table(view['configuration'])}")


def render_html(rows: list[dict], plots: dict[str, str], title: str = "IF-Guide evaluation report",
                view: dict | None = None) -> str:
    """The page; `view` (control, comparisons, headline, configuration) adds the headline and the comparison
    sections above the plots, and moves the per-system table below them."""
    cols = table_columns(rows)
    systems = ("<h2>Systems</h2><p class='muted'>EMT: expected maximum toxicity over the sampled continuations of a prompt "
               "(mean ± std over prompts); TP: share of prompts with at least one continuation scoring ≥ 0.5. "
               f"{esc(_directions())}</p>" + _table([h for h, _ in cols], [[esc(cell(r, k)) for _, k in cols] for r in rows]))
    imgs = "".join(f'<img alt="{esc(name)}" src="data:image/png;base64,{data}">' for name, data in plots.items())
    imgs = f"<div class='plots'>{imgs or '<p class=muted>no plots: the evals have no metrics to plot</p>'}</div>"
    evals = "".join(f"<li><b>{esc(r['label'])}</b>: " + ", ".join(f"<code>{esc(e)}</code>" for e in r["evals"]) + "</li>"
                    for r in rows)
    if view and view.get("comparisons"):
        headline = f"<p class='headline'>{esc(view['headline'])}</p>" if view.get("headline") else ""
        top, masks, config = _comparison_sections(view)
        body = headline + top + imgs + masks + config + systems
    else:
        body = systems + imgs
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{esc(title)}</title><style>{_CSS}</style></head>"
            f"<body><h1>{esc(title)}</h1>{body}"
            f"<h2>Eval artifacts</h2><ul>{evals}</ul><p class='muted'>generated by ifguide, {stamp}</p></body></html>")
