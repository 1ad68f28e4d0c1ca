"""`ifguide run`: the whole pipeline from a YAML file or a preset."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("run", help="Run the whole pipeline (train, factors, scores, mask, finetune, eval, report).")
    @common.handles_errors
    def run() -> None:
        common.not_implemented("run")
