"""`ifguide run`: the whole pipeline from a YAML file or a preset, with `--set` overrides and a `--dry-run` plan."""

from __future__ import annotations

from typing import Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.core.extensions import PRESETS

EPILOG = ("Examples:\n\n"
          "ifguide run --preset tiny                                 # the demo, offline on a CPU in minutes\n"
          "ifguide run --preset tiny --print-config > my.yaml        # start a pipeline of your own\n"
          "ifguide run my.yaml --set finetune.lambda=2 --set mask.max_tokens=5000\n"
          "ifguide run my.yaml --dry-run                             # stages, what is reused, inputs; writes nothing\n"
          "ifguide run --preset paper --dry-run                      # the paper's run: plan, GPU-hours, disk\n"
          "ifguide run --preset tiny-compare --seeds 3               # IF-Guide vs cheap baselines, 3 seeds each\n"
          "nohup ifguide run my.yaml > run.log 2>&1 &                # progress lines in run.log")


def _presets(incomplete: str) -> list[str]:
    """What the shell offers for --preset: the registered presets."""
    return [name for name in PRESETS.names() if name.startswith(incomplete)]


def register(app: typer.Typer) -> None:
    @app.command("run", epilog=EPILOG,
                 help=summary("run", "Stages whose config and parents are unchanged are reused, so a rerun only redoes "
                                     "what changed."))
    def run(
        pipeline: Optional[str] = typer.Argument(None, metavar="PIPELINE.yaml", help="Pipeline file (see `--preset tiny --print-config`)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="A built-in pipeline: tiny, tiny-compare (IF-Guide "
                                                                    "against standard influence and classifier "
                                                                    "filtering), paper (pre-training, the paper's "
                                                                    "headline run), paper-finetune.",
                                            autocompletion=_presets),
        overrides: Optional[list[str]] = typer.Option(None, "--set", metavar="SECTION.KEY=VALUE",
                                                      help="Override one setting of the file (repeatable; the value is "
                                                           "YAML: 2, 1e-4, true, null, text), e.g. --set finetune.lambda=2."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the pipeline (with the --set overrides) and exit."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan (stages, what would be reused, inputs and "
                                                              "whether each is available, cost) and exit; writes nothing."),
        seeds: Optional[int] = typer.Option(None, "--seeds", min=1, max=100, metavar="N",
                                            help="Repeat every fine-tune (control and arms) over N seeds: seed, seed+1, … "
                                                 "(= --set seeds=N; the pipeline key `seeds`)."),
        force: bool = typer.Option(False, "--force", help="Recompute every stage even if stored."),
    ) -> None:
        from ifguide_cli.core.pipeline.spec import pipeline_file

        path = pipeline_file(pipeline, preset)
        settings = tuple(overrides or ()) + ((f"seeds={seeds}",) if seeds is not None else ())
        if print_config:
            _print_config(path, preset, settings)
            return
        from ifguide_cli.core.pipeline.reading import read_pipeline

        loaded = read_pipeline(path, settings)
        if dry_run:
            _dry_run(loaded)
            return
        _run(loaded, force)


def _print_config(path, preset: str | None, overrides: tuple[str, ...]) -> None:
    """The file as it is (comments and all), or with overrides the effective pipeline; the paper presets'
    settings with their sources under --json."""
    from ifguide_cli.core.paper import recipe
    from ifguide_cli.core.pipeline.reading import effective_yaml, read_pipeline

    text = effective_yaml(read_pipeline(path, overrides)) if overrides else path.read_text(encoding="utf-8")
    payload = {"path": str(path), "yaml": text, "overrides": list(overrides)}
    if preset in recipe.SCENARIOS:
        payload.update(reference=recipe.REFERENCE, settings=recipe.rows(preset))
    common.emit(payload, lambda console: typer.echo(text, nl=False))  # never wrapped: it must read back as YAML


def _dry_run(loaded) -> None:
    from ifguide_cli.core.pipeline.plan import plan_run

    ws = common.workspace()
    plan = plan_run(ws, loaded)
    common.emit({**plan.to_json(), "workspace": str(ws.root)}, lambda console: _render_plan(console, plan))
    plan.inputs.require(listed=True)  # the plan is shown; missing inputs still fail the command


def _render_plan(console, plan) -> None:
    from rich.markup import escape
    from rich.table import Table

    spec = plan.pipeline.spec
    console.print(f"[bold]{escape(str(plan.pipeline.path.name))}[/] · scenario {spec.scenario} · dry run: nothing is written",
                  soft_wrap=True)
    if plan.arms:
        console.print(f"[bold]arms[/] (each against the plain control; seeds {', '.join(map(str, plan.seeds))})")
        for arm in plan.arms:
            options = ", ".join(f"{k} {v}" for k, v in arm.mask.to_dict().items())
            console.print(f"  {escape(arm.name)}: {escape(arm.describe())} · {escape(options)}", soft_wrap=True)
    console.print("[bold]inputs[/]")
    for item in plan.inputs.items:
        mark = "[green]✓[/]" if item.available else "[red]✗[/]"
        note = item.where + (f" — {item.hint}" if item.hint and not item.available else "")
        console.print(f"  {mark} {item.role}: {escape(item.ref)} ({item.what}) · {escape(note)}", soft_wrap=True)
    stages = Table(title="stages", title_justify="left")
    for col in ("stage", "status", "what it does"):
        stages.add_column(col, no_wrap=col != "what it does")
    for stage in plan.stages:
        stages.add_row(stage.name, f"[green]reuse {stage.reuse}[/]" if stage.reuse else "new", escape(stage.does))
    console.print(stages)
    if plan.estimate is not None:
        _render_estimate(console, plan.estimate)
    if plan.estimate_note:
        console.print(escape(plan.estimate_note), soft_wrap=True)
    if plan.memory is not None:
        _render_memory(console, plan.memory)


def _render_estimate(console, estimate) -> None:
    from rich.markup import escape
    from rich.table import Table

    cost = Table(title=f"estimate: {estimate.inputs.model} on one H100 (measured anchors)", title_justify="left")
    columns = ("stage", "model", "tokens", "tokens/s (H100)", "GPU-hours")
    for col in columns:
        cost.add_column(col, justify="left" if col in ("stage", "model") else "right")
    for row in estimate.rows():
        cost.add_row(*(escape(str(row[k])) for k in columns))
    console.print(cost)
    console.print(f"wall time: {estimate.gpu_hours:,.1f} h on 1 GPU, {estimate.gpu_hours / 8:,.1f} h on 8 (linear scaling)")
    if estimate.saving_line():
        console.print(f"[bold]{escape(estimate.saving_line())}[/]", soft_wrap=True)
    disk = Table(title="disk", title_justify="left")
    for col in ("item", "size", "note"):
        disk.add_column(col)
    for row in estimate.disk_rows():
        disk.add_row(escape(row["item"]), row["size"], escape(row["note"]))
    console.print(disk)
    for line in estimate.assumptions:
        console.print(f"[dim]· {escape(line)}[/]", soft_wrap=True)


def _render_memory(console, memory: dict) -> None:
    from rich.table import Table

    table = Table(title="peak GPU memory per stage, GB (estimate: `ifguide estimate` for other sizes)", title_justify="left")
    parts = ("weights", "gradients", "optimizer", "activations", "other", "total")
    for col in ("stage", *parts):
        table.add_column(col, justify="left" if col == "stage" else "right")
    for stage, bytes_ in memory.items():
        table.add_row(stage, *(f"{bytes_[p] / 1e9:.1f}" for p in parts))
    console.print(table)


def _run(loaded, force: bool) -> None:
    from ifguide_cli.core.pipeline.runner import run_pipeline

    ws = common.workspace()

    def on_start(name: str) -> None:
        common.set_stage(name)  # plain progress lines in a log read `[baseline] training …`
        common.milestone(f"[bold]▶ {name}[/]")

    def on_stage(rec) -> None:
        status = "[green]reused[/]" if rec.reused else f"done in {rec.seconds:.1f}s"
        common.milestone(f"  {rec.kind.rstrip('s')} {rec.id} {status}")

    result = run_pipeline(ws, loaded.spec, reporter=common.reporter(), force=force, on_stage=on_stage, on_start=on_start)
    payload = {**result.to_json(), "workspace": str(ws.root),
               "pipeline": {"file": str(loaded.path), "overrides": list(loaded.overrides), "config": loaded.raw}}
    common.emit(payload, lambda console: _render_result(console, result, payload))


def _render_result(console, result, payload: dict) -> None:
    if result.comparison is not None:
        _render_comparison(console, result, payload)
        return

    title = "IF-Guide vs " + ("the baseline, both trained from scratch" if result.scenario == "pretrain" else "plain fine-tuning")
    console.print(_systems_table(title, result.systems))
    console.print(_mask_line(result.mask), soft_wrap=True)
    leakage = next((m["leakage"] for m in result.systems.values() if m.get("leakage")), None)
    if leakage:
        console.print(f"[yellow]note:[/] evaluation prompts shared with the influence queries: {leakage}", soft_wrap=True)
    if result.reduction is not None:
        bound = "≥ " if result.reduction_is_lower_bound else ""
        console.print(f"[bold]toxicity probability: {result.reference} / IF-Guide = {bound}{result.reduction:.1f}×[/]")
    if result.report:
        console.print(f"report: {result.report.get('html')}", soft_wrap=True)
    console.print(f"inspect the mask: ifguide mask browse {result.stages['mask'].id}")
    console.print(f"[dim]{len(result.stages)} stages, {sum(s.reused for s in result.stages.values())} reused, "
                  f"{payload['seconds']:.0f}s[/]")


def _systems_table(title: str, systems: dict):
    """One row per system: TP, EMT ± std, perplexity, LAMBADA, checkpoint."""
    from rich.table import Table

    table = Table(title=f"{title} (TP: toxicity probability, EMT: expected max. toxicity)", title_justify="left")
    for col in ("system", "TP", "EMT ± std", "perplexity", "LAMBADA", "checkpoint"):
        table.add_column(col, justify="left" if col in ("system", "checkpoint") else "right", no_wrap=True)
    fmt = common.fmt_metric
    for system, m in systems.items():
        table.add_row(system, fmt(m.get("toxicity_probability")),
                      f"{fmt(m.get('expected_max_toxicity'))} ± {fmt(m.get('expected_max_toxicity_std'))}",
                      fmt(m.get("perplexity"), 2), fmt(m.get("lambada_accuracy")), m["checkpoint"])
    return table


def _render_comparison(console, result, payload: dict) -> None:
    """Every system, each arm's mask, and the report's comparison of each arm with the control."""
    from rich.markup import escape

    comparison = result.comparison
    console.print(_systems_table(f"arms against the plain control (seeds {', '.join(map(str, comparison['seeds']))})",
                                 result.systems))
    for name, mask in comparison["masks"].items():
        console.print(f"{escape(name)}: {escape(mask['source'])} → {mask['suppression']} · {_mask_line(mask)}",
                      soft_wrap=True)
    for entry in comparison.get("arms") or []:
        console.print(_comparison_line(entry), soft_wrap=True)
    if comparison.get("headline"):
        console.print(f"[bold]{escape(comparison['headline'])}[/]", soft_wrap=True)
    if result.report:
        console.print(f"report: {result.report.get('html')}", soft_wrap=True)
    console.print(f"[dim]{len(result.stages)} stages, {sum(s.reused for s in result.stages.values())} reused, "
                  f"{payload['seconds']:.0f}s[/]")


def _comparison_line(entry: dict) -> str:
    """One arm against the control, from the report's comparison: TP, its reduction and p-value, the perplexity
    cost, each with its 95% interval, and the spread over seeds."""
    from rich.markup import escape

    def est(e: dict | None, pct: bool = False) -> str:
        if not e or e.get("value") is None:
            return "—"
        f = (lambda x: f"{100 * x:+.1f}%") if pct else (lambda x: f"{x:.3f}")
        ci = e.get("ci95")
        return f(e["value"]) + (f" [{f(ci[0])}, {f(ci[1])}]" if ci else "")

    reduction = (entry.get("reduction") or {}).get("tp") or {}
    p = reduction.get("p_value")
    spread = (entry.get("per_seed") or {}).get("tp") or {}
    seeds = f" · TP over {spread['n']} seeds {spread['mean']:.3f} ± {spread['std']:.3f}" if spread.get("std") else ""
    return (f"[bold]{escape(str(entry.get('name')))}[/]: TP {est(entry.get('tp'))} · TP reduction {est(reduction, True)}"
            + (f" (p {p:.2g})" if p is not None else "") + f" · perplexity cost {est(entry.get('perplexity_cost'), True)}"
            + seeds + (f" · {escape(entry['verdict'].split(' (')[0])}" if entry.get("verdict") else ""))


def _mask_line(mask: dict) -> str:
    """The mask's size, and how well it ranks the documents of the data's labels (when there are any)."""
    line = f"mask: {mask.get('tokens')} tokens in {mask.get('documents')} documents"
    if mask.get("label_precision_at_k") is not None:
        line += (f", label precision@k {mask['label_precision_at_k']:.2f}, AUC {common.fmt_metric(mask.get('label_auc'), 2)}"
                 f" (base rate {common.fmt_metric(mask.get('label_base_rate'), 2)})")
    elif mask.get("precision_at_k") is not None:
        line += f", precision@k on planted toxic documents {mask['precision_at_k']:.2f}"
    return line
