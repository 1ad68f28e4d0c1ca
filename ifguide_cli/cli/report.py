"""`ifguide report`: compare evaluations side by side."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("report", help="Compare eval artifacts side by side (table and HTML).")
    @common.handles_errors
    def report() -> None:
        common.not_implemented("report")
