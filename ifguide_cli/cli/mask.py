"""`ifguide mask`: toxic-token selection and inspection."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("mask", help="Select toxic tokens from influence scores (Alg. 1); show, browse, export masks.")
    @common.handles_errors
    def mask() -> None:
        common.not_implemented("mask")
