"""`ifguide registry models|datasets|classifiers`: what the tool knows by name."""

from __future__ import annotations

import typer

from ifguide_cli.cli import common
from ifguide_cli.cli.commands import summary

registry_app = typer.Typer(help=summary("registry", "`ifguide env` tells which of them are available offline on this "
                                                   "machine."),
                           no_args_is_help=True)
_WHOLE = ("name", "hub_id", "backend", "role", "params", "family")  # copied from here: folded in a narrow terminal, never cut


def _show(key: str, columns: tuple[str, ...], extra: dict[str, tuple[list[dict], tuple[str, ...]]] | None = None) -> None:
    """One table per key: `key`'s registry table, then each `extra` table (rows, columns)."""
    from ifguide_cli.core.registry import as_rows

    tables = {key: (as_rows(key), columns), **(extra or {})}

    def render(console):
        from rich import box
        from rich.table import Table

        for title, (rows, cols) in tables.items():
            table = Table(title=title.replace("_", " "), title_justify="left", box=box.SIMPLE_HEAD, show_edge=False,
                          pad_edge=False, collapse_padding=True)
            for col in cols:
                table.add_column(col, overflow="fold", no_wrap=col in _WHOLE, justify="right" if col == "rows" else "left")
            for row in rows:
                table.add_row(*(_cell(row.get(c)) for c in cols))
            console.print(table)

    common.emit({title: rows for title, (rows, _) in tables.items()}, render)


def _cell(value) -> str:
    if value is None:
        return ""
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


@registry_app.command("models", help="The paper's models and the built-in `tiny` one.",
                      epilog="Examples:\n\n  ifguide registry models\n  ifguide registry models --json | jq -r '.models[].hub_id'")
def models() -> None:
    _show("models", ("name", "hub_id", "params", "family", "from_scratch", "description"))


@registry_app.command("datasets", help="Training corpora, query sets, prompt sets and LAMBADA, and the paper's fixed subsets "
                                        "of them (with their row counts).",
                      epilog="Example: ifguide registry datasets | grep prompts")
def datasets() -> None:
    from ifguide_cli.core.paper.subsets import subset_table

    subsets = (subset_table(), ("name", "hub_id", "rows", "role", "description"))
    _show("datasets", ("name", "hub_id", "role", "description"), {"reference_subsets": subsets})


@registry_app.command("classifiers", help="Toxicity classifiers and the RAD reward model.",
                      epilog="Example: ifguide registry classifiers   (then: ifguide env, for which are available offline)")
def classifiers() -> None:
    _show("classifiers", ("name", "backend", "source", "description"))


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
