"""`ifguide report`: compare evaluations side by side."""

from typing import Optional

import typer

from . import common
from .options import ForceOpt, NameOpt


def register(app: typer.Typer) -> None:
    @app.command("report", help="Compare eval artifacts side by side (baseline vs IF-Guide vs RAD …): table and HTML with plots.",
                 epilog="Examples:\n\n"
                        "ifguide report base-tox ifguide-tox rad-tox --html report.html\n"
                        "ifguide report $(ifguide workspace ls evals --json | jq -r '.artifacts[].id')")
    @common.handles_errors
    def report(
        evals: list[str] = typer.Argument(..., metavar="EVAL...", help="Eval artifacts (toxicity, implicit, fluency).",
                                          autocompletion=common.complete_artifacts("evals")),
        html: Optional[str] = typer.Option(None, "--html", help="Also write the self-contained HTML page to this file."),
        name: NameOpt = None,
        force: ForceOpt = False,
    ) -> None:
        from ..core.report import REPORT_HTML, build_report, cell, table_columns

        ws = common.workspace()
        arts = [ws.resolve(ref, "evals") for ref in evals]
        art, reused, rows = build_report(ws, arts, name=name, force=force)
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
            console.print(f"[dim]{'reused' if reused else 'created'} report {art.id}; HTML: {html_path}[/]")

        common.emit(common.artifact_payload(art, reused, html=str(html_path), rows=rows), render)
