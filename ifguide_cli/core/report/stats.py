"""The report's comparisons: each arm against the control with intervals, its mask, the headline, the configuration.

Every figure is a {value, ci95} pair (ci95 None where it cannot be computed: an eval made before per-document
NLLs were stored, a ratio over 0); reductions add the paired test's p-value, its Holm-corrected value over the
arms and whether it is significant. The numbers come from `core/statistics`; this module chooses what is compared
with what and says it in words, and the statistics decide the words: "lowers" / "raises" only for a difference whose
95% interval excludes 0 and whose corrected p-value is below 0.05, otherwise "no significant difference".
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ifguide_cli.core.report.arms import TEST_NAME, Arm, ReportConfig, fluency_data, stored_eval, toxicity_data

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Workspace


def _none() -> dict:
    """An estimate that cannot be computed (a fresh dict: comparisons are marked in place)."""
    return {"value": None, "ci95": None}


# ---- numbers in words -------------------------------------------------------------------------------------
def fmt_pct(x, signed: bool = False) -> str:
    if x is None:
        return "—"
    return f"{100 * x:+.1f}%" if signed else f"{100 * x:.1f}%"


def fmt_ci(est: dict | None, pct: bool = False, signed: bool = False, digits: int = 3) -> str:
    """`value [low, high]` of an estimate (percentages with `pct`)."""
    if not est or est.get("value") is None:
        return "—"

    def f(x):
        return fmt_pct(x, signed) if pct else f"{x:.{digits}f}"

    ci = est.get("ci95")
    return f(est["value"]) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")


def fmt_p(p) -> str:
    if p is None:
        return "—"
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


# ---- comparisons ------------------------------------------------------------------------------------------
def _seed_values(arm: Arm, key: str) -> list:
    return [r.get(key) for r in arm.rows if r.get(key) is not None]


def _spread(arm: Arm) -> dict:
    from ifguide_cli.core.report.statistics import seed_spread

    return {name: seed_spread(_seed_values(arm, key)) for name, key in
            (("tp", "toxicity_probability"), ("emt", "expected_max_toxicity"), ("perplexity", "perplexity"))}


def _gmean(values: list) -> float:
    """The seeds' geometric mean perplexity: the perplexity of their mean per-token NLL."""
    return math.exp(sum(math.log(v) for v in values) / len(values))


def _perplexity(control: dict | None, arm: dict | None, config: ReportConfig) -> dict:
    """{"perplexity", "perplexity_cost", "documents"} of an arm against the control."""
    from ifguide_cli.core.report.statistics import perplexity_cost

    if control is None or arm is None:
        return {"perplexity": _none(), "perplexity_cost": _none(), "documents": None}
    if control["docs"] is None or arm["docs"] is None:
        arm_ppl, control_ppl = _gmean(arm["perplexity"]), _gmean(control["perplexity"])  # no interval without documents
        return {"perplexity": {"value": arm_ppl, "ci95": None},
                "perplexity_cost": {"value": arm_ppl / control_ppl - 1, "ci95": None}, "documents": None}

    def columns(docs):
        return [d[0] for d in docs], [d[1] for d in docs]

    res = perplexity_cost(*columns(control["docs"]), *columns(arm["docs"]), draws=config.draws, seed=config.seed)
    return {"perplexity": res["arm"], "perplexity_cost": res["cost"], "documents": len(control["docs"][0][0])}


def _toxicity(control: dict | None, arm: dict | None, config: ReportConfig) -> dict:
    from ifguide_cli.core.report.statistics import compare_toxicity

    if control is None or arm is None:
        return {"tp": _none(), "emt": _none(), "reduction": {"tp": None, "emt": None}, "ratio": {"tp": None, "emt": None},
                "prompts": None}
    res = compare_toxicity(control["maxima"], arm["maxima"], draws=config.draws, seed=config.seed)
    return {"tp": res["tp"]["arm"], "emt": res["emt"]["arm"], "reduction": {m: res[m]["reduction"] for m in res},
            "ratio": {m: res[m]["ratio"] for m in res}, "prompts": control["prompts"]}


def mask_stats(workspace: Workspace, arm: Arm) -> dict:
    """What the arm's mask selected and how (from the mask artifact and the training config); None where unknown."""
    training = arm.training or {}
    mask = workspace.by_id(training["mask"]) if training.get("mask") else None
    s = mask.summary if mask is not None else {}
    source = s.get("source")
    detail = ", ".join(str(s[k]) for k in ("classifier", "level") if s.get(k))
    if source == "influence" and s.get("differential") is False:
        detail = "toxic queries only"
    return {"mask": training.get("mask"), "source": f"{source} ({detail})" if source and detail else source,
            "classifier": s.get("classifier") if source == "classifier" else None,
            "suppression": _suppression(training),
            "lambda": training.get("lambda"), "budget": s.get("max_tokens", (mask.config if mask else {}).get("max_tokens")),
            "tokens": s.get("tokens_selected"), "documents": s.get("documents_selected"),
            "source_documents": s.get("source_documents_selected"),
            "precision_at_k": s.get("label_precision_at_k", s.get("planted_precision_at_k")),
            "auc": s.get("label_auc"), "base_rate": s.get("label_base_rate")}


def _suppression(training: dict) -> str | None:
    """The recorded suppression; a masked training that records none used the default, `penalty` (left out of the
    checkpoint identity so that checkpoints made before the option existed are still found)."""
    recorded = training.get("suppression", (training.get("train") or {}).get("suppression"))
    return recorded or ("penalty" if training.get("mask") else None)


def _entry(workspace: Workspace, arm: Arm) -> dict:
    return {"name": arm.name, "colour": arm.colour, "seeds": arm.seeds, "checkpoints": arm.checkpoints,
            "defense": arm.defense, "per_seed": _spread(arm), "mask": mask_stats(workspace, arm)}


def compare_arms(workspace: Workspace, arms: list[Arm], control: Arm, config: ReportConfig) -> tuple[dict, list[dict]]:
    """(the control's entry, one comparison per other arm with data) with paired intervals and p-values. The
    control's own intervals are those of its comparison with itself: the same resamples as in every comparison."""
    tox, flu = toxicity_data(workspace, arms), fluency_data(workspace, arms)
    ctox, cflu = tox.get(control.name), flu.get(control.name)
    own_t, own_p = _toxicity(ctox, ctox, config), _perplexity(cflu, cflu, config)
    entry = {**_entry(workspace, control), "prompts": own_t["prompts"], "documents": own_p["documents"],
             "tp": own_t["tp"], "emt": own_t["emt"], "perplexity": own_p["perplexity"]}
    comparisons = [{**_entry(workspace, arm), **_toxicity(ctox, tox.get(arm.name), config),
                    **_perplexity(cflu, flu.get(arm.name), config)}
                   for arm in arms if arm is not control and (arm.name in tox or arm.name in flu)]
    mark_significance(comparisons)
    return entry, comparisons


# ---- significance and the words ---------------------------------------------------------------------------
def _rank_metric(comparisons: list[dict]) -> str:
    """TP when some reduction of it is defined (the control's TP is not 0), else EMT."""
    return "tp" if any((c["reduction"]["tp"] or {}).get("value") is not None for c in comparisons) else "emt"


def mark_significance(comparisons: list[dict]) -> None:
    """Each reduction gets `p_holm` (Holm-corrected over the arms, per metric) and `significant` (its 95% interval
    excludes 0 and p_holm < 0.05); each comparison gets `significant` (on the ranking metric: TP, else EMT) and
    `verdict`, the words that may be said about it. The perplexity cost is significant when its interval excludes 0."""
    from ifguide_cli.core.report.statistics import ALPHA, excludes_zero, holm

    for metric in ("tp", "emt"):
        reductions = [c["reduction"][metric] for c in comparisons]
        for red, p in zip(reductions, holm([(r or {}).get("p_value") for r in reductions]), strict=True):
            if red is not None:
                red["p_holm"] = p
                red["significant"] = p is not None and p < ALPHA and excludes_zero(red.get("ci95"))
    metric = _rank_metric(comparisons)
    for c in comparisons:
        c["significant"] = bool((c["reduction"][metric] or {}).get("significant"))
        c["verdict"] = verdict(c, metric)
        c["perplexity_cost"]["significant"] = excludes_zero(c["perplexity_cost"].get("ci95"))


def _test_words(red: dict) -> str:
    """`95% CI a to b, p = …` of a reduction, and the Holm-corrected p where it differs."""
    ci = red.get("ci95")
    interval = f"95% CI {fmt_pct(ci[0])} to {fmt_pct(ci[1])}, " if ci else ""
    holm = red.get("p_holm")
    corrected = f", Holm {fmt_p(holm)}" if holm is not None and holm != red.get("p_value") else ""
    return f"{interval}{fmt_p(red.get('p_value'))}{corrected}"


def _change_words(metric: str, control: dict, arm: dict) -> str:
    """`TP 0.075 → 0.025, a 66.7% reduction (95% CI …, p = …)` (an increase is said as one)."""
    red = arm["reduction"][metric]
    change = (f"a {fmt_pct(red['value'])} reduction" if red["value"] >= 0 else f"a {fmt_pct(-red['value'])} increase")
    return f"{metric.upper()} {control[metric]['value']:.3f} → {arm[metric]['value']:.3f}, {change} ({_test_words(red)})"


def verdict(comparison: dict, metric: str) -> str:
    """`lowers toxicity` / `raises toxicity` when the difference is significant, else `no significant difference`,
    with the figures that decide it."""
    red = comparison["reduction"][metric]
    if not red or red.get("value") is None:
        return "no toxicity comparison"
    figures = f"{metric.upper()} {fmt_pct(red['value'])} reduction, {_test_words(red)}"
    if not red.get("significant"):
        return f"no significant difference ({figures})"
    return f"{'lowers' if red['value'] > 0 else 'raises'} toxicity ({figures})"


def _cost_words(cost: dict) -> str | None:
    if cost.get("value") is None:
        return None
    ci = cost.get("ci95")
    figures = fmt_pct(cost["value"], True) + (f", 95% CI {fmt_pct(ci[0], True)} to {fmt_pct(ci[1], True)}" if ci else "")
    if cost.get("significant"):
        return f"at a perplexity cost of {figures}" if cost["value"] > 0 else f"with a perplexity change of {figures}"
    return f"with no significant perplexity difference ({figures})"


def _evaluation_words(configuration: dict, seeds: int) -> str:
    """`profanity classifier, 40 prompts × 25 samples, 2 seeds`: what the toxicity figures were measured with."""
    classifier = " / ".join(configuration.get("classifier") or []) or "unknown"
    samples = configuration.get("samples") or []
    times = f" × {'/'.join(map(str, samples))} samples" if samples else ""
    return f"{classifier} classifier, {configuration.get('prompts')} prompts{times}" + (f", {seeds} seeds" if seeds > 1 else "")


def _same_classifier_words(comparisons: list[dict], configuration: dict) -> str | None:
    """A note when the evaluation classifier also selected an arm's mask: that arm is judged by its own selector."""
    used = set(configuration.get("classifier") or [])
    arms = [c["name"] for c in comparisons if c["mask"].get("classifier") in used]
    if not arms:
        return None
    return (f"Note: the evaluation classifier also built the mask of {', '.join(arms)}, so "
            f"{'that arm is' if len(arms) == 1 else 'those arms are'} judged by the classifier that chose what to suppress.")


def _holm_words(comparisons: list[dict], metric: str) -> str | None:
    """With several arms: which differences survive the Holm correction."""
    if len(comparisons) < 2:
        return None
    kept = [c["name"] for c in comparisons if c["significant"]]
    lost = [c["name"] for c in comparisons if not c["significant"]]
    return (f"After Holm correction over {len(comparisons)} arms ({metric.upper()}), significant: "
            f"{', '.join(kept) or 'none'}; not significant: {', '.join(lost) or 'none'}.")


def _key(metric: str):
    other = "emt" if metric == "tp" else "tp"
    return lambda c: (c["reduction"][metric]["value"], (c["reduction"][other] or {}).get("value") or 0)


def headline(control: dict, comparisons: list[dict], configuration: dict) -> str | None:
    """Which arm lowers toxicity most against the control, said only when the difference is significant (else
    `no significant difference`), measured with what, at what perplexity cost, and which arms survive Holm."""
    metric = _rank_metric(comparisons)
    ranked = [c for c in comparisons if (c["reduction"][metric] or {}).get("value") is not None]
    if not ranked:
        return None
    lowering = [c for c in ranked if c["significant"] and c["reduction"][metric]["value"] > 0]
    best = max(lowering or ranked, key=_key(metric))
    other = "emt" if metric == "tp" else "tp"
    parts = [_change_words(m, control, best) for m in (metric, other) if (best["reduction"][m] or {}).get("value") is not None]
    parts += [w for w in [_cost_words(best["perplexity_cost"])] if w]
    where = _evaluation_words(configuration, len(best["seeds"]))
    if lowering:
        text = f"{best['name']} lowers toxicity most against {control['name']} ({where}): " + "; ".join(parts) + "."
    else:
        text = (f"No significant difference in toxicity from {control['name']} ({where}); the largest change, "
                f"{best['name']}: " + "; ".join(parts) + ".")
    raising = [c["name"] for c in ranked if c["significant"] and c["reduction"][metric]["value"] < 0]
    notes = [f"{', '.join(raising)} raise{'s' if len(raising) == 1 else ''} toxicity significantly." if raising else None,
             _holm_words(comparisons, metric), _same_classifier_words(comparisons, configuration)]
    return " ".join([text, *(n for n in notes if n)])


# ---- configuration ----------------------------------------------------------------------------------------
def configuration(workspace: Workspace, arms: list[Arm], control: dict, comparisons: list[dict], config: ReportConfig) -> dict:
    """What a reader needs to repeat the comparison: the eval settings, each arm's λ, budget and seeds, the statistics."""
    from ifguide_cli.core.report.statistics import ALPHA, LEVEL

    tox = [stored_eval(workspace, r["toxicity_eval"]) for a in arms for r in a.rows if r.get("toxicity_eval")]
    generation = [(ev.config.get("generation") or {}) for ev in tox]
    entries = [control, *comparisons]
    return {"prompts": control.get("prompts"), "samples": sorted({g.get("samples") for g in generation} - {None}),
            "max_new_tokens": sorted({g.get("max_new_tokens") for g in generation} - {None}),
            "classifier": sorted({str(ev.summary.get("classifier")) for ev in tox}),
            "perplexity_documents": control.get("documents"),
            "seeds": {e["name"]: e["seeds"] for e in entries},
            "lambda": {e["name"]: e["mask"]["lambda"] for e in entries if e["mask"]["mask"]},
            "budget": {e["name"]: e["mask"]["budget"] for e in entries if e["mask"]["mask"]},
            "bootstrap": config.draws, "seed": config.seed, "level": LEVEL, "test": TEST_NAME,
            "significance": f"95% interval excludes 0 and p < {ALPHA} after Holm correction over {len(comparisons)} arm(s)"}
