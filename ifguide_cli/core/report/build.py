"""Side-by-side comparison of eval artifacts (baseline vs IF-Guide vs RAD …, arms against a control): table rows,
the comparisons with intervals, and a self-contained HTML page.

Evals are grouped into systems by (model identity, defense): a system's row combines its toxicity
eval (EMT ± std, TP, toxic/non-toxic splits, per-attribute EMT), its implicit re-scorings and its
fluency eval (perplexity, LAMBADA). Systems are grouped into arms (`report.arms`: the same training but
the seed); with a control, every other arm is compared with it (`report.stats`). Plots (`report.plots`) are
drawn with matplotlib (Agg backend) and embedded as base64 PNG in the page (`report.html`), so the page is
one file with no external resources.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ifguide_cli.core.errors import IfguideError
from ifguide_cli.core.evaluation.metrics import FLUENCY_METRICS, fluency_values
from ifguide_cli.core.report.arms import Arm, ReportConfig, choose_control, group_arms
from ifguide_cli.core.stage import ArtifactKey, Result, Stage, run_stage
from ifguide_cli.core.store.workspace import canonical_json, kind_noun, with_article

if TYPE_CHECKING:
    from ifguide_cli.core.store.workspace import Artifact, BuildContext, Workspace

REPORT_HTML = "report.html"
REPORT_JSON = "report.json"


def _system(workspace: Workspace, art) -> tuple[tuple[str, str], str | None]:
    """(system key, checkpoint id or None) of an eval: an implicit eval belongs to the system of its source."""
    cfg = art.config
    if cfg.get("task") == "implicit":
        source = workspace.by_id(cfg.get("source", ""))
        if source is not None:
            return _system(workspace, source)
        return (f"missing:{cfg.get('source')}", str(art.summary.get("defense", "none"))), None
    defense = cfg.get("defense") or {"name": "none"}
    model = cfg.get("model")
    checkpoint = model.get("artifact_id") if isinstance(model, dict) and model.get("source") == "checkpoint" else None
    return (canonical_json(cfg.get("model")), canonical_json(defense)), checkpoint


def _new_row(s: dict, checkpoint: str | None) -> dict:
    return {"label": None, "model": s.get("model"), "defense": s.get("defense", "none"), "evals": [],
            "checkpoint": checkpoint, "toxicity_eval": None, "fluency_eval": None,
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
            row.update(scores, classifier=s.get("classifier"), prompts=s.get("prompts"), toxicity_eval=art.id,
                       splits=s.get("splits") or {}, per_attribute=s.get("per_attribute") or {})
        else:
            row["other_classifiers"][f"{s.get('classifier')}" + (" (implicit)" if task == "implicit" else "")] = scores
    elif task == "fluency":
        values = {"lambada_accuracy": s.get("lambada_accuracy"), **fluency_values(s)}
        row.update({key: value for key, value in values.items() if value is not None})
        if s.get("perplexity") is not None and row["fluency_eval"] is None:
            row["fluency_eval"] = art.id


def _label_rows(workspace: Workspace, rows: list[dict]) -> None:
    """A system trained here is labelled by its checkpoint's name (+ defense), others by their eval's name, else by
    model (+ defense); equal labels get their first eval's id."""
    for row in rows:
        ckpt = workspace.by_id(row["checkpoint"]) if row["checkpoint"] else None
        if ckpt is not None and ckpt.name:
            row["label"] = ckpt.name + ("" if row["defense"] in ("none", None) else f" + {row['defense']}")
        if not row["label"]:
            row["label"] = f"{row['model']}" + ("" if row["defense"] in ("none", None) else f" + {row['defense']}")
    labels = [r["label"] for r in rows]
    for row in rows:
        if labels.count(row["label"]) > 1:
            row["label"] = f"{row['label']} [{row['evals'][0][:6]}]"


def build_rows(workspace: Workspace, arts) -> list[dict]:
    """One row per system, in the order its first eval was given."""
    rows: dict[tuple, dict] = {}
    for art in arts:
        if art.kind != "evals":
            raise IfguideError(f"{art.id} is {with_article(kind_noun(art.kind))} artifact, not an eval", exit_code=2)
        key, checkpoint = _system(workspace, art)
        if key not in rows:
            rows[key] = _new_row(art.summary, checkpoint)
        _add_eval(rows[key], art)
    out = list(rows.values())
    _label_rows(workspace, out)
    return out


def make_plots(rows: list[dict], view: dict | None = None) -> dict[str, str]:
    from ifguide_cli.core.report.plots import make_plots as draw

    return draw(rows, view)


def render_html(rows: list[dict], plots: dict[str, str], title: str = "IF-Guide evaluation report",
                view: dict | None = None) -> str:
    from ifguide_cli.core.report.html import render_html as render

    return render(rows, plots, title, view)


def comparison_view(workspace: Workspace, arms: list[Arm], control: Arm | None, config: ReportConfig) -> dict | None:
    """The arms against the control: {control, comparisons, headline, configuration, arms}; None without a control
    or without another arm to compare with it (the report is then the side-by-side table alone)."""
    if control is None:
        return None
    from ifguide_cli.core.report.stats import compare_arms, configuration, headline

    entry, comparisons = compare_arms(workspace, arms, control, config)
    setup = configuration(workspace, arms, entry, comparisons, config)
    return {"control": entry, "comparisons": comparisons, "headline": headline(entry, comparisons, setup),
            "configuration": setup, "arms": [a.listing() for a in arms]}


@dataclass(frozen=True, kw_only=True)
class ReportKey(ArtifactKey):
    """What identifies a report: the evals, the control when one was named (its checkpoints, or its arm's name) and
    the statistics' settings when they are not the defaults. Left out (None), the default control and settings are a
    function of the evals, so a pipeline's plan finds the report from the eval ids alone."""

    kind: ClassVar[str] = "reports"
    evals: tuple[str, ...]
    control: list[str] | str | None = None
    statistics: dict[str, Any] | None = None


@dataclass(frozen=True)
class ReportRefs:
    """What `ifguide report` is given: the evals, and the control the arms are compared with (default: see `arms`)."""

    evals: tuple[Artifact, ...]
    control: str | None = None


@dataclass(frozen=True)
class ReportInputs:
    """The report's rows (one per system) and arms, and the control arm when there is a comparison to make."""

    workspace: Workspace  # where the evals' checkpoints and masks are read when the comparisons are computed
    evals: tuple[Artifact, ...]
    rows: list[dict]
    arms: list[Arm]
    control: Arm | None  # None: no control, or no other arm with data to compare with it
    named: bool  # the control was named (`--control`), so it is part of the report's identity


def _has_data(arm: Arm) -> bool:
    return any(r.get("toxicity_eval") or r.get("fluency_eval") for r in arm.rows)


class ReportStage(Stage[ReportRefs, ReportInputs, ReportConfig, dict[str, Any]]):
    """`ifguide report`: the evals side by side, each arm against the control, as report.html and report.json."""

    kind = "reports"

    def inputs(self, ws: Workspace, refs: ReportRefs) -> ReportInputs:
        if not refs.evals:
            raise IfguideError("no eval artifacts given", hint="pass one or more eval ids or names", exit_code=2)
        rows = build_rows(ws, refs.evals)
        arms = group_arms(ws, rows)
        control = choose_control(ws, arms, refs.control)
        compared = control is not None and len(arms) >= 2 and any(a is not control and _has_data(a) for a in arms)
        return ReportInputs(ws, refs.evals, rows, arms, control if compared else None, refs.control is not None)

    def key(self, inputs: ReportInputs, config: ReportConfig) -> ReportKey:
        ids = tuple(a.id for a in inputs.evals)
        control = inputs.control
        named = control.checkpoints or control.name if inputs.named and control is not None else None
        return ReportKey(parents=tuple(dict.fromkeys(ids)), evals=ids, control=named,
                         statistics=config.to_dict() if config != ReportConfig() else None)

    def describe(self, inputs: ReportInputs, config: ReportConfig) -> str:
        against = f", every arm against {inputs.control.name} with intervals" if inputs.control is not None else ""
        return f"the report of {len(inputs.evals)} evals ({len(inputs.rows)} systems){against}"

    def build(self, ctx: BuildContext, inputs: ReportInputs, config: ReportConfig) -> dict[str, Any]:
        rows = inputs.rows
        view = comparison_view(inputs.workspace, inputs.arms, inputs.control, config)
        plots = make_plots(rows, view)
        (ctx.staging / REPORT_HTML).write_text(render_html(rows, plots, view=view), encoding="utf-8")
        (ctx.staging / REPORT_JSON).write_text(json.dumps({"rows": rows, **(view or {})}, indent=2, default=str))
        extra = {k: view[k] for k in ("control", "comparisons", "headline", "configuration")} if view else {}
        return {"systems": len(rows), "evals": len(inputs.evals), "plots": sorted(plots), **extra}


def create_report(workspace: Workspace, inputs: ReportInputs, config: ReportConfig = ReportConfig(), *,
                  name: str | None = None, force: bool = False) -> Result[dict[str, Any]]:
    """A `reports` artifact with report.html and report.json (parents: the evals); a reused one takes the name asked
    for now. With a control the summary holds `control`, `comparisons`, `headline` and `configuration`."""
    result = run_stage(workspace, ReportStage(), inputs, config, name=name, force=force)
    if result.reused and name is not None:  # the same report under the name asked for now
        return Result(workspace.rename(result.artifact, name), True)
    return result


def build_report(workspace: Workspace, arts, *, name: str | None = None, force: bool = False, control: str | None = None,
                 config: ReportConfig = ReportConfig()) -> Result[dict[str, Any]]:
    """The report stage from the eval artifacts and the control's reference (see `create_report`)."""
    inputs = ReportStage().inputs(workspace, ReportRefs(tuple(arts), control))
    return create_report(workspace, inputs, config, name=name, force=force)
