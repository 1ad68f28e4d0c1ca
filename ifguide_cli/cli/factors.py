"""`ifguide factors`: fit EK-FAC factors (issue: factors and scores)."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("factors", help="Fit EK-FAC (or KFAC/diagonal/identity) influence factors of a model on its training data.")
    @common.handles_errors
    def factors() -> None:
        common.not_implemented("factors")
