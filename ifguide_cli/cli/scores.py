"""`ifguide scores`: token-wise differential influence scores."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("scores", help="Token-wise differential influence of the training data (toxic minus safe queries).")
    @common.handles_errors
    def scores() -> None:
        common.not_implemented("scores")
