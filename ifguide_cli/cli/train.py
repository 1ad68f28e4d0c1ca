"""`ifguide train` and `ifguide finetune`: LM training with the IF-Guide penalty objective."""

import typer

from . import common


def register(app: typer.Typer) -> None:
    @app.command("train", help="Train a model from scratch, optionally penalising masked toxic tokens.")
    @common.handles_errors
    def train() -> None:
        common.not_implemented("train")

    @app.command("finetune", help="Fine-tune a pretrained model or checkpoint, optionally penalising masked tokens.")
    @common.handles_errors
    def finetune() -> None:
        common.not_implemented("finetune")
