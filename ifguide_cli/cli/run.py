"""`ifguide run`: the whole pipeline from a YAML file or a preset."""

from __future__ import annotations

from typing import Optional

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("run", help="Run the whole pipeline: train a baseline, factors, scores, mask, fine-tune with IF-Guide and "
                             "a plain control, evaluate toxicity and fluency, report.\n\n"
                             "Stages whose config and parents are unchanged are reused, so a rerun only redoes what changed.",
                 epilog="Examples:\n\n"
                        "ifguide run --preset tiny\n"
                        "ifguide run --preset tiny --print-config > my.yaml   # edit, then:\n"
                        "ifguide run my.yaml\n"
                        "nohup ifguide run my.yaml > run.log 2>&1 &          # progress lines in run.log")
    @common.handles_errors
    def run(
        pipeline: Optional[str] = typer.Argument(None, metavar="PIPELINE.yaml", help="Pipeline file (see `--preset tiny --print-config`)."),
        preset: Optional[str] = typer.Option(None, "--preset", help="A built-in pipeline: tiny."),
        print_config: bool = typer.Option(False, "--print-config", help="Print the pipeline file of the preset and exit."),
        force: bool = typer.Option(False, "--force", help="Recompute every stage even if stored."),
    ) -> None:
        from ..core.pipeline_spec import load_spec, pipeline_file

        path = pipeline_file(pipeline, preset)
        if print_config:
            text = path.read_text(encoding="utf-8")
            common.emit({"path": str(path), "yaml": text}, lambda console: console.print(text, markup=False, highlight=False))
            return
        _run(load_spec(path), force)


def _run(spec, force: bool) -> None:
    from ..core.pipeline import run_pipeline

    ws = common.workspace()

    def on_start(name: str) -> None:
        common.info(f"[bold]▶ {name}[/]")

    def on_stage(rec) -> None:
        status = "[green]reused[/]" if rec.reused else f"done in {rec.seconds:.1f}s"
        common.info(f"  {rec.kind.rstrip('s')} {rec.id} {status}")

    result = run_pipeline(ws, spec, reporter=common.reporter(), force=force, on_stage=on_stage, on_start=on_start)
    payload = {**result.to_json(), "workspace": str(ws.root)}

    def render(console):
        from rich.table import Table

        table = Table(title="IF-Guide vs plain fine-tuning (TP: toxicity probability, EMT: expected max. toxicity)",
                      title_justify="left")
        for col in ("system", "TP", "EMT ± std", "perplexity", "LAMBADA", "checkpoint"):
            table.add_column(col, justify="left" if col in ("system", "checkpoint") else "right", no_wrap=True)
        for system, m in result.systems.items():
            table.add_row(system, common.fmt_metric(m["toxicity_probability"]),
                          f"{common.fmt_metric(m['expected_max_toxicity'])} ± {common.fmt_metric(m['expected_max_toxicity_std'])}",
                          common.fmt_metric(m["perplexity"], 2), common.fmt_metric(m["lambada_accuracy"]), m["checkpoint"])
        console.print(table)
        mask = result.mask
        console.print(f"mask: {mask.get('tokens')} tokens in {mask.get('documents')} documents"
                      + (f", precision@k on planted toxic documents {mask['precision_at_k']:.2f}" if mask.get("precision_at_k") is not None else ""))
        if result.reduction is not None:
            bound = "≥ " if result.reduction_is_lower_bound else ""
            console.print(f"[bold]toxicity probability: control / IF-Guide = {bound}{result.reduction:.1f}×[/]")
        console.print(f"report: {result.report.get('html')}   ·   inspect the mask: ifguide mask browse {result.stages['mask'].id}")
        console.print(f"[dim]{len(result.stages)} stages, {sum(s.reused for s in result.stages.values())} reused, "
                      f"{payload['seconds']:.0f}s[/]")

    common.emit(payload, render)
