"""`ifguide report`: compare evaluations side by side, and each arm against the control with intervals."""

from typing import Optional

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary
from ifguide_cli.cli.options import ForceOpt, NameOpt, config_options
from ifguide_cli.core.report.arms import ReportConfig


def _render_comparisons(console, summary: dict) -> None:
    """The arms against the control (intervals, p-values, perplexity cost) and the headline."""
    from rich.table import Table

    from ifguide_cli.core.report.stats import fmt_ci, fmt_p

    control = summary["control"]
    table = Table(title=f"against the control {control['name']} (95% paired bootstrap intervals)", title_justify="left")
    for header in ("arm", "seeds", "TP", "EMT", "TP reduction", "EMT reduction", "perplexity", "perplexity cost",
                   "verdict"):
        table.add_column(header, justify="left" if header in ("arm", "verdict") else "right", overflow="fold")
    label = control["name"] + ("" if control["name"] == "control" else " (control)")
    table.add_row(label, str(len(control["seeds"])), fmt_ci(control["tp"]), fmt_ci(control["emt"]), "", "",
                  fmt_ci(control["perplexity"], digits=2), "", "")
    for c in summary["comparisons"]:
        reductions = [f"{fmt_ci(c['reduction'][m], pct=True)} {fmt_p((c['reduction'][m] or {}).get('p_value'))}"
                      if c["reduction"][m] else "—" for m in ("tp", "emt")]
        table.add_row(c["name"], str(len(c["seeds"])), fmt_ci(c["tp"]), fmt_ci(c["emt"]), *reductions,
                      fmt_ci(c["perplexity"], digits=2), fmt_ci(c["perplexity_cost"], pct=True, signed=True),
                      c["verdict"].split(" (")[0])
    console.print(table)
    if summary.get("headline"):
        console.print(f"[bold]{summary['headline']}[/]")


def register(app: typer.Typer) -> None:
    @app.command("report", help=summary("report"),
                 epilog="Examples:\n\n"
                        "ifguide report base-tox ifguide-tox rad-tox --html report.html\n"
                        "ifguide report $(ifguide workspace ls evals --json | jq -r '.artifacts[].id') --control control\n\n"
                        "Arms: checkpoints trained the same way except --seed are one arm over seeds. The control is "
                        "--control, else the one fine-tune without a mask.")
    @config_options(ReportConfig)
    def report(
        config: ReportConfig,
        evals: list[str] = typer.Argument(..., metavar="EVAL...", help="Eval artifacts (toxicity, implicit, fluency).",
                                          autocompletion=common.complete_artifacts("evals")),
        control: Optional[str] = typer.Option(None, "--control", metavar="CHECKPOINT_OR_NAME",
                                              help="The arm the others are compared with: a checkpoint (id, name) or an "
                                                   "arm's name. Default: the one fine-tune (else pre-training) without a mask.",
                                              autocompletion=common.complete_artifacts("checkpoints")),
        html: Optional[str] = typer.Option(None, "--html", help="Also write the self-contained HTML page to this file."),
        name: NameOpt = None,
        force: ForceOpt = False,
    ) -> None:
        from ifguide_cli.core.report.build import REPORT_HTML, ReportRefs, ReportStage, create_report
        from ifguide_cli.core.report.table import cell, table_columns

        ws = common.workspace()
        arts = tuple(ws.resolve(ref, "evals") for ref in evals)
        inputs = ReportStage().inputs(ws, ReportRefs(arts, control))
        res = create_report(ws, inputs, config, name=name, force=force)
        art, reused, rows = res.artifact, res.reused, inputs.rows
        html_path = art.file(REPORT_HTML)
        if html:
            html_path = common.write_user_file(html, html_path.read_text(encoding="utf-8"))

        def render(console):
            from rich.table import Table

            # one column per system, one row per metric: fits a terminal for the usual 2-4 systems
            cols = table_columns(rows)
            table = Table(title="comparison (lower EMT/TP/perplexity and higher LAMBADA are better)", title_justify="left")
            table.add_column("metric", style="bold cyan")
            for row in rows:
                table.add_column(row["label"], justify="right", overflow="fold")
            for header, key in cols:
                if key != "label":
                    table.add_row(header, *(cell(row, key) for row in rows))
            console.print(table)
            if art.summary.get("comparisons"):
                _render_comparisons(console, art.summary)
            console.print(f"[dim]{'reused' if reused else 'created'} report {art.id}; HTML: {html_path}[/]")

        common.emit(common.artifact_payload(art, reused, html=str(html_path), rows=rows,
                                            comparisons=art.summary.get("comparisons", []),
                                            headline=art.summary.get("headline")), render)
