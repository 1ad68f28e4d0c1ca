"""`ifguide registry models|datasets|classifiers`: what the tool knows by name."""

from __future__ import annotations

import typer

from . import common

registry_app = typer.Typer(help="Models, datasets and classifiers known by name (any hub id or local path works too).\n\n"
                                "`ifguide env` tells which of them are available offline on this machine.",
                           no_args_is_help=True)
_WHOLE = ("name", "hub_id", "backend", "role", "params", "family")  # copied from here: folded in a narrow terminal, never cut


def _show(key: str, columns: tuple[str, ...]) -> None:
    from ..core.registry import as_rows

    rows = as_rows(key)

    def render(console):
        from rich import box
        from rich.table import Table

        table = Table(title=key, title_justify="left", box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False,
                      collapse_padding=True)
        for col in columns:
            table.add_column(col, overflow="fold", no_wrap=col in _WHOLE)
        for row in rows:
            table.add_row(*("" if row.get(c) is None else str(row.get(c)) for c in columns))
        console.print(table)

    common.emit({key: rows}, render)


@registry_app.command("models", help="The paper's models and the built-in `tiny` one.",
                      epilog="Examples:\n\n  ifguide registry models\n  ifguide registry models --json | jq -r '.models[].hub_id'")
@common.handles_errors
def models() -> None:
    _show("models", ("name", "hub_id", "params", "family", "from_scratch", "description"))


@registry_app.command("datasets", help="Training corpora, query sets, prompt sets and LAMBADA.",
                      epilog="Example: ifguide registry datasets | grep prompts")
@common.handles_errors
def datasets() -> None:
    _show("datasets", ("name", "hub_id", "role", "description"))


@registry_app.command("classifiers", help="Toxicity classifiers and the RAD reward model.",
                      epilog="Example: ifguide registry classifiers   (then: ifguide env, for which are available offline)")
@common.handles_errors
def classifiers() -> None:
    _show("classifiers", ("name", "backend", "source", "description"))


def register(app: typer.Typer) -> None:
    app.add_typer(registry_app, name="registry")
